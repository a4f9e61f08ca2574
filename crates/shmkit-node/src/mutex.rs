//! `RobustMutex`: a robust process-shared mutex inside a `SharedMemory` region.

use napi::bindgen_prelude::*;

use crate::args;
use crate::error::{closed, IntoJs};

/// The outcome of taking a `RobustMutex`.
#[napi(object)]
pub struct LockResult {
  /// `true` when the previous owner died holding the lock: you hold it now, but the data it
  /// protects may be half-written. Check or repair it, then call `markConsistent()` before
  /// `unlock()`; unlocking without that makes the mutex unusable (`ENOTRECOVERABLE`).
  pub owner_died: bool,
}

/// Bytes a `RobustMutex` occupies in a region on this platform.
#[cfg_attr(test, expect(dead_code, reason = "napi registers it with Node outside unit tests"))]
#[napi]
pub const ROBUST_MUTEX_SIZE: u32 = {
  #[expect(clippy::cast_possible_truncation, reason = "a few dozen bytes")]
  let size = std::mem::size_of::<libc::pthread_mutex_t>() as u32;
  size
};

/// A robust, process-shared mutex (`PTHREAD_MUTEX_ROBUST`, `PTHREAD_PROCESS_SHARED`) living at
/// an offset inside a `SharedMemory` region, so every process that maps the region can use it.
///
/// If a process dies while holding it, the next `lockSync()` says so (`ownerDied: true`)
/// instead of hanging forever. Locks belong to the calling thread: lock and unlock from the
/// same thread. Locking it twice is `EDEADLK`, unlocking someone else's lock is `EPERM`.
/// Linux only (`ERR_SHM_UNSUPPORTED` on macOS, which has no robust mutexes).
///
/// ```ts
/// const shm = SharedMemory.create('state', 4096)
/// const mutex = RobustMutex.init(shm, 0)        // once; other processes use RobustMutex.at(shm, 0)
/// if (mutex.lockSync().ownerDied) { repair(); mutex.markConsistent() }
/// try { update() } finally { mutex.unlock() }
/// ```
#[napi]
pub struct RobustMutex {
  inner: Option<shmkit::RobustMutex>,
}

#[napi]
impl RobustMutex {
  /// Initialises a new, unlocked mutex at `offset` (a multiple of 8) inside `memory`. Do it
  /// once, before other processes attach with `RobustMutex.at`.
  #[napi(factory, ts_args_type = "memory: SharedMemory, offset: number")]
  pub fn init(env: Env, memory: Unknown, offset: Unknown) -> Result<Self> {
    let region = args::shared_memory(&env, memory, "memory")?.region(&env)?;
    let offset = args::offset(&env, offset, "offset")?;
    Ok(Self {
      inner: Some(shmkit::RobustMutex::init_in(region, offset).js(&env)?),
    })
  }

  /// Attaches to the mutex another process initialised at `offset` inside `memory`.
  #[napi(factory, ts_args_type = "memory: SharedMemory, offset: number")]
  pub fn at(env: Env, memory: Unknown, offset: Unknown) -> Result<Self> {
    let region = args::shared_memory(&env, memory, "memory")?.region(&env)?;
    let offset = args::offset(&env, offset, "offset")?;
    Ok(Self {
      inner: Some(shmkit::RobustMutex::at(region, offset).js(&env)?),
    })
  }

  fn live(&self, env: &Env) -> Result<&shmkit::RobustMutex> {
    self.inner.as_ref().ok_or_else(|| closed(env, "RobustMutex"))
  }

  /// Blocks this thread (and the event loop) until the lock is held, or until `timeout`
  /// milliseconds pass (then throws `ETIMEDOUT`). Keep critical sections short.
  #[napi(ts_args_type = "options?: { timeout?: number } | undefined | null")]
  pub fn lock_sync(&self, env: Env, options: Option<Unknown>) -> Result<LockResult> {
    let options = args::options(&env, options, "options")?;
    let timeout = args::timeout_option(&env, options.as_ref(), "options")?;
    let mutex = self.live(&env)?;
    let lock = match timeout {
      Some(timeout) => mutex.lock_timeout(timeout),
      None => mutex.lock(),
    }
    .js(&env)?;
    Ok(LockResult {
      owner_died: lock == shmkit::Lock::OwnerDied,
    })
  }

  /// Takes the lock if it is free; `null` if someone else holds it.
  #[napi]
  pub fn try_lock(&self, env: Env) -> Result<Option<LockResult>> {
    let lock = self.live(&env)?.try_lock().js(&env)?;
    Ok(lock.map(|lock| LockResult {
      owner_died: lock == shmkit::Lock::OwnerDied,
    }))
  }

  /// Releases the lock (`EPERM` if this thread does not hold it).
  #[napi]
  pub fn unlock(&self, env: Env) -> Result<()> {
    self.live(&env)?.unlock().js(&env)
  }

  /// After `ownerDied: true`: declares the protected data consistent again, so the mutex goes
  /// back to normal use when unlocked.
  #[napi]
  pub fn mark_consistent(&self, env: Env) -> Result<()> {
    self.live(&env)?.make_consistent().js(&env)
  }

  /// The mutex's offset inside its region.
  #[napi(getter)]
  pub fn offset(&self, env: Env) -> Result<f64> {
    #[expect(clippy::cast_precision_loss, reason = "offsets are below 2**47")]
    Ok(self.live(&env)?.offset() as f64)
  }

  /// `true` once `close()` has run.
  #[napi(getter)]
  pub fn closed(&self) -> bool {
    self.inner.is_none()
  }

  /// Lets go of this handle. A lock this thread holds is released first; the mutex itself
  /// stays in the region for other processes. Idempotent.
  #[napi]
  pub fn close(&mut self) {
    self.inner = None;
  }
}
