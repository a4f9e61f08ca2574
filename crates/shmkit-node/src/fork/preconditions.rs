//! The preconditions of `fork()`, checked before any child exists: Node.js (not Bun or
//! Deno), the main thread, `--single-threaded`, no worker thread alive (counted through the
//! `worker_threads` diagnostics channel), external `ArrayBuffer`s allowed, `SIGCHLD` not
//! ignored, and the dry run of `HostFork` done when the addon loaded.
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use napi::bindgen_prelude::*;
use napi::{sys, ValueType};
use shmkit::host_fork::{is_main_thread, sigchld_is_ignored, HostFork};

use crate::raw::{self, call, global};

/// The dry run made when the addon loads: where the condvar slots are, or why not.
static HOST: OnceLock<std::result::Result<HostFork, shmkit::Error>> = OnceLock::new();
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
    // SAFETY: a fresh 8-byte allocation owned by the buffer from now on; the finalizer frees it.
    let created = unsafe { raw::external_arraybuffer(env, data.cast(), 8, Some(free_probe), ptr::null_mut()) };
    if created.is_err() {
      // SAFETY: napi did not take the allocation.
      drop(unsafe { Box::from_raw(data) });
    }
    created.is_ok()
  })
}

/// Every precondition that does not hold, as an instruction to the user.
pub(super) fn unsafe_reasons(env: &Env) -> Result<Vec<String>> {
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

/// The prepared fork, when the dry run found what it needs.
pub(super) fn host() -> Option<&'static HostFork> {
  HOST.get().and_then(|host| host.as_ref().ok())
}
