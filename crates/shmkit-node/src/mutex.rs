//! `RobustMutex`: a robust process-shared mutex inside a `SharedMemory` region.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Instant;

use napi::bindgen_prelude::*;
use shmkit::{Lock, LockAttempt, Step};

use crate::args;
use crate::error::{abort_error, closed, to_js, IntoJs};
use crate::memory::SharedMemory;
use crate::options::{WaitOptions, WaitSyncOptions};
use crate::promise::{settled, AbortHook, Deferred, Pending};
use crate::waiter::{self, WaitId, Word};

/// The outcome of taking a `RobustMutex`.
#[napi(object)]
pub struct LockResult {
  /// `true` when the previous owner died holding the lock: you hold it now, but the data it
  /// protects may be half-written. Check or repair it, then call `markConsistent()` before
  /// `unlock()`; unlocking without that makes the mutex unusable (`ENOTRECOVERABLE`).
  pub owner_died: bool,
}

/// Bytes a `RobustMutex` occupies in a region.
/// @deprecated Use `RobustMutex.SIZE`.
#[cfg_attr(test, expect(dead_code, reason = "napi registers it with Node outside unit tests"))]
#[napi]
#[expect(clippy::cast_possible_truncation, reason = "32 bytes")]
pub const ROBUST_MUTEX_SIZE: u32 = shmkit::RobustMutex::SIZE as u32;

/// A robust, process-shared mutex living at an offset inside a `SharedMemory` region, so
/// every process that maps the region can use it (and C or Rust programs too: the byte
/// protocol is in docs/layout.md).
///
/// If the thread holding it dies (its process killed, its worker terminated), the next locker
/// is told (`ownerDied: true`) instead of hanging forever. Locks belong to the calling thread:
/// lock and unlock from the same thread. Locking it twice is `EDEADLK`, unlocking someone
/// else's lock is `EPERM`. Closing or collecting a handle never unlocks.
///
/// ```ts
/// const shm = SharedMemory.create('state', 4096)
/// const mutex = RobustMutex.init(shm, 0)        // once; other processes use RobustMutex.at(shm, 0)
/// if (mutex.lockSync().ownerDied) { repair(); mutex.markConsistent() }
/// try { update() } finally { mutex.unlock() }
/// ```
#[napi]
pub struct RobustMutex {
  inner: Option<Arc<shmkit::RobustMutex>>,
  /// Pending `lock()` calls, rejected by `close()`.
  pending: RefCell<Vec<Weak<AsyncLock>>>,
}

#[napi]
impl RobustMutex {
  /// Initialises a new, unlocked mutex at `offset` (a multiple of 8) inside `memory`. Do it
  /// once, before other processes attach with `RobustMutex.at`.
  #[napi(factory, ts_args_type = "memory: SharedMemory, offset: number")]
  pub fn init(env: Env, memory: Unknown, offset: Unknown) -> Result<Self> {
    Self::place(&env, memory, offset, shmkit::RobustMutex::init_in)
  }

  /// Attaches to the mutex another process initialised at `offset` inside `memory`.
  #[napi(factory, ts_args_type = "memory: SharedMemory, offset: number")]
  pub fn at(env: Env, memory: Unknown, offset: Unknown) -> Result<Self> {
    Self::place(&env, memory, offset, shmkit::RobustMutex::at)
  }

  /// A handle over the mutex `make` (initialise or attach) finds at `offset` of `memory`.
  fn place(
    env: &Env,
    memory: Unknown<'_>,
    offset: Unknown<'_>,
    make: fn(Arc<shmkit::Region>, usize) -> shmkit::Result<shmkit::RobustMutex>,
  ) -> Result<Self> {
    abandon_on_teardown(env)?;
    let region = SharedMemory::region_arg(env, memory, "memory")?;
    let offset = args::offset(env, offset, "offset")?;
    Ok(Self {
      inner: Some(Arc::new(make(region, offset).js(env)?)),
      pending: RefCell::default(),
    })
  }

  fn live(&self, env: &Env) -> Result<&Arc<shmkit::RobustMutex>> {
    self.inner.as_ref().ok_or_else(|| closed(env, "RobustMutex"))
  }

  /// Blocks this thread (and the event loop) until the lock is held (`{ ownerDied }`), or
  /// until `timeout` milliseconds pass on the monotonic clock (then returns `null`: running out
  /// of time is an answer, not an error). A holder that died is noticed within about 20 ms.
  /// Keep critical sections short.
  #[napi]
  pub fn lock_sync(&self, env: Env, options: Option<WaitSyncOptions>) -> Result<Option<LockResult>> {
    let timeout = options.and_then(|o| o.timeout());
    let mutex = self.live(&env)?;
    let lock = match timeout {
      Some(timeout) => mutex.lock_timeout(timeout),
      None => mutex.lock(),
    };
    locked(lock).js(&env)
  }

  /// Takes the lock without blocking the event loop: resolves `{ ownerDied }` once this JS
  /// thread holds it (as with `lockSync`, the lock belongs to this thread), or `null` when
  /// `timeout` milliseconds pass first. Rejects with an `AbortError` when `signal` aborts (the
  /// lock is then not taken), or with the errors of `lockSync`. A holder that died is
  /// noticed within about 20 ms. Uses no thread of its own and never the libuv threadpool.
  #[napi(ts_return_type = "Promise<LockResult | null>")]
  pub fn lock<'e>(&self, env: &'e Env, options: Option<WaitOptions<'e>>) -> Result<Object<'e>> {
    let mut options = options.unwrap_or_default();
    let mutex = self.live(env)?.clone();
    if let Some(error) = options.aborted(env)? {
      return settled::<Option<LockResult>>(env, Err(error));
    }
    let (timeout, signal) = (options.timeout(), options.take_signal());
    let word = Word::in_region(mutex.region().clone(), mutex.offset()).js(env)?;
    let (deferred, promise) = Deferred::new(env)?;
    let pending = Rc::new(AsyncLock {
      attempt: Cell::new(LockAttempt::new(timeout.and_then(|t| Instant::now().checked_add(t)))),
      mutex,
      word,
      promise: RefCell::new(Some(Pending { deferred, abort: None })),
      armed: Cell::new(None),
    });
    if let Some(signal) = &signal {
      let on_abort = Rc::downgrade(&pending);
      let hook = AbortHook::listen(env, signal, move |env, reason| {
        if let Some(pending) = on_abort.upgrade() {
          if let Some(id) = pending.armed.take() {
            waiter::cancel(env, id);
          }
          pending.finish(env, Err(abort_error(env, Some(reason))));
        }
      })?;
      if let Some(promise) = pending.promise.borrow_mut().as_mut() {
        promise.abort = Some(hook);
      }
    }
    advance(env, &pending);
    let mut list = self.pending.borrow_mut();
    list.retain(|p| p.upgrade().is_some_and(|p| p.promise.borrow().is_some()));
    list.push(Rc::downgrade(&pending));
    Ok(promise)
  }

  /// Takes the lock if it is free (or its holder is dead); `null` if a live thread holds it.
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

  /// After `ownerDied: true`, by the thread holding the lock: declares the protected data
  /// consistent again, so the mutex goes back to normal use when unlocked (`EPERM` from a
  /// thread that does not hold it, `EINVAL` when there is nothing to repair).
  #[napi]
  pub fn mark_consistent(&self, env: Env) -> Result<()> {
    self.live(&env)?.make_consistent().js(&env)
  }

  /// `true` while this thread holds the lock (through any handle).
  #[napi(getter)]
  pub fn held(&self, env: Env) -> Result<bool> {
    Ok(self.live(&env)?.is_held())
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

  /// Lets go of this handle. It never unlocks: a lock this thread holds stays held (unlock it
  /// through another handle, or it is reported as `ownerDied` when the thread ends). Pending
  /// `lock()` calls reject with `ERR_SHM_CLOSED` without taking the lock. The mutex itself
  /// stays in the region for other processes. Idempotent.
  #[napi]
  pub fn close(&mut self, env: Env) {
    self.inner = None;
    for pending in self.pending.take().iter().filter_map(Weak::upgrade) {
      if let Some(id) = pending.armed.take() {
        waiter::cancel(&env, id);
      }
      pending.finish(&env, Err(closed(&env, "RobustMutex")));
    }
  }
}

/// One pending `lock()`: stepped on the JS thread, waiting between steps through
/// `crate::waiter` on the lock word (in slices, so a dead holder is noticed).
struct AsyncLock {
  mutex: Arc<shmkit::RobustMutex>,
  word: Word,
  attempt: Cell<LockAttempt>,
  /// `None` once settled.
  promise: RefCell<Option<Pending>>,
  armed: Cell<Option<WaitId>>,
}

impl AsyncLock {
  fn finish(&self, env: &Env, outcome: Result<Option<LockResult>>) {
    let promise = self.promise.borrow_mut().take();
    if let Some(promise) = promise {
      promise.settle(env, outcome);
    }
  }
}

/// Takes a step of `pending` on this JS thread: settles it, or arms the next wait. The lock
/// is taken and the promise settled in the same step, so an abort never strands a lock.
fn advance(env: &Env, pending: &Rc<AsyncLock>) {
  if pending.promise.borrow().is_none() {
    return; // aborted
  }
  let mut attempt = pending.attempt.get();
  let step = pending.mutex.step(&mut attempt);
  pending.attempt.set(attempt);
  match step {
    Ok(Step::Locked(lock)) => pending.finish(env, locked(Ok(lock)).js(env)),
    Ok(Step::Wait { expected, until }) => {
      let next = Rc::clone(pending);
      let done: waiter::Done = Box::new(move |env, outcome| {
        next.armed.set(None);
        match outcome {
          Ok(outcome) => {
            let mut attempt = next.attempt.get();
            attempt.waited(outcome);
            next.attempt.set(attempt);
            advance(env, &next);
          }
          Err(e) => next.finish(env, Err(to_js(env, &e))),
        }
      });
      match waiter::arm(env, pending.word.clone(), expected, Some(until), done) {
        Ok(id) => pending.armed.set(Some(id)),
        Err(e) => pending.finish(env, Err(e)),
      }
    }
    Err(e) => pending.finish(env, locked(Err(e)).js(env)),
  }
}

/// A lock attempt's answer: `{ ownerDied }` once held, `null` when its time ran out.
fn locked(lock: shmkit::Result<Lock>) -> shmkit::Result<Option<LockResult>> {
  match lock {
    Ok(lock) => Ok(Some(LockResult {
      owner_died: lock == Lock::OwnerDied,
    })),
    Err(e) if e.kind() == shmkit::ErrorKind::TimedOut => Ok(None),
    Err(e) => Err(e),
  }
}

thread_local! {
  /// Whether this JS thread's env has the teardown hook (one env per JS thread).
  static HOOKED: Cell<bool> = const { Cell::new(false) };
}

/// A worker's env can be torn down (`worker.terminate()`) without its locks being unlocked:
/// the hook marks the locks this thread still holds as owner-died and wakes their waiters,
/// as a thread that exits does.
fn abandon_on_teardown(env: &Env) -> Result<()> {
  if !HOOKED.get() {
    env.add_env_cleanup_hook((), |()| {
      shmkit::RobustMutex::abandon_thread_locks();
      HOOKED.set(false);
    })?;
    HOOKED.set(true);
  }
  Ok(())
}
