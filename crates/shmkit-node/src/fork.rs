//! `fork(callback)`: run one synchronous callback in a child that shares this process's
//! mappings, then `_exit`. The OS protocol is `shmkit::HostFork`; this file checks the
//! JS-level preconditions, calls the callback in the child, and gives the parent a
//! `ForkedChild` handle.

use std::ffi::c_void;
use std::os::fd::BorrowedFd;
use std::ptr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::{sys, ValueType};
use shmkit::host_fork::{is_main_thread, sigchld_is_ignored};
use shmkit::{HostFork, Signal};

use crate::args;
use crate::error::{js_error, Class, IntoJs};
use crate::js::{call, global};

/// How long `fork()` waits for thread-pool work in flight to finish before refusing.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `ERR_SHM_FORK_UNSAFE`: a precondition of `fork()` does not hold.
pub const ERR_SHM_FORK_UNSAFE: &str = "ERR_SHM_FORK_UNSAFE";
/// Node's code for a signal name it does not know.
pub const ERR_UNKNOWN_SIGNAL: &str = "ERR_UNKNOWN_SIGNAL";

/// The dry run made when the addon loads: where the condvar slots are, or why not.
static HOST: OnceLock<std::result::Result<HostFork, shmkit::Error>> = OnceLock::new();
/// Children forked by this process that may still need reaping.
static LIVE: Mutex<Vec<Arc<ChildState>>> = Mutex::new(Vec::new());
static EXIT_HOOK: AtomicBool = AtomicBool::new(false);
/// Worker threads started since the addon loaded and not yet exited (main thread's count).
static WORKERS: AtomicUsize = AtomicUsize::new(0);
/// Whether the count above is kept (the `worker_threads` diagnostics channel is subscribed).
static TRACKING: AtomicBool = AtomicBool::new(false);
/// Whether a diagnostic report has shown no worker since tracking began, so the count
/// covers every worker (including any started before the addon loaded).
static VERIFIED: AtomicBool = AtomicBool::new(false);
static EXTERNAL_BUFFERS: OnceLock<bool> = OnceLock::new();

/// Runs when the addon loads: the dry run of the condvar lookup, and (on the main thread)
/// worker tracking. Failures only make `fork()` refuse later.
pub fn on_load(env: &Env) {
  HOST.get_or_init(HostFork::prepare);
  if is_main_thread() && !TRACKING.load(Ordering::SeqCst) && track_workers(env).is_ok() {
    TRACKING.store(true, Ordering::SeqCst);
  }
}

/// Subscribes to the `worker_threads` diagnostics channel, which Node publishes to
/// synchronously in the `Worker` constructor (after the thread started), and counts each
/// worker until its `'exit'` event (emitted after the thread was joined).
fn track_workers(env: &Env) -> Result<()> {
  let process: Object = global(env, "process")?;
  let get_builtin: Unknown = process.get_named_property_unchecked("getBuiltinModule")?;
  if get_builtin.get_type()? != ValueType::Function {
    return Err(Error::from_reason("process.getBuiltinModule is missing (Node < 20.16)"));
  }
  let name = env.create_string("node:diagnostics_channel")?.to_unknown();
  let channels = call(env, process.to_unknown(), get_builtin, &[name])?;
  // SAFETY: getBuiltinModule returned the module object.
  let channels: Object = unsafe { channels.cast() }?;
  let subscribe: Unknown = channels.get_named_property_unchecked("subscribe")?;
  let on_worker = env.create_function_from_closure::<Unknown, (), _>("shmkitWorkerStarted", |ctx| {
    let message: Object = ctx.get(0)?;
    let worker: Object = message.get_named_property_unchecked("worker")?;
    let once: Unknown = worker.get_named_property_unchecked("once")?;
    let on_exit = ctx
      .env
      .create_function_from_closure::<Unknown, (), _>("shmkitWorkerExited", |_| {
        let _ = WORKERS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        Ok(())
      })?;
    let exit = ctx.env.create_string("exit")?.to_unknown();
    call(ctx.env, worker.to_unknown(), once, &[exit, on_exit.to_unknown()])?;
    WORKERS.fetch_add(1, Ordering::SeqCst);
    Ok(())
  })?;
  let channel = env.create_string("worker_threads")?.to_unknown();
  call(
    env,
    channels.to_unknown(),
    subscribe,
    &[channel, on_worker.to_unknown()],
  )?;
  Ok(())
}

/// Counts live worker threads: the tracked count, checked once against
/// `process.report.getReport().workers` (which also sees workers started before the addon
/// loaded, and Node's internal module-hooks worker), and every time without tracking.
fn live_workers(env: &Env) -> Result<usize> {
  let tracked = WORKERS.load(Ordering::SeqCst);
  if tracked > 0 || (TRACKING.load(Ordering::SeqCst) && VERIFIED.load(Ordering::SeqCst)) {
    return Ok(tracked);
  }
  let reported = workers_in_report(env)?;
  if reported == 0 && TRACKING.load(Ordering::SeqCst) {
    VERIFIED.store(true, Ordering::SeqCst);
  }
  Ok(reported)
}

fn workers_in_report(env: &Env) -> Result<usize> {
  let process: Object = global(env, "process")?;
  let mut report: Object = process.get_named_property_unchecked("report")?;
  // Skip the network section (reverse DNS of every socket) when this Node has the switch.
  let exclude: Unknown = report.get_named_property_unchecked("excludeNetwork")?;
  let had_exclude = exclude.get_type()? == ValueType::Boolean;
  if had_exclude {
    report.set_named_property("excludeNetwork", true)?;
  }
  let get_report: Unknown = report.get_named_property_unchecked("getReport")?;
  let result = call(env, report.to_unknown(), get_report, &[]);
  if had_exclude {
    report.set_named_property("excludeNetwork", exclude)?;
  }
  // SAFETY: getReport returns an object.
  let result: Object = unsafe { result?.cast() }?;
  let workers: Object = result.get_named_property_unchecked("workers")?;
  let length: u32 = workers.get_named_property_unchecked("length")?;
  Ok(length as usize)
}

/// The runtime when it is not Node.js (Bun and Deno run Node-API addons but cannot fork).
fn other_runtime(env: &Env) -> Result<Option<String>> {
  let process: Object = global(env, "process")?;
  let versions: Object = process.get_named_property("versions")?;
  for name in ["bun", "deno"] {
    if let Some(version) = versions.get_named_property::<Option<String>>(name)? {
      return Ok(Some(format!("{}{} {version}", name[..1].to_uppercase(), &name[1..])));
    }
  }
  Ok(None)
}

/// Whether `process.execArgv` holds `--single-threaded` (V8 also accepts underscores).
fn single_threaded(env: &Env) -> Result<bool> {
  let process: Object = global(env, "process")?;
  let argv: Vec<String> = process.get_named_property_unchecked("execArgv")?;
  Ok(
    argv
      .iter()
      .any(|a| a == "--single-threaded" || a == "--single_threaded"),
  )
}

/// Whether `napi_create_external_arraybuffer` works here (Electron's V8 sandbox refuses it).
fn external_buffers_allowed(env: &Env) -> bool {
  unsafe extern "C" fn free_probe(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the Box<u64> leaked below, released exactly once here.
    drop(unsafe { Box::from_raw(data.cast::<u64>()) });
  }
  *EXTERNAL_BUFFERS.get_or_init(|| {
    let data = Box::into_raw(Box::new(0u64));
    let mut value = ptr::null_mut();
    // SAFETY: a fresh 8-byte allocation owned by the buffer from now on; the finalizer frees it.
    let status = unsafe {
      sys::napi_create_external_arraybuffer(
        env.raw(),
        data.cast(),
        8,
        Some(free_probe),
        ptr::null_mut(),
        &raw mut value,
      )
    };
    if status != sys::Status::napi_ok {
      // SAFETY: napi did not take the allocation.
      drop(unsafe { Box::from_raw(data) });
    }
    status == sys::Status::napi_ok
  })
}

/// Every precondition that does not hold, as an instruction to the user.
fn unsafe_reasons(env: &Env) -> Result<Vec<String>> {
  if let Some(runtime) = other_runtime(env)? {
    return Ok(vec![format!(
      "fork() runs in Node.js only, not in {runtime}; share memory with a spawned process instead \
       (shareWith with a memfd or named region)"
    )]);
  }
  let mut reasons = Vec::new();
  match HOST.get() {
    Some(Ok(_)) => {}
    Some(Err(e)) if !cfg!(target_os = "linux") => reasons.push(format!("fork() runs on Linux only ({e})")),
    Some(Err(e)) => reasons.push(format!(
      "the pthread_cond_signal/pthread_cond_broadcast call slots of this Node binary were not found ({e}), \
       so a child could hang; share memory with a spawned child instead (shareWith with a memfd or named region)"
    )),
    None => reasons.push("the fork dry run did not run".to_owned()),
  }
  if !is_main_thread() {
    reasons.push("call fork() from the main thread, not from a worker thread".to_owned());
    return Ok(reasons);
  }
  if !single_threaded(env)? {
    reasons.push(
      "start Node with --single-threaded (node --single-threaded app.js); Node refuses the flag in NODE_OPTIONS, \
       so it must be on the command line"
        .to_owned(),
    );
  }
  match live_workers(env) {
    Ok(0) => {}
    Ok(n) => reasons.push(format!(
      "{n} worker thread{} alive: end {} (await worker.terminate()) before forking",
      if n == 1 { " is" } else { "s are" },
      if n == 1 { "it" } else { "them" }
    )),
    Err(e) => reasons.push(format!("the worker threads could not be counted ({e})")),
  }
  if !external_buffers_allowed(env) {
    reasons.push("this runtime forbids external ArrayBuffers, so a child cannot see shared memory".to_owned());
  }
  if sigchld_is_ignored() {
    reasons.push(
      "SIGCHLD is ignored (SIG_IGN or SA_NOCLDWAIT), so children could not be waited for; restore its default"
        .to_owned(),
    );
  }
  Ok(reasons)
}

/// A child of this process, shared by its `ForkedChild`, its `exited` waiter and the
/// kill-at-exit registry. Only the main thread locks it.
struct ChildState {
  pid: i32,
  child: Mutex<shmkit::Child>,
}

impl ChildState {
  fn lock(&self) -> std::sync::MutexGuard<'_, shmkit::Child> {
    self.child.lock().unwrap_or_else(PoisonError::into_inner)
  }
}

/// Kills and reaps every child still alive: `process.on('exit')`, installed at the first fork.
fn install_exit_hook(env: &Env) -> Result<()> {
  if EXIT_HOOK.load(Ordering::SeqCst) {
    return Ok(());
  }
  let process: Object = global(env, "process")?;
  let on: Unknown = process.get_named_property_unchecked("on")?;
  let hook = env.create_function_from_closure::<Unknown, (), _>("shmkitKillChildren", |_| {
    kill_live_children();
    Ok(())
  })?;
  let exit = env.create_string("exit")?.to_unknown();
  call(env, process.to_unknown(), on, &[exit, hook.to_unknown()])?;
  EXIT_HOOK.store(true, Ordering::SeqCst);
  Ok(())
}

fn kill_live_children() {
  let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(PoisonError::into_inner));
  for state in live {
    let mut child = state.lock();
    if let Ok(None) = child.try_wait() {
      let _ = child.kill(Signal::SIGKILL);
      let _ = child.wait_timeout(Duration::from_secs(10));
    }
  }
}

/// Adds a new child to the registry, and reaps (without blocking) the ones that have ended
/// meanwhile, so children nobody waits for do not linger as zombies.
fn register(state: &Arc<ChildState>) {
  let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
  live.retain(|s| matches!(s.lock().try_wait(), Ok(None)));
  live.push(state.clone());
}

/// Runs `callback` in the child (after the native setup) and returns the exit code.
fn run_in_child(env: sys::napi_env, callback: sys::napi_value) -> i32 {
  child::prepare_process(env);
  let mut result = ptr::null_mut();
  let mut this = ptr::null_mut();
  // SAFETY: `env` and `callback` are the handles of the fork() call, whose scope the child
  // continues in; `this` and `result` are valid out-pointers.
  let status = unsafe {
    sys::napi_get_undefined(env, &raw mut this);
    sys::napi_call_function(env, this, callback, 0, ptr::null(), &raw mut result)
  };
  if status == sys::Status::napi_pending_exception {
    child::report_exception(env);
    return 1;
  }
  if status != sys::Status::napi_ok {
    child::say("shmkit fork(): the callback could not be called in the child\n");
    return 1;
  }
  child::exit_code(env, result)
}

/// JS-side helpers for the child, all through raw napi calls on the env of the `fork()` call.
mod child {
  use std::ffi::c_char;
  use std::os::fd::BorrowedFd;
  use std::ptr;

  use napi::sys;

  /// Writes `text` to fd 2 (blocking even if Node made it non-blocking).
  pub(super) fn say(text: &str) {
    // SAFETY: fd 2 stays open in the child (stdio is never replaced).
    let stderr = unsafe { BorrowedFd::borrow_raw(2) };
    let _ = shmkit::write_all(stderr, text.as_bytes());
  }

  fn string(env: sys::napi_env, value: sys::napi_value) -> Option<String> {
    let mut len = 0;
    // SAFETY: a length query on a string handle.
    if unsafe { sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &raw mut len) } != sys::Status::napi_ok
    {
      return None;
    }
    let mut buffer = vec![0u8; len + 1];
    // SAFETY: the buffer holds len + 1 bytes, as napi requires for the terminator.
    let status = unsafe {
      sys::napi_get_value_string_utf8(env, value, buffer.as_mut_ptr().cast::<c_char>(), len + 1, &raw mut len)
    };
    if status != sys::Status::napi_ok {
      return None;
    }
    buffer.truncate(len);
    String::from_utf8(buffer).ok()
  }

  fn type_of(env: sys::napi_env, value: sys::napi_value) -> sys::napi_valuetype {
    let mut kind = sys::ValueType::napi_undefined;
    // SAFETY: a type query with a valid out-pointer.
    unsafe { sys::napi_typeof(env, value, &raw mut kind) };
    kind
  }

  fn property(env: sys::napi_env, object: sys::napi_value, name: &std::ffi::CStr) -> Option<sys::napi_value> {
    let mut value = ptr::null_mut();
    // SAFETY: a property read; a throwing getter leaves an exception that is cleared below.
    let status = unsafe { sys::napi_get_named_property(env, object, name.as_ptr(), &raw mut value) };
    if status == sys::Status::napi_ok {
      Some(value)
    } else {
      clear_exception(env);
      None
    }
  }

  fn clear_exception(env: sys::napi_env) {
    let mut ignored = ptr::null_mut();
    // SAFETY: clears a pending exception, if any.
    unsafe { sys::napi_get_and_clear_last_exception(env, &raw mut ignored) };
  }

  /// Writes the pending exception (its `stack`, or its string form) to fd 2.
  pub(super) fn report_exception(env: sys::napi_env) {
    let mut error = ptr::null_mut();
    // SAFETY: an exception is pending (napi_pending_exception); this takes it.
    unsafe { sys::napi_get_and_clear_last_exception(env, &raw mut error) };
    let mut text = None;
    if type_of(env, error) == sys::ValueType::napi_object {
      text = property(env, error, c"stack")
        .filter(|stack| type_of(env, *stack) == sys::ValueType::napi_string)
        .and_then(|stack| string(env, stack));
    }
    if text.is_none() {
      let mut coerced = ptr::null_mut();
      // SAFETY: String(error); a throwing toString leaves an exception, cleared below.
      if unsafe { sys::napi_coerce_to_string(env, error, &raw mut coerced) } == sys::Status::napi_ok {
        text = string(env, coerced);
      } else {
        clear_exception(env);
      }
    }
    let text = text.unwrap_or_else(|| "(an exception that cannot be shown as text)".to_owned());
    say(&format!("Uncaught exception in a shmkit fork() child:\n{text}\n"));
  }

  /// The exit code for the callback's result: a number's low 8 bits; 1 for a Promise or
  /// another thenable (async work cannot finish in the child); 0 for anything else.
  pub(super) fn exit_code(env: sys::napi_env, result: sys::napi_value) -> i32 {
    let mut is_promise = false;
    // SAFETY: a type query with a valid out-pointer.
    unsafe { sys::napi_is_promise(env, result, &raw mut is_promise) };
    let thenable = matches!(
      type_of(env, result),
      sys::ValueType::napi_object | sys::ValueType::napi_function
    ) && property(env, result, c"then")
      .is_some_and(|then| type_of(env, then) == sys::ValueType::napi_function);
    if is_promise || thenable {
      say(
        "shmkit fork(): the callback returned a Promise, but async work never completes in a fork() child \
         (it has no event loop); do the work synchronously\n",
      );
      return 1;
    }
    if type_of(env, result) == sys::ValueType::napi_number {
      let mut code = 0;
      // SAFETY: a number handle; the value is truncated to 32 bits like ToInt32.
      unsafe { sys::napi_get_value_int32(env, result, &raw mut code) };
      return code & 0xff;
    }
    0
  }

  /// In the child only: `process.pid` becomes the child's pid, and `process.exit(code)` ends
  /// the child at once with `_exit` (Node's own exit path crashes or hangs in a fork child).
  pub(super) fn prepare_process(env: sys::napi_env) {
    let mut global = ptr::null_mut();
    // SAFETY: a valid out-pointer.
    unsafe { sys::napi_get_global(env, &raw mut global) };
    let Some(process) = property(env, global, c"process") else {
      return;
    };
    let mut pid = ptr::null_mut();
    let mut exit = ptr::null_mut();
    // SAFETY: valid out-pointers; the function has no data and lives as long as the child.
    unsafe {
      sys::napi_create_uint32(env, std::process::id(), &raw mut pid);
      sys::napi_create_function(env, c"exit".as_ptr(), 4, Some(exit_now), ptr::null_mut(), &raw mut exit);
    }
    let properties = [
      sys::napi_property_descriptor {
        utf8name: c"pid".as_ptr(),
        name: ptr::null_mut(),
        method: None,
        getter: None,
        setter: None,
        value: pid,
        attributes: sys::PropertyAttributes::enumerable,
        data: ptr::null_mut(),
      },
      sys::napi_property_descriptor {
        utf8name: c"exit".as_ptr(),
        name: ptr::null_mut(),
        method: None,
        getter: None,
        setter: None,
        value: exit,
        attributes: sys::PropertyAttributes::enumerable | sys::PropertyAttributes::writable,
        data: ptr::null_mut(),
      },
    ];
    // SAFETY: descriptors with valid names and values; a failure leaves an exception that
    // is cleared.
    if unsafe { sys::napi_define_properties(env, process, properties.len(), properties.as_ptr()) }
      != sys::Status::napi_ok
    {
      clear_exception(env);
    }
  }

  /// `process.exit(code)` in the child: `_exit(code & 0xff)` (0 for a missing code).
  unsafe extern "C" fn exit_now(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let mut count = 1;
    let mut values = [ptr::null_mut(); 1];
    // SAFETY: `values` holds one handle, as `count` says.
    unsafe {
      sys::napi_get_cb_info(
        env,
        info,
        &raw mut count,
        values.as_mut_ptr(),
        ptr::null_mut(),
        ptr::null_mut(),
      );
    }
    let mut code = 0;
    if count >= 1 && type_of(env, values[0]) == sys::ValueType::napi_number {
      // SAFETY: a number handle.
      unsafe { sys::napi_get_value_int32(env, values[0], &raw mut code) };
    }
    // Node's exit path is what the whole fork() design avoids.
    shmkit::child_setup::exit(code & 0xff)
  }
}

/// Options of `ForkedChild.wait`.
#[napi(object)]
pub struct ChildWaitOptions {
  /// The longest time to wait, in milliseconds (an integer, `0` to check without waiting).
  /// Default: no limit. When it runs out, `wait` throws an error with `code: 'ETIMEDOUT'`
  /// and the child keeps running (`kill()` it).
  pub timeout: Option<f64>,
}

/// How a child ended, as in `child_process`'s `'exit'` event: exactly one of `code` and
/// `signal` is set.
#[napi(object, js_name = "ExitStatus", use_nullable = true)]
pub struct JsExitStatus {
  /// The exit code, if the child exited.
  pub code: Option<i32>,
  /// The signal that killed the child (`'SIGKILL'`, …), if one did.
  pub signal: Option<String>,
}

impl From<shmkit::ExitStatus> for JsExitStatus {
  fn from(status: shmkit::ExitStatus) -> Self {
    Self {
      code: status.code(),
      signal: status.signal().map(|s| s.as_str().to_owned()),
    }
  }
}

/// A child made by `fork()`. Wait for it with `wait()` (blocking) or `exited` (a Promise);
/// a child that is still running when this process exits is killed and reaped.
#[napi(custom_finalize)]
pub struct ForkedChild {
  state: Arc<ChildState>,
  exited: Option<sys::napi_ref>,
}

#[napi]
impl ForkedChild {
  /// The child's process id (what `getpid()` returns in the child).
  #[napi(getter)]
  pub fn pid(&self) -> i32 {
    self.state.pid
  }

  /// Blocks until the child ends, reaps it, and returns how it ended. Waits for this pid
  /// only, so Node's own `child_process` children are unaffected. With `timeout` (ms), throws
  /// `ETIMEDOUT` when it runs out, leaving the child running. Calling it again returns the
  /// same status.
  #[napi(ts_args_type = "options?: ChildWaitOptions | undefined | null")]
  pub fn wait(&self, env: Env, options: Option<Unknown>) -> Result<JsExitStatus> {
    let options = args::options(&env, options, "options")?;
    let options = ChildWaitOptions {
      timeout: args::integer_option(&env, options.as_ref(), "timeout", "options", 0.0, 2_147_483_647.0)?,
    };
    let mut child = self.state.lock();
    let status = match options.timeout {
      #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "an integer in 0..2**31"
      )]
      Some(ms) => child.wait_timeout(Duration::from_millis(ms as u64)),
      None => child.wait(),
    };
    Ok(status.js(&env)?.into())
  }

  /// Reaps the child if it has ended and returns how; `null` while it runs. Never blocks.
  #[napi]
  pub fn try_wait(&self, env: Env) -> Result<Option<JsExitStatus>> {
    Ok(self.state.lock().try_wait().js(&env)?.map(Into::into))
  }

  /// A Promise of how the child ended. Waiting happens on a small thread of its own (never
  /// the libuv thread pool); the child is reaped on the main thread when the Promise
  /// settles. The same Promise is returned on every read. While it is pending it keeps the
  /// event loop alive, like a `child_process` child.
  #[napi(getter, ts_return_type = "Promise<ExitStatus>")]
  pub fn exited(&mut self, env: Env) -> Result<Unknown<'_>> {
    if let Some(reference) = self.exited {
      let mut value = ptr::null_mut();
      // SAFETY: a live strong reference created in this env.
      let status = unsafe { sys::napi_get_reference_value(env.raw(), reference, &raw mut value) };
      if status != sys::Status::napi_ok || value.is_null() {
        return Err(Error::from_status(Status::from(status)));
      }
      // SAFETY: a valid handle in the current scope.
      return Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) });
    }
    let waiter = self.state.lock().exit_waiter();
    let (deferred, promise) = env.create_deferred()?;
    let state = self.state.clone();
    std::thread::Builder::new()
      .name("shmkit-exited".to_owned())
      .spawn(move || {
        // The waiter (and its pidfd) is gone before the Promise settles.
        let ended = { waiter }.wait();
        deferred.resolve(move |env: Env| {
          ended.js(&env)?;
          let status = state.lock().wait().js(&env)?;
          Ok(JsExitStatus::from(status))
        });
      })
      .map_err(|e| Error::from_reason(format!("cannot start the waiter thread: {e}")))?;
    let mut reference = ptr::null_mut();
    // SAFETY: `promise` was just created in this env; `reference` is a valid out-pointer.
    let status = unsafe { sys::napi_create_reference(env.raw(), promise.raw(), 1, &raw mut reference) };
    if status == sys::Status::napi_ok {
      self.exited = Some(reference);
    }
    // SAFETY: a valid handle in the current scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise.raw()) })
  }

  /// Sends a signal (`'SIGTERM'` by default; a name like `'SIGKILL'` or a number). Returns
  /// `false` if the child was already reaped (nothing is sent: the pid may be reused).
  /// Throws `ERR_UNKNOWN_SIGNAL` for an unknown signal.
  #[napi(ts_args_type = "signal?: string | number")]
  pub fn kill(&self, env: Env, signal: Option<Unknown>) -> Result<bool> {
    let signal = parse_signal(&env, signal)?;
    self.state.lock().kill(signal).js(&env)
  }
}

fn parse_signal(env: &Env, signal: Option<Unknown>) -> Result<Signal> {
  let Some(value) = signal.filter(|v| !matches!(v.get_type(), Ok(ValueType::Undefined))) else {
    return Ok(Signal::SIGTERM);
  };
  let unknown = |shown: &str| {
    js_error(
      env,
      Class::TypeError,
      ERR_UNKNOWN_SIGNAL,
      &format!("Unknown signal: {shown}"),
      &[],
    )
  };
  match value.get_type()? {
    ValueType::String => {
      let name = args::string(env, value, "signal")?;
      Signal::from_str(&name).map_err(|_| unknown(&name))
    }
    ValueType::Number => {
      let n = args::number(env, value, "signal")?;
      #[expect(clippy::cast_possible_truncation, reason = "checked to be a small integer first")]
      let signal = (n.fract() == 0.0 && n.abs() < 1024.0)
        .then(|| Signal::try_from(n as i32).ok())
        .flatten();
      signal.ok_or_else(|| unknown(&n.to_string()))
    }
    _ => Err(args::invalid_type(env, "signal", "of type string or number", value)),
  }
}

impl ObjectFinalize for ForkedChild {
  fn finalize(mut self, env: Env) -> Result<()> {
    if let Some(reference) = self.exited.take() {
      // SAFETY: a live reference created in this env; deleting references is allowed in
      // finalizers.
      unsafe { sys::napi_delete_reference(env.raw(), reference) };
    }
    Ok(())
  }
}

/// Runs `callback` in a child process that shares this process's memory mappings, and
/// returns at once with the child. Linux only.
///
/// The child is a copy of this process made by `fork()`: it sees every variable and every
/// `SharedMemory` region (`anonymous` and `devZero` regions are shared, `private: true` ones
/// are copies), runs the callback synchronously, and ends with `_exit`. Its exit code is the
/// callback's numeric result (`& 0xff`); `undefined` and other values give 0. A throw prints
/// the error to stderr and gives 1; returning a Promise gives 1 with a message (async work
/// never completes in the child).
///
/// ```ts
/// // node --single-threaded app.js
/// const area = SharedMemory.devZero(4096)
/// const counter = new Int32Array(area.buffer)
/// const child = fork(() => { counter[0] = 42 })   // runs in the child, then _exit
/// const { code, signal } = child.wait()           // or: await child.exited
/// ```
///
/// Preconditions, else it throws `ERR_SHM_FORK_UNSAFE` saying what to change and creates no
/// child: Linux; the main thread; Node started with `--single-threaded` (on the command
/// line; it costs the whole process about +22 % (Node 20) / +26 % (Node 24) time on an
/// allocation-heavy benchmark); no worker thread alive; external `ArrayBuffer`s allowed;
/// `SIGCHLD` not ignored; this Node's condvar call slots were found when shmkit loaded.
///
/// The child's rules: synchronous work only (Promises never settle, timers never fire, no
/// servers, no workers, no `child_process`), moderate allocation (pages it touches are
/// copied), output through `childWrite(fd, data)` rather than `console.log` (a full stdout
/// pipe would drop it), `getpid()` for its pid. Inherited sockets and pipes read as
/// `/dev/null` in the child; `process.exit(code)` there ends it at once. `Math.random()` and
/// `crypto.randomUUID()` repeat the parent's sequence in every child. A fork takes about
/// 8–9 ms with a 50 MB heap and grows with the heap (~100 ms at 1 GB).
#[napi(ts_args_type = "callback: () => unknown")]
pub fn fork(env: Env, callback: Unknown) -> Result<ForkedChild> {
  if callback.get_type()? != ValueType::Function {
    return Err(args::invalid_type(&env, "callback", "of type function", callback));
  }
  let reasons = unsafe_reasons(&env)?;
  let (Some(Ok(host)), true) = (HOST.get(), reasons.is_empty()) else {
    let message = format!("fork() refused, no child was created: {}", reasons.join("; "));
    return Err(js_error(&env, Class::Error, ERR_SHM_FORK_UNSAFE, &message, &[]));
  };
  install_exit_hook(&env)?;
  // Every thread-pool thread parked in our barrier: none is inside async work whose locks the
  // child would inherit held. Released when `parked` drops, right after the fork.
  let parked = crate::pool::park_all(&env, POOL_WAIT).map_err(|reason| {
    let message = format!("fork() refused, no child was created: {reason}");
    js_error(&env, Class::Error, ERR_SHM_FORK_UNSAFE, &message, &[])
  })?;
  let (raw_env, raw_callback) = (env.raw(), callback.raw());
  // SAFETY: the preconditions above hold: main thread, --single-threaded V8, no worker
  // isolate; the remaining threads (V8's idle platform workers, libuv's pool) hold nothing
  // the child needs once the condvar slots are redirected, which HostFork does.
  let child = unsafe { host.fork(|| run_in_child(raw_env, raw_callback)) };
  drop(parked);
  let child = child.js(&env)?;
  let state = Arc::new(ChildState {
    pid: child.pid(),
    child: Mutex::new(child),
  });
  register(&state);
  Ok(ForkedChild { state, exited: None })
}

/// This process's id, from the kernel. Use it in a `fork()` child, where Node's
/// `process.pid` would be the parent's (shmkit corrects `process.pid` in its children, but
/// code that cached it earlier still holds the parent's).
#[napi]
pub fn getpid() -> u32 {
  std::process::id()
}

/// Writes all of `data` (a string as UTF-8, or the bytes of a Buffer/TypedArray/DataView/
/// `ArrayBuffer`) to the descriptor `fd`, blocking until done even if `fd` is non-blocking
/// (Node makes stdout/stderr pipes non-blocking). Returns the number of bytes written. Use it
/// for output from a `fork()` child: `childWrite(1, 'done')`.
#[napi(ts_args_type = "fd: number, data: string | ArrayBufferView | ArrayBuffer")]
pub fn child_write(env: Env, fd: Unknown, data: Unknown) -> Result<u32> {
  let fd = args::integer(&env, fd, "fd", 0.0, f64::from(i32::MAX))?;
  #[expect(clippy::cast_possible_truncation, reason = "an integer in 0..=i32::MAX")]
  let fd = fd as i32;
  let bytes = bytes_of(&env, data)?;
  // SAFETY: F_GETFD only reads descriptor flags.
  if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
    let e = shmkit::Error::os(shmkit::Errno::last(), "write");
    return Err(crate::error::to_js(&env, &e));
  }
  // SAFETY: the descriptor is open (checked above) and only borrowed for this call.
  let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
  shmkit::write_all(borrowed, &bytes).js(&env)?;
  u32::try_from(bytes.len()).map_err(|_| Error::from_reason("more than 4 GiB written"))
}

/// The bytes of a string (UTF-8), an `ArrayBufferView` or an `ArrayBuffer`.
fn bytes_of(env: &Env, data: Unknown) -> Result<Vec<u8>> {
  if data.get_type()? == ValueType::String {
    return Ok(args::string(env, data, "data")?.into_bytes());
  }
  let raw = data.raw();
  let (mut is_typed, mut is_view, mut is_buffer) = (false, false, false);
  // SAFETY: type queries with valid out-pointers.
  unsafe {
    sys::napi_is_typedarray(env.raw(), raw, &raw mut is_typed);
    sys::napi_is_dataview(env.raw(), raw, &raw mut is_view);
    sys::napi_is_arraybuffer(env.raw(), raw, &raw mut is_buffer);
  }
  let mut pointer: *mut c_void = ptr::null_mut();
  let mut length = 0usize;
  // SAFETY: each query matches the type just established and writes valid out-pointers.
  let status = unsafe {
    if is_typed {
      let mut kind = sys::TypedarrayType::uint8_array;
      let mut element_count = 0;
      let status = sys::napi_get_typedarray_info(
        env.raw(),
        raw,
        &raw mut kind,
        &raw mut element_count,
        &raw mut pointer,
        ptr::null_mut(),
        ptr::null_mut(),
      );
      length = element_count * element_size(kind);
      status
    } else if is_view {
      sys::napi_get_dataview_info(
        env.raw(),
        raw,
        &raw mut length,
        &raw mut pointer,
        ptr::null_mut(),
        ptr::null_mut(),
      )
    } else if is_buffer {
      sys::napi_get_arraybuffer_info(env.raw(), raw, &raw mut pointer, &raw mut length)
    } else {
      return Err(args::invalid_type(
        env,
        "data",
        "of type string or an instance of ArrayBuffer, TypedArray or DataView",
        data,
      ));
    }
  };
  if status != sys::Status::napi_ok {
    return Err(Error::from_status(Status::from(status)));
  }
  if length == 0 || pointer.is_null() {
    return Ok(Vec::new());
  }
  // SAFETY: napi reported `length` readable bytes at `pointer`, alive during this call.
  Ok(unsafe { std::slice::from_raw_parts(pointer.cast::<u8>(), length) }.to_vec())
}

fn element_size(kind: sys::napi_typedarray_type) -> usize {
  use sys::TypedarrayType as T;
  match kind {
    T::int16_array | T::uint16_array => 2,
    T::int32_array | T::uint32_array | T::float32_array => 4,
    T::float64_array | T::bigint64_array | T::biguint64_array => 8,
    _ => 1,
  }
}
