//! `fork(callback)`: run one synchronous callback in a child that shares this process's
//! mappings, then `_exit`. The OS protocol is `shmkit::host_fork::HostFork`; here, by
//! concern: the JS-level preconditions, the child's runtime, the parent's `ForkedChild`
//! handle, and `childWrite` for the child's output.
mod child;
mod child_write;
mod forked_child;
mod preconditions;

use napi::bindgen_prelude::*;
use napi::ValueType;

pub use forked_child::ForkedChild;
pub use preconditions::on_load;

use crate::args;
use crate::error::{coded, IntoJs, ERR_SHM_FORK_UNSAFE};
use child::run_in_child;
use forked_child::install_exit_hook;
use preconditions::{host, unsafe_reasons};

/// How long `fork()` waits for thread-pool work in flight to finish before refusing.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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
  let (Some(host), true) = (host(), reasons.is_empty()) else {
    let message = format!("fork() refused, no child was created: {}", reasons.join("; "));
    return Err(coded(&env, ERR_SHM_FORK_UNSAFE, &message));
  };
  install_exit_hook(&env)?;
  // Every thread-pool thread parked in our barrier: none is inside async work whose locks the
  // child would inherit held. Released when `parked` drops, right after the fork.
  let parked = crate::pool::park_all(&env, POOL_WAIT).map_err(|reason| {
    let message = format!("fork() refused, no child was created: {reason}");
    coded(&env, ERR_SHM_FORK_UNSAFE, &message)
  })?;
  let (raw_env, raw_callback) = (env.raw(), callback.raw());
  // SAFETY: the preconditions above hold: main thread, --single-threaded V8, no worker
  // isolate; the remaining threads (V8's idle platform workers, libuv's pool) hold nothing
  // the child needs once the condvar slots are redirected, which HostFork does.
  let child = unsafe { host.fork(|| run_in_child(raw_env, raw_callback)) };
  drop(parked);
  Ok(ForkedChild::adopt(child.js(&env)?))
}

/// This process's id, from the kernel. Use it in a `fork()` child, where Node's
/// `process.pid` would be the parent's (shmkit corrects `process.pid` in its children, but
/// code that cached it earlier still holds the parent's).
#[napi]
pub fn getpid() -> u32 {
  std::process::id()
}
