//! `ForkedChild`, the parent's handle on a child made by `fork()`: waiting (blocking, or a
//! Promise settled from a waiter thread), signals, and the registry that kills and reaps
//! every child still running when this process exits.
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::ValueType;
use shmkit::Signal;

use crate::args;
use crate::error::{js_error, Class, IntoJs, ERR_UNKNOWN_SIGNAL};
use crate::options::WaitSyncOptions;
use crate::raw::{self, call, global};

/// Children forked by this process that may still need reaping.
static LIVE: Mutex<Vec<Arc<ChildState>>> = Mutex::new(Vec::new());
static EXIT_HOOK: AtomicBool = AtomicBool::new(false);

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
pub(super) fn install_exit_hook(env: &Env) -> Result<()> {
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

/// Options of `ForkedChild.wait`: the options of every blocking call.
/// @deprecated Use `WaitSyncOptions`.
#[napi]
#[allow(dead_code, reason = "declares the old TypeScript name only")]
pub type ChildWaitOptions = WaitSyncOptions;

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
  exited: Option<raw::Strong>,
}

impl ForkedChild {
  /// The handle of a child just forked, registered to be killed if it outlives this process.
  pub(super) fn adopt(child: shmkit::Child) -> Self {
    let state = Arc::new(ChildState {
      pid: child.pid(),
      child: Mutex::new(child),
    });
    register(&state);
    Self { state, exited: None }
  }
}

#[napi]
impl ForkedChild {
  /// The child's process id (what `getpid()` returns in the child).
  #[napi(getter)]
  pub fn pid(&self) -> i32 {
    self.state.pid
  }

  /// Blocks until the child ends, reaps it, and returns how it ended. Waits for this pid
  /// only, so Node's own `child_process` children are unaffected. With `timeout` (ms),
  /// returns `null` when it runs out, leaving the child running. Calling it again after the
  /// child ended returns the same status.
  #[napi]
  pub fn wait(&self, env: Env, options: Option<WaitSyncOptions>) -> Result<Option<JsExitStatus>> {
    let timeout = options.and_then(|o| o.timeout());
    let mut child = self.state.lock();
    let status = match timeout {
      Some(timeout) => match child.wait_timeout(timeout) {
        Err(e) if e.kind() == shmkit::ErrorKind::TimedOut => return Ok(None),
        ended => ended,
      },
      None => child.wait(),
    };
    Ok(Some(status.js(&env)?.into()))
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
    if let Some(promise) = &self.exited {
      return promise.get(&env);
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
    self.exited = raw::Strong::new(&env, promise.raw()).ok();
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
    if let Some(promise) = self.exited.take() {
      promise.delete(&env);
    }
    Ok(())
  }
}
