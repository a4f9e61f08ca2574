//! `Semaphore`: a `shmkit::Semaphore` seen from JavaScript, with blocking and async waits.
//!
//! How `wait()` works (why this file looks the way it does):
//! - When a permit is there and no wait is queued, `wait()` takes it on the JS thread and
//!   returns a promise that is already settled.
//! - Otherwise the wait is queued on this object (FIFO), and the object has one async wait
//!   (`crate::waiter`) armed on the semaphore's value word while its queue is not empty,
//!   counting itself once among the semaphore's waiters (so posts from any process wake the
//!   word). When that wait ends, on the JS thread, permits are taken for the queued waits,
//!   oldest first, each settled in the same step it was taken: a permit is never held for a
//!   wait that could go away. Waits past their deadline resolve `false`; the wait is armed
//!   again with the earliest deadline left.
//! - An `AbortSignal`, `close()` and env teardown take waits off the queue; the last one to
//!   go cancels the armed wait, and the waiter count is given back when the armed wait's
//!   closure drops (settled, cancelled, or dropped by env teardown).
//! - No thread of its own: `io_uring` or the few shared waiter threads (see `waiter.rs`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::ValueType;

use crate::args;
use crate::error::{abort_error, closed, coded, IntoJs, ERR_SHM_UNSUPPORTED};
use crate::memory::SharedMemory;
use crate::options::{read_options, WaitOptions, WaitSyncOptions};
use crate::promise::{settled, AbortHook, Deferred, Pending};
use crate::waiter::{self, WaitId, Word};

/// How often a semaphore without a wait word (a macOS named one) is looked at.
const POLL: Duration = Duration::from_millis(5);

/// Bytes an in-region semaphore occupies.
/// @deprecated Use `Semaphore.SIZE`.
#[napi]
#[cfg_attr(test, expect(dead_code, reason = "napi registers constants outside unit tests only"))]
#[expect(clippy::cast_possible_truncation, reason = "sizeof(sem_t) is a few dozen bytes")]
pub const SEMAPHORE_SIZE: u32 = shmkit::Semaphore::SIZE as u32;

/// The alignment an in-region semaphore's offset needs.
/// @deprecated Use `Semaphore.ALIGN`.
#[napi]
#[cfg_attr(test, expect(dead_code, reason = "napi registers constants outside unit tests only"))]
#[expect(clippy::cast_possible_truncation, reason = "alignof(sem_t) is at most 16")]
pub const SEMAPHORE_ALIGNMENT: u32 = shmkit::Semaphore::ALIGN as u32;

/// The largest value a semaphore can hold.
/// @deprecated Use `Semaphore.VALUE_MAX`.
#[napi]
#[cfg_attr(test, expect(dead_code, reason = "napi registers constants outside unit tests only"))]
pub const SEMAPHORE_VALUE_MAX: u32 = shmkit::Semaphore::VALUE_MAX;

/// Options for `Semaphore.create` and `Semaphore.openOrCreate`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
pub struct SemaphoreOptions {
  /// The value of a new semaphore: how many `wait()`s succeed before one blocks. An integer
  /// from `0` to `Semaphore.VALUE_MAX`. Default `0`.
  pub initial: Option<u32>,
  /// Permission bits of a new semaphore, applied exactly on Linux (the umask does not narrow
  /// them; on macOS it does). An integer from `0` to `0o777`. Default `0o600`: only the
  /// owner may open it.
  pub mode: Option<u32>,
  /// Whose semaphore to accept when opening an existing one: a user id, or `'any'`. Default:
  /// only this process's user's; one another user created is refused with
  /// `ERR_SHM_FOREIGN_OWNER` (checked on Linux).
  #[napi(ts_type = "number | 'any'")]
  pub owner: Option<shmkit::Owner>,
}

read_options!(SemaphoreOptions {
  initial: initial_value,
  mode: args::mode,
  owner: args::owner
});

impl SemaphoreOptions {
  fn to_core(&self) -> shmkit::SemOptions {
    shmkit::SemOptions::new()
      .mode(self.mode.unwrap_or(0o600))
      .owner(self.owner.unwrap_or(shmkit::Owner::Me))
  }
}

/// Options for `Semaphore.open`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
pub struct SemaphoreOpenOptions {
  /// Whose semaphore to accept: a user id, or `'any'`. Default: only this process's user's;
  /// one another user created is refused with `ERR_SHM_FOREIGN_OWNER` (checked on Linux).
  #[napi(ts_type = "number | 'any'")]
  pub owner: Option<shmkit::Owner>,
}

read_options!(SemaphoreOpenOptions { owner: args::owner });

/// A semaphore's value: an integer from 0 to `Semaphore.VALUE_MAX`.
fn initial_value(env: &Env, value: Unknown<'_>, arg: &str) -> Result<u32> {
  args::uint32(env, value, arg, 0, shmkit::Semaphore::VALUE_MAX)
}

/// One pending `wait()`.
struct Waiter {
  id: u64,
  deadline: Option<Instant>,
  promise: Pending,
}

impl Waiter {
  fn settle(self, env: &Env, outcome: Result<bool>) {
    self.promise.settle(env, outcome);
  }
}

/// This object's count among the semaphore's waiters, given back when dropped.
struct Counted(Arc<shmkit::Semaphore>);

impl Counted {
  fn new(sem: &Arc<shmkit::Semaphore>) -> Self {
    sem.add_waiter();
    Self(sem.clone())
  }
}

impl Drop for Counted {
  fn drop(&mut self) {
    self.0.remove_waiter();
  }
}

/// What the JS object and its armed wait share (JS thread only).
struct Shared {
  sem: Arc<shmkit::Semaphore>,
  queue: RefCell<VecDeque<Waiter>>,
  /// The armed wait and its deadline, while the queue is not empty.
  armed: Cell<Option<(WaitId, Option<Instant>)>>,
  next_id: Cell<u64>,
}

impl Shared {
  /// The word to wait on: the semaphore's value word, or (macOS named semaphores) a timer.
  fn word(&self) -> (Word, Option<Instant>) {
    match Word::of_semaphore(self.sem.clone()) {
      Some(word) => (word, None),
      None => (Word::timer(), Some(Instant::now() + POLL)),
    }
  }

  fn earliest(&self) -> Option<Instant> {
    self.queue.borrow().iter().filter_map(|w| w.deadline).min()
  }

  /// Arms the wait for the queue (replacing one armed with a later deadline).
  fn arm(self: &Rc<Self>, env: &Env, counted: Option<Counted>) -> Result<()> {
    let deadline = self.earliest();
    let (word, tick) = self.word();
    let at = match (deadline, tick) {
      (Some(d), Some(t)) => Some(d.min(t)),
      (d, t) => d.or(t),
    };
    let counted = counted.unwrap_or_else(|| Counted::new(&self.sem));
    let shared = self.clone();
    let id = waiter::arm(
      env,
      word,
      0,
      at,
      Box::new(move |env, outcome| {
        shared.armed.set(None);
        shared.serve(env, outcome.err(), counted);
      }),
    )?;
    if let Some((old, _)) = self.armed.replace(Some((id, deadline))) {
      waiter::cancel(env, old);
    }
    Ok(())
  }

  /// The armed wait ended: take permits for the queued waits, oldest first; expire the
  /// ones past their deadline; arm again if any are left.
  fn serve(self: &Rc<Self>, env: &Env, failed: Option<shmkit::Error>, counted: Counted) {
    if let Some(error) = failed {
      return self.fail_all(env, &error);
    }
    loop {
      if self.queue.borrow().is_empty() {
        break;
      }
      match self.sem.try_wait() {
        Ok(true) => {
          let front = self.queue.borrow_mut().pop_front();
          match front {
            Some(waiter) => waiter.settle(env, Ok(true)),
            None => drop(self.sem.post()),
          }
        }
        Ok(false) => break,
        Err(error) => return self.fail_all(env, &error),
      }
    }
    let now = Instant::now();
    let expired: Vec<Waiter> = {
      let mut queue = self.queue.borrow_mut();
      let (gone, kept) = queue.drain(..).partition(|w| w.deadline.is_some_and(|d| d <= now));
      *queue = kept;
      gone.into()
    };
    for waiter in expired {
      waiter.settle(env, Ok(false));
    }
    if self.queue.borrow().is_empty() {
      return; // `counted` drops: no longer a waiter
    }
    if let Err(error) = self.arm(env, Some(counted)) {
      for waiter in self.take_all() {
        waiter.settle(env, Err(Error::new(error.status, error.reason.clone())));
      }
    }
  }

  fn fail_all(&self, env: &Env, error: &shmkit::Error) {
    for waiter in self.take_all() {
      waiter.settle(env, Err(crate::error::to_js(env, error)));
    }
  }

  fn take_all(&self) -> Vec<Waiter> {
    self.queue.borrow_mut().drain(..).collect()
  }

  /// Removes waiter `id` (aborted). The last one to go cancels the armed wait.
  fn remove(&self, env: &Env, id: u64) -> Option<Waiter> {
    let waiter = {
      let mut queue = self.queue.borrow_mut();
      let index = queue.iter().position(|w| w.id == id)?;
      queue.remove(index)
    };
    if self.queue.borrow().is_empty() {
      if let Some((armed, _)) = self.armed.take() {
        waiter::cancel(env, armed);
      }
    }
    waiter
  }

  /// Ends every pending wait with `ERR_SHM_CLOSED` and cancels the armed wait.
  fn shut(&self, env: &Env) {
    if let Some((armed, _)) = self.armed.take() {
      waiter::cancel(env, armed);
    }
    for waiter in self.take_all() {
      waiter.settle(env, Err(closed(env, "Semaphore")));
    }
  }
}

/// A POSIX semaphore shared between processes: named (any process that knows the name) or
/// placed inside a `SharedMemory` region (processes that map the same region).
///
/// `wait()` never blocks the event loop and never occupies a libuv threadpool thread;
/// `waitSync()` blocks this thread. Signals that interrupt a wait are retried.
///
/// ```ts
/// import { Semaphore } from 'shmkit'
/// using lock = Semaphore.openOrCreate('jobs-lock', { initial: 1 })
/// if (await lock.wait({ timeout: 5000 })) {
///   try {
///     // the critical section
///   } finally {
///     lock.post()
///   }
/// }
/// ```
#[napi]
pub struct Semaphore {
  shared: Option<Rc<Shared>>,
  name: Option<String>,
  offset: Option<usize>,
}

impl Semaphore {
  #[expect(
    clippy::unnecessary_wraps,
    reason = "one signature for every maker, share.rs included"
  )]
  pub(crate) fn wrap(_env: &Env, sem: shmkit::Semaphore) -> Result<Self> {
    let name = sem.name().map(str::to_owned);
    let offset = sem.offset();
    let shared = Rc::new(Shared {
      sem: Arc::new(sem),
      queue: RefCell::default(),
      armed: Cell::new(None),
      next_id: Cell::new(0),
    });
    Ok(Self {
      shared: Some(shared),
      name,
      offset,
    })
  }

  /// A named semaphore that `make` (create, or open or create) gives for `name` and the
  /// `SemaphoreOptions`.
  fn named(
    env: &Env,
    name: Unknown<'_>,
    options: Option<Unknown<'_>>,
    make: fn(&shmkit::ObjectName, u32, &shmkit::SemOptions) -> shmkit::Result<shmkit::Semaphore>,
  ) -> Result<Self> {
    let name = args::object_name(env, name, "name")?;
    let options = SemaphoreOptions::from_arg(env, options)?;
    let initial = options.initial.unwrap_or(0);
    Self::wrap(env, make(&name, initial, &options.to_core()).js(env)?)
  }

  fn live(&self, env: &Env) -> Result<&Rc<Shared>> {
    self.shared.as_ref().ok_or_else(|| closed(env, "Semaphore"))
  }
}

/// Borrows the region of a `SharedMemory` argument, which must be a shared mapping.
fn region_of(env: &Env, memory: Unknown<'_>) -> Result<Arc<shmkit::Region>> {
  let instance = SharedMemory::from_arg(env, memory, "memory")?;
  if instance.private() {
    return Err(args::invalid_value(
      env,
      "memory",
      "must be a shared mapping: other processes would not see a semaphore in a private (or readOnly) one",
      "a private SharedMemory",
    ));
  }
  instance.region(env)
}

#[napi]
impl Semaphore {
  /// Creates the named semaphore `name` (`'jobs'` or `'/jobs'`; on Linux the file
  /// `/dev/shm/sem.jobs`). Fails with `EEXIST` if it exists (`O_CREAT | O_EXCL`). C, Rust and
  /// Python programs open the same semaphore by name (`sem_open`).
  #[napi(
    factory,
    ts_args_type = "name: string, options?: SemaphoreOptions | undefined | null"
  )]
  pub fn create(env: Env, name: Unknown, options: Option<Unknown>) -> Result<Self> {
    Self::named(&env, name, options, |name, initial, opts| {
      shmkit::Semaphore::create_with(name, initial, opts)
    })
  }

  /// Opens the existing named semaphore `name`. Fails with `ENOENT` if there is none.
  #[napi(
    factory,
    ts_args_type = "name: string, options?: SemaphoreOpenOptions | undefined | null"
  )]
  pub fn open(env: Env, name: Unknown, options: Option<Unknown>) -> Result<Self> {
    let name = args::object_name(&env, name, "name")?;
    let owner = SemaphoreOpenOptions::from_arg(&env, options)?.owner;
    let opts = shmkit::SemOptions::new().owner(owner.unwrap_or(shmkit::Owner::Me));
    Self::wrap(&env, shmkit::Semaphore::open_with(&name, &opts).js(&env)?)
  }

  /// Opens `name` if it exists (keeping its value and mode) or creates it with
  /// `options.initial`.
  #[napi(
    factory,
    ts_args_type = "name: string, options?: SemaphoreOptions | undefined | null"
  )]
  pub fn open_or_create(env: Env, name: Unknown, options: Option<Unknown>) -> Result<Self> {
    Self::named(&env, name, options, |name, initial, opts| {
      shmkit::Semaphore::open_or_create_with(name, initial, opts)
    })
  }

  /// Removes the name `name` (`sem_unlink`). Processes that have it open keep using it.
  /// Fails with `ENOENT` if there is no such name.
  #[napi(js_name = "unlink", ts_args_type = "name: string")]
  pub fn unlink_name(env: Env, name: Unknown) -> Result<()> {
    let name = args::object_name(&env, name, "name")?;
    shmkit::Semaphore::unlink(&name).js(&env)
  }

  /// Initialises a process-shared semaphore (`sem_init(pshared = 1)`) with value `initial`
  /// (default `0`) at byte `offset` of `memory`. Other processes that map the same memory
  /// (a named or memfd region, or a forked child) use it through `Semaphore.at`.
  ///
  /// The `Semaphore.SIZE` bytes at `offset` belong to the semaphore: do not write over them
  /// through `buffer` (operations on a damaged semaphore throw `EINVAL`). `offset` must be a
  /// multiple of `Semaphore.ALIGN`, and the region shared and writable. The semaphore
  /// keeps the mapping alive: closing `memory` does not affect it. The bytes are glibc's
  /// `sem_t`, so on glibc C programs use it with `sem_post`/`sem_wait` too.
  #[napi(
    factory,
    ts_args_type = "memory: SharedMemory, offset: number, initial?: number | undefined | null"
  )]
  pub fn init(env: Env, memory: Unknown, offset: Unknown, initial: Option<Unknown>) -> Result<Self> {
    let offset = args::offset(&env, offset, "offset")?;
    let initial = match initial {
      Some(value) if !matches!(value.get_type()?, ValueType::Undefined | ValueType::Null) => {
        initial_value(&env, value, "initial")?
      }
      _ => 0,
    };
    let region = region_of(&env, memory)?;
    Self::wrap(&env, shmkit::Semaphore::init_in(region, offset, initial).js(&env)?)
  }

  /// Uses the semaphore that `Semaphore.init` (in this or another process) placed at byte
  /// `offset` of `memory` (or a C program's `sem_init(pshared = 1)` on glibc), without
  /// initialising anything. Throws `EINVAL` when the bytes there hold no semaphore.
  #[napi(factory, ts_args_type = "memory: SharedMemory, offset: number")]
  pub fn at(env: Env, memory: Unknown, offset: Unknown) -> Result<Self> {
    let offset = args::offset(&env, offset, "offset")?;
    let region = region_of(&env, memory)?;
    Self::wrap(&env, shmkit::Semaphore::at(region, offset).js(&env)?)
  }

  /// Adds one to the value (`sem_post`), waking one waiter in any process. Throws
  /// `EOVERFLOW` at `Semaphore.VALUE_MAX`.
  #[napi]
  pub fn post(&self, env: Env) -> Result<()> {
    self.live(&env)?.sem.post().js(&env)
  }

  /// Takes one from the value if it is above zero, without waiting (`sem_trywait`).
  /// Returns whether it did. (It may take a permit before this object's pending `wait()`s.)
  #[napi]
  pub fn try_wait(&self, env: Env) -> Result<bool> {
    self.live(&env)?.sem.try_wait().js(&env)
  }

  /// Blocks this thread until it takes one from the value (`sem_wait`), or until
  /// `options.timeout` milliseconds have passed (`sem_timedwait`). Returns `true` when it
  /// took one, `false` when the time ran out. Signals that arrive meanwhile are handled
  /// after it returns; they do not end the wait. Prefer `wait()` on the main thread.
  #[napi]
  pub fn wait_sync(&self, env: Env, options: Option<WaitSyncOptions>) -> Result<bool> {
    let timeout = options.and_then(|o| o.timeout());
    let shared = self.live(&env)?;
    match timeout {
      None => shared.sem.wait().map(|()| true),
      Some(timeout) => shared.sem.wait_timeout(timeout),
    }
    .js(&env)
  }

  /// Waits without blocking: resolves `true` once it took one from the value, `false` when
  /// `options.timeout` milliseconds passed first. Rejects with an `AbortError`
  /// (`code: 'ABORT_ERR'`) when `options.signal` aborts first, and with `ERR_SHM_CLOSED`
  /// when `close()` is called first. Pending waits of one semaphore object are served in
  /// the order they were made; they use no thread of their own and none of the libuv pool
  /// (on Linux ≥ 6.7 a post from any process completes straight into the event loop). A
  /// pending wait keeps the process alive.
  #[napi(ts_return_type = "Promise<boolean>")]
  pub fn wait<'e>(&self, env: &'e Env, options: Option<WaitOptions<'e>>) -> Result<Object<'e>> {
    let mut options = options.unwrap_or_default();
    let shared = self.live(env)?.clone();
    if let Some(error) = options.aborted(env)? {
      return settled::<bool>(env, Err(error));
    }
    let (timeout, signal) = (options.timeout(), options.take_signal());
    // The fast path, only when no wait is queued (so it never jumps the queue).
    let idle = shared.queue.borrow().is_empty();
    match if idle { shared.sem.try_wait() } else { Ok(false) } {
      Ok(true) => {
        return settled(env, Ok(true)).inspect_err(|_| {
          // No promise carries the permit: give it back.
          let _ = shared.sem.post();
        });
      }
      Ok(false) if timeout == Some(Duration::ZERO) => return settled(env, Ok(false)),
      Ok(false) => {}
      Err(e) => return settled::<bool>(env, Err(crate::error::to_js(env, &e))),
    }
    let id = shared.next_id.get() + 1;
    shared.next_id.set(id);
    let abort = match &signal {
      Some(signal) => {
        let on_abort = Rc::downgrade(&shared);
        Some(AbortHook::listen(env, signal, move |env, reason| {
          let Some(shared) = on_abort.upgrade() else { return };
          if let Some(waiter) = shared.remove(env, id) {
            waiter.settle(env, Err(abort_error(env, Some(reason))));
          }
        })?)
      }
      None => None,
    };
    let (deferred, promise) = Deferred::new(env)?;
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    shared.queue.borrow_mut().push_back(Waiter {
      id,
      deadline,
      promise: Pending { deferred, abort },
    });
    // Arm when nothing is armed, or when this wait's deadline comes before the armed one's.
    let rearm = match shared.armed.get() {
      None => true,
      Some((_, armed)) => deadline.is_some_and(|d| armed.is_none_or(|a| d < a)),
    };
    if rearm {
      if let Err(error) = shared.arm(env, None) {
        if let Some(waiter) = shared.remove(env, id) {
          waiter.settle(env, Err(error));
        }
      }
    }
    Ok(promise)
  }

  /// The current value (`sem_getvalue`): a snapshot, since other processes may change it
  /// at any time. Throws `ERR_SHM_UNSUPPORTED` on macOS.
  #[napi(getter)]
  pub fn value(&self, env: Env) -> Result<u32> {
    self.live(&env)?.sem.value().js(&env)
  }

  /// The name with its leading `/` (`'/jobs'`), or `null` for an in-region semaphore.
  #[napi(getter)]
  pub fn name(&self) -> Option<String> {
    self.name.clone()
  }

  /// The byte offset of an in-region semaphore in its region, or `null` for a named one.
  #[napi(getter)]
  pub fn offset(&self) -> Option<f64> {
    #[expect(clippy::cast_precision_loss, reason = "offsets are at most 2**47")]
    self.offset.map(|o| o as f64)
  }

  /// `true` once `close()` (or `destroy()`) has run.
  #[napi(getter)]
  pub fn closed(&self) -> bool {
    self.shared.is_none()
  }

  /// Removes this semaphore's name (`sem_unlink`); the handle stays usable until `close()`.
  /// Throws `ERR_SHM_UNSUPPORTED` for an in-region semaphore.
  #[napi(js_name = "unlink")]
  pub fn unlink_self(&self, env: Env) -> Result<()> {
    self.live(&env)?;
    match &self.name {
      Some(name) => shmkit::Semaphore::unlink(name.as_str()).js(&env),
      None => Err(coded(
        &env,
        ERR_SHM_UNSUPPORTED,
        "only named semaphores can be unlinked",
      )),
    }
  }

  /// Releases this handle: pending `wait()`s reject with `ERR_SHM_CLOSED`, and the
  /// semaphore is no longer usable through this object. Idempotent. The semaphore itself
  /// stays (a name until `unlink()`, an in-region semaphore until `destroy()` or unmap).
  #[napi]
  pub fn close(&mut self, env: Env) {
    if let Some(shared) = self.shared.take() {
      shared.shut(&env);
    }
  }

  /// Destroys an in-region semaphore (`sem_destroy`) and closes this handle. No process may
  /// use it afterwards until `Semaphore.init` initialises it again. Throws
  /// `ERR_SHM_UNSUPPORTED` for a named semaphore (use `unlink()`).
  #[napi]
  pub fn destroy(&mut self, env: Env) -> Result<()> {
    if self.live(&env)?.sem.offset().is_none() {
      return Err(coded(
        &env,
        ERR_SHM_UNSUPPORTED,
        "only in-region semaphores can be destroyed; named ones are unlinked",
      ));
    }
    let shared = self.shared.take().expect("checked live above");
    shared.shut(&env);
    // The armed wait is cancelled, so this object holds the only references.
    match Rc::try_unwrap(shared).ok().and_then(|s| Arc::try_unwrap(s.sem).ok()) {
      Some(sem) => sem.destroy().js(&env),
      None => Ok(()),
    }
  }
}
