//! `Semaphore`: a `shmkit::Semaphore` seen from JavaScript, with blocking and async waits.
//!
//! How `wait()` avoids the libuv threadpool (why this file looks the way it does):
//! - When a permit is there and no wait is queued, `wait()` takes it on the JS thread and
//!   returns a promise that is already settled.
//! - Otherwise the wait is queued. Each semaphore object with queued waits has one
//!   dispatcher thread of its own (64 KiB stack), started on demand; it lingers one slice
//!   after the queue empties, then exits. It waits on the semaphore in bounded slices
//!   (`sem_timedwait`, at most [`SLICE`]) and hands each permit it takes to the oldest queued
//!   wait (FIFO), settling that wait's `JsDeferred` (a threadsafe function, so the promise
//!   settles on the JS thread).
//! - A permit is never lost: if the wait it was taken for went away meanwhile (aborted,
//!   closed), the dispatcher gives the next one the permit or posts it back.
//! - Timeouts are deadlines the dispatcher checks between slices; an `AbortSignal` settles
//!   its wait at once on the JS thread, which removes it from the queue first.
//! - `close()` rejects pending waits with `ERR_SHM_CLOSED`; the dispatcher notices within a
//!   slice, gives back any permit it took for nobody, and exits. Env teardown (a worker
//!   ending) does the same for every semaphore of that env and joins the dispatchers.
//! - The dispatcher holds the core semaphore through an `Arc`, so a named semaphore is only
//!   `sem_close`d, and a region only unmapped, once the dispatcher is done with it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ptr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::{sys, JsDeferred, ValueType};

use crate::args;
use crate::error::{abort_error, closed, js_error, Class, IntoJs, ERR_SHM_UNSUPPORTED};

/// The longest a dispatcher sleeps before it looks at timeouts and `close()` again.
const SLICE: Duration = Duration::from_millis(100);

/// Bytes an in-region semaphore occupies (`sizeof(sem_t)`: 32 on 64-bit Linux). Lay out
/// shared memory so that each semaphore gets this many bytes at an offset that is a
/// multiple of `SEMAPHORE_ALIGNMENT`.
#[napi]
#[cfg_attr(test, expect(dead_code, reason = "napi registers constants outside unit tests only"))]
#[expect(clippy::cast_possible_truncation, reason = "sizeof(sem_t) is a few dozen bytes")]
pub const SEMAPHORE_SIZE: u32 = shmkit::Semaphore::SIZE as u32;

/// The alignment an in-region semaphore's offset needs (8 on 64-bit Linux).
#[napi]
#[cfg_attr(test, expect(dead_code, reason = "napi registers constants outside unit tests only"))]
#[expect(clippy::cast_possible_truncation, reason = "alignof(sem_t) is at most 16")]
pub const SEMAPHORE_ALIGNMENT: u32 = shmkit::Semaphore::ALIGN as u32;

/// The largest value a semaphore can hold (`SEM_VALUE_MAX`: 2147483647 on Linux, 32767 on
/// macOS). `post()` beyond it throws `EOVERFLOW`.
#[napi]
#[cfg_attr(test, expect(dead_code, reason = "napi registers constants outside unit tests only"))]
pub const SEMAPHORE_VALUE_MAX: u32 = shmkit::Semaphore::VALUE_MAX;

/// Options for `Semaphore.create` and `Semaphore.openOrCreate`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code, reason = "declares the TypeScript type; options are parsed by hand")]
pub struct SemaphoreOptions {
  /// The value of a new semaphore: how many `wait()`s succeed before one blocks. An integer
  /// from `0` to `SEMAPHORE_VALUE_MAX`. Default `0`.
  pub initial: Option<u32>,
  /// Permission bits of a new semaphore, applied exactly on Linux (the umask does not narrow
  /// them; on macOS it does). An integer from `0` to `0o777`. Default `0o600`: only the
  /// owner may open it.
  pub mode: Option<u32>,
  /// Whose semaphore to accept when opening an existing one: a user id, or `'any'`. Default:
  /// only this process's user's; one another user created is refused with
  /// `ERR_SHM_FOREIGN_OWNER` (checked on Linux).
  #[napi(ts_type = "number | 'any'")]
  pub owner: Option<u32>,
}

/// Options for `Semaphore.open`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code, reason = "declares the TypeScript type; options are parsed by hand")]
pub struct SemaphoreOpenOptions {
  /// Whose semaphore to accept: a user id, or `'any'`. Default: only this process's user's;
  /// one another user created is refused with `ERR_SHM_FOREIGN_OWNER` (checked on Linux).
  #[napi(ts_type = "number | 'any'")]
  pub owner: Option<u32>,
}

/// Options for `waitSync`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code, reason = "declares the TypeScript type; options are parsed by hand")]
pub struct WaitSyncOptions {
  /// The longest to wait, in milliseconds (fractions allowed). `0` tries once; `Infinity`
  /// or absent waits as long as it takes. When it runs out, `waitSync` returns `false`.
  pub timeout: Option<f64>,
}

/// Options for `wait`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code, reason = "declares the TypeScript type; options are parsed by hand")]
pub struct WaitOptions {
  /// The longest to wait, in milliseconds (fractions allowed). `0` tries once; `Infinity`
  /// or absent waits as long as it takes. When it runs out, the promise resolves `false`.
  /// The deadline is checked at least every 100 ms, so it may fire that much late.
  pub timeout: Option<f64>,
  /// Aborting it rejects the pending wait with an `AbortError` (`code` `'ABORT_ERR'`,
  /// `cause` the signal's reason), unless the wait already got its permit.
  #[napi(ts_type = "AbortSignal")]
  pub signal: Option<()>,
}

type Resolver = Box<dyn FnOnce(Env) -> Result<bool> + Send>;

/// The references an `AbortSignal` listener needs: the signal and the listener function.
struct AbortHook {
  signal: sys::napi_ref,
  listener: sys::napi_ref,
}

// SAFETY: napi references are plain pointers. This type only carries them between threads
// inside a waiter; they are used (and deleted) only on the JS thread that made them: in a
// settle closure, in `close()`, or in the listener itself.
unsafe impl Send for AbortHook {}

impl AbortHook {
  /// Removes the listener from the signal and deletes both references. JS thread only.
  fn release(self, env: &Env) {
    if let (Some(signal), Some(listener)) = (reference_value(env, self.signal), reference_value(env, self.listener)) {
      let removed = (|| -> Result<()> {
        // SAFETY: `signal` came from a live reference, so it is an object of this env.
        let signal = unsafe { Object::from_napi_value(env.raw(), signal) }?;
        let remove: Function<'_, FnArgs<(&str, Unknown<'_>)>, Unknown<'_>> =
          signal.get_named_property("removeEventListener")?;
        // SAFETY: `listener` came from a live reference in this env.
        let listener = unsafe { Unknown::from_raw_unchecked(env.raw(), listener) };
        remove.apply(signal, ("abort", listener).into()).map(drop)
      })();
      // A signal whose removeEventListener throws keeps a listener that will find nothing
      // to abort; that is harmless, so the error is dropped (with any pending exception).
      if removed.is_err() {
        clear_exception(env);
      }
    }
    for reference in [self.signal, self.listener] {
      // SAFETY: each reference was created in this env and is deleted exactly once, here.
      unsafe { sys::napi_delete_reference(env.raw(), reference) };
    }
  }
}

fn reference_value(env: &Env, reference: sys::napi_ref) -> Option<sys::napi_value> {
  let mut value = ptr::null_mut();
  // SAFETY: `reference` is a live reference of this env; `value` is a valid out-pointer.
  let status = unsafe { sys::napi_get_reference_value(env.raw(), reference, &raw mut value) };
  (status == sys::Status::napi_ok && !value.is_null()).then_some(value)
}

fn clear_exception(env: &Env) {
  let mut exception = ptr::null_mut();
  // SAFETY: valid env and out-pointer; clearing when nothing is pending is a no-op.
  unsafe { sys::napi_get_and_clear_last_exception(env.raw(), &raw mut exception) };
}

/// One pending `wait()`.
struct Waiter {
  id: u64,
  deferred: JsDeferred<bool, Resolver>,
  deadline: Option<Instant>,
  abort: Option<AbortHook>,
}

impl Waiter {
  /// Settles from any thread. The outcome reaches JS on its thread, which also removes the
  /// abort listener there.
  fn settle(self, outcome: shmkit::Result<bool>) {
    let abort = self.abort;
    self.deferred.resolve(Box::new(move |env| {
      if let Some(hook) = abort {
        hook.release(&env);
      }
      outcome.js(&env)
    }));
  }

  /// Rejects with an error made now, on the JS thread.
  fn reject(self, env: &Env, error: Error) {
    if let Some(hook) = self.abort {
      hook.release(env);
    }
    self.deferred.reject(error);
  }
}

#[derive(Default)]
struct State {
  waiters: VecDeque<Waiter>,
  closed: bool,
  running: bool,
  dispatcher: Option<JoinHandle<()>>,
  next_id: u64,
}

/// What the JS object, its dispatcher thread and the env registry share.
struct Shared {
  sem: shmkit::Semaphore,
  state: Mutex<State>,
  /// Wakes an idle dispatcher: a wait was queued, or the semaphore closed.
  wake: Condvar,
}

impl Shared {
  fn lock(&self) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the queue inconsistent (every change is
    // one push or pop), so a poisoned lock is still usable.
    self.state.lock().unwrap_or_else(PoisonError::into_inner)
  }

  /// Marks the semaphore closed and hands back the waits that were pending.
  fn shut(&self) -> (Vec<Waiter>, Option<JoinHandle<()>>) {
    let mut state = self.lock();
    state.closed = true;
    self.wake.notify_all();
    (state.waiters.drain(..).collect(), state.dispatcher.take())
  }

  /// Queues a waiter and makes sure a dispatcher is running. Gives the waiter back if the
  /// semaphore was closed meanwhile or no thread could be started.
  fn enqueue(self: &Arc<Self>, waiter: Waiter) -> std::result::Result<(), (Waiter, Option<std::io::Error>)> {
    let mut state = self.lock();
    if state.closed {
      return Err((waiter, None));
    }
    state.waiters.push_back(waiter);
    if state.running {
      self.wake.notify_one();
    } else {
      let shared = self.clone();
      let spawned = std::thread::Builder::new()
        .name("shmkit-semaphore".to_owned())
        .stack_size(64 * 1024)
        .spawn(move || dispatch(&shared));
      match spawned {
        Ok(handle) => {
          state.running = true;
          // An earlier dispatcher, if any, has already left its loop; dropping its handle
          // detaches it.
          state.dispatcher = Some(handle);
        }
        Err(e) => {
          let waiter = state.waiters.pop_back().expect("pushed above");
          return Err((waiter, Some(e)));
        }
      }
    }
    Ok(())
  }

  /// Removes a pending waiter by id (it was aborted).
  fn remove(&self, id: u64) -> Option<Waiter> {
    let mut state = self.lock();
    let index = state.waiters.iter().position(|w| w.id == id)?;
    state.waiters.remove(index)
  }
}

/// The dispatcher thread: takes permits for the queued waiters, oldest first. With nothing
/// queued it lingers for one slice, so a steady stream of waits does not start a thread
/// each.
fn dispatch(shared: &Shared) {
  loop {
    let (expired, until) = {
      let mut state = shared.lock();
      if !state.closed && state.waiters.is_empty() {
        state = shared
          .wake
          .wait_timeout_while(state, SLICE, |s| !s.closed && s.waiters.is_empty())
          .unwrap_or_else(PoisonError::into_inner)
          .0;
      }
      let now = Instant::now();
      let (expired, kept) = state
        .waiters
        .drain(..)
        .partition::<VecDeque<_>, _>(|w| w.deadline.is_some_and(|d| d <= now));
      state.waiters = kept;
      if state.closed || state.waiters.is_empty() {
        state.running = false;
        drop(state);
        for waiter in expired {
          waiter.settle(Ok(false));
        }
        return;
      }
      let earliest = state.waiters.iter().filter_map(|w| w.deadline).min();
      let until = earliest.map_or(now + SLICE, |d| d.min(now + SLICE));
      (expired, until)
    };
    for waiter in expired {
      waiter.settle(Ok(false));
    }
    match shared.sem.wait_until(until) {
      Ok(true) => {
        let mut state = shared.lock();
        let next = if state.closed { None } else { state.waiters.pop_front() };
        drop(state);
        match next {
          Some(waiter) => waiter.settle(Ok(true)),
          // Taken for a wait that is gone (aborted, or the semaphore closed): give it back.
          None => drop(shared.sem.post()),
        }
      }
      Ok(false) => {}
      Err(e) => {
        // The semaphore is broken (a damaged in-region one, say): fail every pending wait.
        let mut state = shared.lock();
        state.running = false;
        let failed: Vec<_> = state.waiters.drain(..).collect();
        drop(state);
        for waiter in failed {
          waiter.settle(Err(e.clone()));
        }
        return;
      }
    }
  }
}

thread_local! {
  /// The semaphores of the env running on this thread (one env per JS thread), for the env
  /// cleanup hook. `usize` is the env the hook was installed for.
  static REGISTRY: RefCell<(usize, Vec<Weak<Shared>>)> = const { RefCell::new((0, Vec::new())) };
}

/// Remembers `shared` for env teardown, installing the cleanup hook on first use per env.
fn register(env: &Env, shared: &Arc<Shared>) -> Result<()> {
  let key = env.raw() as usize;
  let install = REGISTRY.with_borrow_mut(|(owner, list)| {
    list.retain(|w| w.strong_count() > 0);
    list.push(Arc::downgrade(shared));
    let install = *owner != key;
    *owner = key;
    install
  });
  if install {
    env.add_env_cleanup_hook((), |()| teardown())?;
  }
  Ok(())
}

/// Env cleanup hook: close every semaphore of this env and stop its dispatcher. The
/// pending promises die with the env (napi-rs aborts their threadsafe functions), so they
/// are dropped rather than settled.
fn teardown() {
  let list = REGISTRY.with_borrow_mut(|(owner, list)| {
    *owner = 0;
    std::mem::take(list)
  });
  let mut threads = Vec::new();
  for shared in list.iter().filter_map(Weak::upgrade) {
    let (waiters, thread) = shared.shut();
    drop(waiters);
    threads.extend(thread);
  }
  // Each dispatcher sees `closed` within one slice and exits.
  for thread in threads {
    let _ = thread.join();
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
  shared: Option<Arc<Shared>>,
  name: Option<String>,
  offset: Option<usize>,
}

impl Semaphore {
  pub(crate) fn wrap(env: &Env, sem: shmkit::Semaphore) -> Result<Self> {
    let name = sem.name().map(str::to_owned);
    let offset = sem.offset();
    let shared = Arc::new(Shared {
      sem,
      state: Mutex::new(State::default()),
      wake: Condvar::new(),
    });
    register(env, &shared)?;
    Ok(Self {
      shared: Some(shared),
      name,
      offset,
    })
  }

  fn live(&self, env: &Env) -> Result<&Arc<Shared>> {
    self.shared.as_ref().ok_or_else(|| closed(env, "Semaphore"))
  }
}

/// Reads `{ initial, mode }`.
fn create_options(env: &Env, options: Option<Unknown>) -> Result<(u32, shmkit::SemOptions)> {
  let options = args::options(env, options, "options")?;
  let initial = initial_value(
    env,
    options
      .as_ref()
      .map(|o| args::property(o, "initial"))
      .transpose()?
      .flatten(),
    "options.initial",
  )?;
  let mode = args::mode_option(env, options.as_ref(), "options")?;
  let owner = args::owner_option(env, options.as_ref(), "options")?;
  Ok((initial, shmkit::SemOptions::new().mode(mode).owner(owner)))
}

fn initial_value(env: &Env, value: Option<Unknown>, arg: &str) -> Result<u32> {
  let Some(value) = value else { return Ok(0) };
  if value.get_type()? == ValueType::Undefined {
    return Ok(0);
  }
  let n = args::integer(env, value, arg, 0.0, f64::from(shmkit::Semaphore::VALUE_MAX))?;
  #[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "an integer in 0..=VALUE_MAX"
  )]
  Ok(n as u32)
}

/// Reads `options.signal`: an `AbortSignal` or absent.
fn signal_option<'e>(env: &Env, options: Option<&Object<'e>>) -> Result<Option<Object<'e>>> {
  let Some(options) = options else { return Ok(None) };
  let Some(value) = args::property(options, "signal")? else {
    return Ok(None);
  };
  let constructor: Function<'_, Unknown<'_>, Unknown<'_>> = env.get_global()?.get_named_property("AbortSignal")?;
  if value.get_type()? != ValueType::Object || !value.instanceof(constructor)? {
    return Err(args::invalid_type(
      env,
      "options.signal",
      "an instance of AbortSignal",
      value,
    ));
  }
  // SAFETY: the type was just checked to be Object.
  Ok(Some(unsafe { value.cast::<Object>() }?))
}

fn aborted(signal: &Object<'_>) -> Result<bool> {
  let aborted: Unknown = signal.get_named_property("aborted")?;
  Ok(
    aborted.get_type()? == ValueType::Boolean && {
      // SAFETY: the type was just checked to be Boolean.
      unsafe { aborted.cast::<bool>() }?
    },
  )
}

/// Borrows the region of a `SharedMemory` argument, which must be a shared mapping.
fn region_of(env: &Env, memory: Unknown<'_>) -> Result<Arc<shmkit::Region>> {
  let instance = args::shared_memory(env, memory, "memory")?;
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
    let name = args::object_name(&env, name, "name")?;
    let (initial, opts) = create_options(&env, options)?;
    Self::wrap(&env, shmkit::Semaphore::create_with(&name, initial, &opts).js(&env)?)
  }

  /// Opens the existing named semaphore `name`. Fails with `ENOENT` if there is none.
  #[napi(
    factory,
    ts_args_type = "name: string, options?: SemaphoreOpenOptions | undefined | null"
  )]
  pub fn open(env: Env, name: Unknown, options: Option<Unknown>) -> Result<Self> {
    let name = args::object_name(&env, name, "name")?;
    let options = args::options(&env, options, "options")?;
    let owner = args::owner_option(&env, options.as_ref(), "options")?;
    let opts = shmkit::SemOptions::new().owner(owner);
    Self::wrap(&env, shmkit::Semaphore::open_with(&name, &opts).js(&env)?)
  }

  /// Opens `name` if it exists (keeping its value and mode) or creates it with
  /// `options.initial`.
  #[napi(
    factory,
    ts_args_type = "name: string, options?: SemaphoreOptions | undefined | null"
  )]
  pub fn open_or_create(env: Env, name: Unknown, options: Option<Unknown>) -> Result<Self> {
    let name = args::object_name(&env, name, "name")?;
    let (initial, opts) = create_options(&env, options)?;
    Self::wrap(
      &env,
      shmkit::Semaphore::open_or_create_with(&name, initial, &opts).js(&env)?,
    )
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
  /// The `SEMAPHORE_SIZE` bytes at `offset` belong to the semaphore: do not write over them
  /// through `buffer` (operations on a damaged semaphore throw `EINVAL`). `offset` must be a
  /// multiple of `SEMAPHORE_ALIGNMENT`, and the region shared and writable. The semaphore
  /// keeps the mapping alive: closing `memory` does not affect it. Linux only
  /// (`ERR_SHM_UNSUPPORTED` on macOS).
  #[napi(
    factory,
    ts_args_type = "memory: SharedMemory, offset: number, initial?: number | undefined | null"
  )]
  pub fn init_in(env: Env, memory: Unknown, offset: Unknown, initial: Option<Unknown>) -> Result<Self> {
    let offset = args::offset(&env, offset, "offset")?;
    let initial = match initial {
      Some(value) if value.get_type()? != ValueType::Null => initial_value(&env, Some(value), "initial")?,
      _ => 0,
    };
    let region = region_of(&env, memory)?;
    Self::wrap(&env, shmkit::Semaphore::init_in(region, offset, initial).js(&env)?)
  }

  /// Uses the semaphore that `Semaphore.initIn` (in this or another process) placed at byte
  /// `offset` of `memory`, without initialising anything. Throws `EINVAL` when the bytes
  /// there visibly hold no semaphore (checked with glibc, whose semaphores would otherwise
  /// abort the process).
  #[napi(factory, ts_args_type = "memory: SharedMemory, offset: number")]
  pub fn at(env: Env, memory: Unknown, offset: Unknown) -> Result<Self> {
    let offset = args::offset(&env, offset, "offset")?;
    let region = region_of(&env, memory)?;
    Self::wrap(&env, shmkit::Semaphore::at(region, offset).js(&env)?)
  }

  /// Adds one to the value (`sem_post`), waking one waiter in any process. Throws
  /// `EOVERFLOW` at `SEMAPHORE_VALUE_MAX`.
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
  #[napi(ts_args_type = "options?: WaitSyncOptions | undefined | null")]
  pub fn wait_sync(&self, env: Env, options: Option<Unknown>) -> Result<bool> {
    let options = args::options(&env, options, "options")?;
    let timeout = args::timeout_option(&env, options.as_ref(), "options")?;
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
  /// the order they were made, by one dispatcher thread (never a libuv threadpool thread);
  /// a pending wait keeps the process alive.
  #[napi(
    ts_args_type = "options?: WaitOptions | undefined | null",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn wait<'e>(&self, env: &'e Env, options: Option<Unknown>) -> Result<Object<'e>> {
    let options = args::options(env, options, "options")?;
    let timeout = args::timeout_option(env, options.as_ref(), "options")?;
    let signal = signal_option(env, options.as_ref())?;
    let shared = self.live(env)?.clone();
    if let Some(signal) = &signal {
      if aborted(signal)? {
        let reason: Unknown = signal.get_named_property("reason")?;
        return settled_promise(env, Err(abort_error(env, Some(reason))));
      }
    }
    // The fast path, only when no wait is queued (so it never jumps the queue): the outcome
    // is known now, so the promise is settled here, without a threadsafe function.
    let idle = shared.lock().waiters.is_empty();
    let now = if idle { shared.sem.try_wait() } else { Ok(false) };
    match now {
      Ok(true) => {
        return settled_promise(env, Ok(true)).inspect_err(|_| {
          // No promise carries the permit: give it back.
          let _ = shared.sem.post();
        });
      }
      Ok(false) if timeout == Some(Duration::ZERO) => return settled_promise(env, Ok(false)),
      Ok(false) => {}
      Err(e) => return settled_promise(env, Err(crate::error::to_js(env, &e))),
    }
    // Everything that can fail comes before the deferred exists: a deferred that is never
    // settled would keep the process alive forever.
    let id = {
      let mut state = shared.lock();
      state.next_id += 1;
      state.next_id
    };
    let abort = match &signal {
      Some(signal) => Some(listen(env, signal, Arc::downgrade(&shared), id)?),
      None => None,
    };
    let (deferred, promise) = match env.create_deferred::<bool, Resolver>() {
      Ok(created) => created,
      Err(e) => {
        if let Some(hook) = abort {
          hook.release(env);
        }
        return Err(e);
      }
    };
    let waiter = Waiter {
      id,
      deferred,
      deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
      abort,
    };
    if let Err((waiter, spawn_error)) = shared.enqueue(waiter) {
      let error = match spawn_error {
        Some(e) => {
          let errno = shmkit::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN));
          crate::error::to_js(env, &shmkit::Error::os(errno, "pthread_create"))
        }
        None => closed(env, "Semaphore"),
      };
      waiter.reject(env, error);
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
      None => Err(js_error(
        &env,
        Class::Error,
        ERR_SHM_UNSUPPORTED,
        "only named semaphores can be unlinked",
        &[],
      )),
    }
  }

  /// Releases this handle: pending `wait()`s reject with `ERR_SHM_CLOSED`, and the
  /// semaphore is no longer usable through this object. Idempotent. The semaphore itself
  /// stays (a name until `unlink()`, an in-region semaphore until `destroy()` or unmap).
  #[napi]
  pub fn close(&mut self, env: Env) {
    let Some(shared) = self.shared.take() else {
      return;
    };
    let (waiters, _dispatcher) = shared.shut();
    for waiter in waiters {
      waiter.reject(&env, closed(&env, "Semaphore"));
    }
    // The dispatcher (detached here) leaves within one slice and drops the last reference,
    // which closes a named semaphore.
  }

  /// Destroys an in-region semaphore (`sem_destroy`) and closes this handle. No process may
  /// use it afterwards until `Semaphore.initIn` initialises it again. Throws
  /// `ERR_SHM_UNSUPPORTED` for a named semaphore (use `unlink()`).
  #[napi]
  pub fn destroy(&mut self, env: Env) -> Result<()> {
    if self.live(&env)?.sem.offset().is_none() {
      return Err(js_error(
        &env,
        Class::Error,
        ERR_SHM_UNSUPPORTED,
        "only in-region semaphores can be destroyed; named ones are unlinked",
        &[],
      ));
    }
    let shared = self.shared.take().expect("checked live above");
    let (waiters, dispatcher) = shared.shut();
    for waiter in waiters {
      waiter.reject(&env, closed(&env, "Semaphore"));
    }
    // The dispatcher must be done with the semaphore before it is destroyed: it exits within
    // one slice of seeing `closed`.
    if let Some(dispatcher) = dispatcher {
      let _ = dispatcher.join();
    }
    match Arc::try_unwrap(shared) {
      Ok(shared) => shared.sem.destroy().js(&env),
      // Only the registry's weak references can remain, so this does not happen; if it did,
      // leaving the semaphore intact is the safe side.
      Err(_) => Ok(()),
    }
  }
}

/// A promise settled at once with `outcome` (no threadsafe function needed on this thread).
fn settled_promise(env: &Env, outcome: std::result::Result<bool, Error>) -> Result<Object<'_>> {
  let mut deferred = ptr::null_mut();
  let mut promise = ptr::null_mut();
  // SAFETY: valid env and out-pointers.
  let status = unsafe { sys::napi_create_promise(env.raw(), &raw mut deferred, &raw mut promise) };
  if status != sys::Status::napi_ok {
    return Err(Error::from_status(Status::from(status)));
  }
  let status = match outcome {
    Ok(took) => {
      // SAFETY: valid env; a bool converts without touching JS.
      let value = unsafe { bool::to_napi_value(env.raw(), took) }?;
      // SAFETY: `deferred` was just created and is settled exactly once, here.
      unsafe { sys::napi_resolve_deferred(env.raw(), deferred, value) }
    }
    Err(error) => {
      // SAFETY: valid env; the error hands back the JS error object it holds.
      let value = unsafe { Error::to_napi_value(env.raw(), error) }?;
      // SAFETY: as above.
      unsafe { sys::napi_reject_deferred(env.raw(), deferred, value) }
    }
  };
  if status != sys::Status::napi_ok {
    return Err(Error::from_status(Status::from(status)));
  }
  Ok(Object::from_raw(env.raw(), promise))
}

/// Adds an `abort` listener to `signal` that rejects waiter `id` if it is still pending.
fn listen(env: &Env, signal: &Object<'_>, shared: Weak<Shared>, id: u64) -> Result<AbortHook> {
  let listener = env.create_function_from_closure::<(), (), _>("onabort", move |ctx| {
    let Some(shared) = shared.upgrade() else { return Ok(()) };
    let Some(waiter) = shared.remove(id) else {
      return Ok(()); // settled already (it got its permit, timed out, or was closed)
    };
    let reason = waiter
      .abort
      .as_ref()
      .and_then(|hook| reference_value(ctx.env, hook.signal))
      .map(|signal| {
        // SAFETY: a live reference of this env to the signal object.
        let signal = unsafe { Object::from_napi_value(ctx.env.raw(), signal) }?;
        signal.get_named_property::<Unknown>("reason")
      })
      .transpose()?;
    let error = abort_error(ctx.env, reason);
    waiter.reject(ctx.env, error);
    Ok(())
  })?;
  let add: Function<'_, FnArgs<(&str, Unknown<'_>, Object<'_>)>, Unknown<'_>> =
    signal.get_named_property("addEventListener")?;
  let mut once = Object::new(env)?;
  once.set_named_property("once", true)?;
  add.apply(signal, ("abort", listener.to_unknown(), once).into())?;
  Ok(AbortHook {
    signal: new_reference(env, signal.raw())?,
    listener: new_reference(env, listener.raw())?,
  })
}

fn new_reference(env: &Env, value: sys::napi_value) -> Result<sys::napi_ref> {
  let mut reference = ptr::null_mut();
  // SAFETY: `value` is a live handle of this env; `reference` is a valid out-pointer.
  let status = unsafe { sys::napi_create_reference(env.raw(), value, 1, &raw mut reference) };
  if status != sys::Status::napi_ok {
    return Err(Error::from_status(Status::from(status)));
  }
  Ok(reference)
}
