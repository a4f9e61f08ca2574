//! The one asynchronous wait of the binding: every async wait on a shared 32-bit word
//! (`waitAsync`, `Semaphore#wait`, and whatever else waits without blocking) goes through
//! here.
//!
//! # Contract
//! - [`arm`]`(env, word, expected, deadline, done)` starts a wait on `word` (a [`Word`]: a
//!   32-bit word in a region or a semaphore, kept mapped by the wait) and returns its
//!   [`WaitId`] at once, on the JS thread of `env`.
//! - `done(env, outcome)` is then called **exactly once, on that JS thread**, inside a
//!   callback scope (promises resolved in it settle at once), with `Ok(WaitOutcome::Woken)`
//!   after a wake on the word or once its value left `expected` (callers re-check their
//!   condition: spurious wake-ups are allowed), `Ok(NotEqual)` if the word did not hold
//!   `expected` when the kernel looked, `Ok(TimedOut)` once `deadline` has passed, or
//!   `Err` for an OS failure. It is never called from inside [`arm`].
//! - **Unless** the wait goes away first: [`cancel`]`(env, id)` (returns `true` if it was
//!   still pending), or the env is torn down (a worker ends). Then `done` is dropped without
//!   being called, on the JS thread or during teardown, so anything it owns must give back
//!   what it took in its `Drop` (a semaphore waiter uncounts itself there).
//! - A pending wait keeps the event loop alive; none pending, the loop may exit.
//!
//! # Mechanisms
//! - **`io_uring`** (Linux ≥ 6.7, when the kernel allows it, libuv is there, and
//!   `SHMKIT_IO_URING` is not `0`): one ring per JS thread (`shmkit::futex_ring`), created on it
//!   (`IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`, retried without them on
//!   `EINVAL`). Each wait is an `IORING_OP_FUTEX_WAIT` (futex2 `FUTEX2_SIZE_U32`, shared: no
//!   private flag, mask `0xffffffff`), linked to an `IORING_OP_LINK_TIMEOUT` with the
//!   absolute monotonic deadline. Completions signal an eventfd registered with the ring,
//!   which a libuv poll handle on this thread's loop watches: a wake from another process
//!   lands in the event loop with no thread in between. On the eventfd, the loop calls
//!   `io_uring_enter(GETEVENTS)` first (with deferred task work the eventfd fires before the
//!   completion is posted), then reads the eventfd, then drains the completion queue.
//! - **Waiter threads** (elsewhere: older kernels, `io_uring` refused by seccomp or
//!   `kernel.io_uring_disabled`, `SHMKIT_IO_URING=0`, macOS, runtimes without libuv):
//!   `shmkit::futex_pool` (its docs say how: at most 4 threads per process, shared by every
//!   env, 127 words each with `futex_waitv`, the rest polled). Completions reach each env
//!   through one threadsafe function.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr::{self, NonNull};
use std::rc::Rc;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Instant;

use napi::bindgen_prelude::*;
use napi::sys;

use crate::raw::{self, check};
pub use shmkit::WaitOutcome;

/// What a wait's owner runs when it ends (see the module's contract).
pub type Done = Box<dyn FnOnce(&Env, shmkit::Result<WaitOutcome>)>;

/// A pending wait, for [`cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WaitId(u64);

/// A 32-bit word to wait on, with what keeps its memory mapped while a wait needs it.
#[derive(Clone)]
pub struct Word {
  /// Keeps the memory mapped.
  _owner: Arc<dyn Send + Sync>,
  ptr: NonNull<AtomicU32>,
}

// SAFETY: `ptr` points into memory that `owner` keeps mapped; the word is only accessed
// atomically, from any thread.
unsafe impl Send for Word {}
// SAFETY: as for Send.
unsafe impl Sync for Word {}

impl Word {
  /// The word at byte `offset` of `region`.
  pub fn in_region(region: Arc<shmkit::Region>, offset: usize) -> shmkit::Result<Self> {
    let ptr = NonNull::from(region.atomic_u32(offset)?);
    Ok(Self { _owner: region, ptr })
  }

  /// The word a semaphore's waiters sleep on; `None` for a macOS named semaphore.
  pub fn of_semaphore(sem: Arc<shmkit::Semaphore>) -> Option<Self> {
    let ptr = NonNull::from(sem.wait_word()?);
    Some(Self { _owner: sem, ptr })
  }

  /// A word of this process's own, which nothing ever wakes: a wait on it is a timer.
  pub fn timer() -> Self {
    let word = Arc::new(AtomicU32::new(0));
    let ptr = NonNull::from(&*word);
    Self { _owner: word, ptr }
  }

  pub fn get(&self) -> &AtomicU32 {
    // SAFETY: `owner` keeps the word mapped for as long as `self` lives.
    unsafe { self.ptr.as_ref() }
  }
}

impl shmkit::futex_pool::WaitWord for Word {
  fn word(&self) -> &AtomicU32 {
    self.get()
  }
}

/// Starts a wait (see the module's contract).
pub fn arm(env: &Env, word: Word, expected: u32, deadline: Option<Instant>, done: Done) -> Result<WaitId> {
  let lp = this_loop(env)?;
  let id = lp.next_id.get() + 1;
  lp.next_id.set(id);
  match &lp.backend {
    Backend::Uring(ring) => ring
      .arm(&word, expected, id, deadline)
      .map_err(|e| crate::error::to_js(env, &e))?,
    Backend::Threads(sink) => shmkit::futex_pool::add(Arc::new(word.clone()), expected, &sink.dest(), id, deadline)
      .map_err(|e| crate::error::to_js(env, &e))?,
  }
  lp.pending.borrow_mut().insert(id, Pending { _word: word, done });
  lp.keep_alive();
  Ok(WaitId(id))
}

/// Cancels a pending wait: its `done` is dropped without being called. Returns whether it
/// was still pending.
pub fn cancel(env: &Env, id: WaitId) -> bool {
  let Some(lp) = find_loop(env.raw()) else { return false };
  let removed = lp.pending.borrow_mut().remove(&id.0);
  let Some(pending) = removed else { return false };
  match &lp.backend {
    Backend::Uring(ring) => ring.cancel(id.0),
    Backend::Threads(sink) => shmkit::futex_pool::remove(&sink.dest(), id.0),
  }
  lp.keep_alive();
  drop(pending);
  true
}

/// Which mechanism this env's async waits use: `'io_uring'` or `'threads'`.
pub fn mechanism(env: &Env) -> Result<&'static str> {
  Ok(match this_loop(env)?.backend {
    Backend::Uring(_) => "io_uring",
    Backend::Threads(_) => "threads",
  })
}

struct Pending {
  /// Keeps the word mapped while the kernel or a waiter thread may look at it.
  _word: Word,
  done: Done,
}

enum Backend {
  Uring(Box<uring::Ring>),
  Threads(Arc<pool::Sink>),
}

/// The async waits of one env (one JS thread).
struct Loop {
  env: sys::napi_env,
  pending: RefCell<HashMap<u64, Pending>>,
  next_id: Cell<u64>,
  alive: Cell<bool>,
  backend: Backend,
  /// For the callback scope the `io_uring` path opens around `done` calls (Node only).
  callback: Option<CallbackResource>,
}

/// An async context and its resource object, as `napi_open_callback_scope` needs.
struct CallbackResource {
  async_context: sys::napi_async_context,
  resource: raw::Strong,
}

impl CallbackResource {
  fn new(env: &Env) -> Result<Self> {
    let resource = Object::new(env)?;
    let name = env.create_string("shmkit.wait")?;
    let mut async_context = ptr::null_mut();
    // SAFETY: valid env and handles of this scope; a valid out-pointer.
    check(unsafe { sys::napi_async_init(env.raw(), resource.raw(), name.raw(), &raw mut async_context) })?;
    let resource = raw::Strong::new(env, resource.raw())?;
    Ok(Self {
      async_context,
      resource,
    })
  }

  fn destroy(&self, env: &Env) {
    // SAFETY: the env is still valid while its cleanup hooks run; destroyed once (the Loop
    // is gone from LOOPS, so nothing opens a scope with it again).
    let _ = unsafe { sys::napi_async_destroy(env.raw(), self.async_context) };
    self.resource.delete(env);
  }
}

thread_local! {
  static LOOPS: RefCell<Vec<Rc<Loop>>> = const { RefCell::new(Vec::new()) };
}

fn find_loop(env: sys::napi_env) -> Option<Rc<Loop>> {
  LOOPS.with_borrow(|loops| loops.iter().find(|l| l.env == env).cloned())
}

fn this_loop(env: &Env) -> Result<Rc<Loop>> {
  if let Some(lp) = find_loop(env.raw()) {
    return Ok(lp);
  }
  let lp = Rc::new(Loop::new(env)?);
  LOOPS.with_borrow_mut(|loops| loops.push(lp.clone()));
  // The io_uring path closes a libuv handle at teardown, which needs an async hook (Node
  // only). The threads need none, and Deno frees an async hook's handle itself (removing it
  // from inside the hook is a double free), so they get a plain cleanup hook.
  let status = if matches!(lp.backend, Backend::Uring(_)) {
    let mut handle = ptr::null_mut();
    // SAFETY: valid env; `teardown` gets the env pointer back as its argument.
    unsafe { sys::napi_add_async_cleanup_hook(env.raw(), Some(teardown), env.raw().cast(), &raw mut handle) }
  } else {
    // SAFETY: valid env; `teardown_threads` gets the env pointer back as its argument.
    unsafe { sys::napi_add_env_cleanup_hook(env.raw(), Some(teardown_threads), env.raw().cast()) }
  };
  check(status)?;
  Ok(lp)
}

impl Loop {
  fn new(env: &Env) -> Result<Self> {
    let (backend, callback) = match uring::Ring::start(env) {
      Some(ring) => (Backend::Uring(ring), Some(CallbackResource::new(env)?)),
      None => (Backend::Threads(pool::Sink::new(env)?), None),
    };
    Ok(Self {
      env: env.raw(),
      pending: RefCell::default(),
      next_id: Cell::new(0),
      alive: Cell::new(false),
      backend,
      callback,
    })
  }

  /// Holds the event loop open exactly while waits are pending.
  fn keep_alive(&self) {
    let want = !self.pending.borrow().is_empty();
    if want == self.alive.get() {
      return;
    }
    self.alive.set(want);
    match &self.backend {
      Backend::Uring(ring) => ring.hold_loop(want),
      Backend::Threads(sink) => sink.hold_loop(self.env, want),
    }
  }

  /// Ends wait `id` with `outcome`, if it is still pending. JS thread, inside a scope.
  fn complete(&self, env: &Env, id: u64, outcome: shmkit::Result<WaitOutcome>) {
    let removed = self.pending.borrow_mut().remove(&id);
    let Some(pending) = removed else { return };
    self.keep_alive();
    (pending.done)(env, outcome);
    report_exception(env);
  }
}

/// A `done` that threw: report it as an uncaught exception, as Node does for callbacks.
fn report_exception(env: &Env) {
  if let Some(error) = raw::take_exception(env) {
    // SAFETY: `error` is a live handle of this env. A failure leaves nothing to report to.
    let _ = unsafe { sys::napi_fatal_exception(env.raw(), error.raw()) };
  }
}

/// The env's loop, taken out of `LOOPS` at its teardown.
fn take_loop(env: sys::napi_env) -> Option<Rc<Loop>> {
  LOOPS.with_borrow_mut(|loops| {
    let at = loops.iter().position(|l| l.env == env)?;
    Some(loops.swap_remove(at))
  })
}

/// Env teardown (a worker ending, or the process exiting): pending waits are dropped
/// (their `Drop` gives back what they took).
fn drop_pending(env: sys::napi_env, lp: &Loop) {
  // Dropping a pending wait may make handles (its promise's settlement), and cleanup hooks
  // may run with no handle scope open.
  let mut scope = ptr::null_mut();
  // SAFETY: the env is still valid while its cleanup hooks run; `scope` is an out-pointer.
  let opened = unsafe { sys::napi_open_handle_scope(env, &raw mut scope) } == sys::Status::napi_ok;
  let pending = std::mem::take(&mut *lp.pending.borrow_mut());
  drop(pending);
  if let Some(callback) = &lp.callback {
    callback.destroy(&Env::from_raw(env));
  }
  if opened {
    // SAFETY: the scope opened above, closed once.
    let _ = unsafe { sys::napi_close_handle_scope(env, scope) };
  }
}

/// Teardown of the `io_uring` path (Node): the ring's poll handle is closed, and its close
/// callback removes this hook.
unsafe extern "C" fn teardown(handle: sys::napi_async_cleanup_hook_handle, arg: *mut c_void) {
  let env: sys::napi_env = arg.cast();
  let Some(lp) = take_loop(env) else {
    // SAFETY: the handle napi gave this hook, removed once.
    let _ = unsafe { sys::napi_remove_async_cleanup_hook(handle) };
    return;
  };
  drop_pending(env, &lp);
  match &lp.backend {
    Backend::Uring(ring) => ring.shut(handle),
    Backend::Threads(_) => {
      // SAFETY: as above (not reached: the threads register `teardown_threads`).
      let _ = unsafe { sys::napi_remove_async_cleanup_hook(handle) };
    }
  }
}

/// Teardown of the waiter threads' path: no more completions for this env.
unsafe extern "C" fn teardown_threads(arg: *mut c_void) {
  let env: sys::napi_env = arg.cast();
  let Some(lp) = take_loop(env) else { return };
  drop_pending(env, &lp);
  if let Backend::Threads(sink) = &lp.backend {
    sink.shut();
  }
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code, reason = "the io_uring path only"))]
/// Runs `f` with a handle scope and a callback scope open, as libuv callbacks must before
/// they touch JS (closing the callback scope runs the microtasks, so promises settle).
fn in_callback_scope(lp: &Loop, f: impl FnOnce(&Env)) {
  let env = lp.env;
  let mut handles = ptr::null_mut();
  // SAFETY: on the env's own thread, from its event loop.
  if unsafe { sys::napi_open_handle_scope(env, &raw mut handles) } != sys::Status::napi_ok {
    return;
  }
  let js_env = Env::from_raw(env);
  let mut scope = ptr::null_mut();
  let opened = match lp.callback.as_ref().map(|c| (c.resource.get(&js_env), c.async_context)) {
    // SAFETY: valid env, resource handle and async context.
    Some((Ok(resource), context)) => unsafe {
      sys::napi_open_callback_scope(env, resource.raw(), context, &raw mut scope)
    },
    _ => sys::Status::napi_generic_failure,
  };
  f(&js_env);
  if opened == sys::Status::napi_ok {
    // SAFETY: the scope opened above, closed once.
    unsafe { sys::napi_close_callback_scope(env, scope) };
  }
  // SAFETY: the scope opened above, closed once.
  unsafe { sys::napi_close_handle_scope(env, handles) };
}

#[cfg_attr(not(target_os = "linux"), allow(dead_code, reason = "the io_uring path only"))]
/// Whether this is Node.js itself: Bun and Deno export some libuv names without a libuv
/// event loop behind them (Bun panics in `uv_poll_init`), so they get the waiter threads.
fn runs_in_node(env: &Env) -> bool {
  let Ok(process) = crate::raw::global(env, "process") else {
    return false;
  };
  let Ok(versions) = process.get_named_property::<Object>("versions") else {
    return false;
  };
  let other = |name: &str| versions.has_named_property(name).unwrap_or(true);
  !other("bun") && !other("deno")
}

/// Whether `SHMKIT_IO_URING=0` turned `io_uring` off.
#[cfg_attr(not(target_os = "linux"), allow(dead_code, reason = "the io_uring path only"))]
fn io_uring_disabled() -> bool {
  std::env::var_os("SHMKIT_IO_URING").is_some_and(|v| v == "0")
}

#[cfg(target_os = "linux")]
mod uring {
  //! The `io_uring` mechanism's place in libuv: a poll handle on this thread's loop watches
  //! the eventfd of the thread's ring (`shmkit::futex_ring`, which does the waiting).
  use std::cell::Cell;
  use std::ffi::{c_int, c_void, CStr};
  use std::os::fd::AsRawFd;
  use std::ptr;
  use std::sync::OnceLock;
  use std::time::Instant;

  use napi::bindgen_prelude::*;
  use napi::sys;
  use shmkit::futex_ring::FutexRing;

  use super::{find_loop, in_callback_scope, Word};

  type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
  type CloseCb = unsafe extern "C" fn(*mut c_void);
  type HandleSize = unsafe extern "C" fn(c_int) -> usize;
  type PollInit = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
  type PollStart = unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int;
  type Close = unsafe extern "C" fn(*mut c_void, CloseCb);
  type Handle = unsafe extern "C" fn(*mut c_void);
  type SetData = unsafe extern "C" fn(*mut c_void, *mut c_void);
  type GetData = unsafe extern "C" fn(*const c_void) -> *mut c_void;

  /// The few libuv calls the ring needs, found in the running process (Node exports them).
  struct Uv {
    handle_size: HandleSize,
    poll_init: PollInit,
    poll_start: PollStart,
    close: Close,
    ref_: Handle,
    unref: Handle,
    set_data: SetData,
    get_data: GetData,
  }

  const UV_POLL: c_int = 8;
  const UV_READABLE: c_int = 1;

  /// A libuv function found by `find`, as the C type `T` it has in uv.h.
  fn function<T>(find: &impl Fn(&CStr) -> Option<*mut c_void>, name: &CStr) -> Option<T> {
    let symbol = find(name)?;
    assert_eq!(size_of::<T>(), size_of::<*mut c_void>(), "a function pointer");
    // SAFETY: every caller names a libuv function whose C signature (uv.h, stable ABI since
    // libuv 1.0) is `T`, a function pointer type of the size of a data pointer.
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&symbol) })
  }

  fn uv() -> Option<&'static Uv> {
    static UV: OnceLock<Option<Uv>> = OnceLock::new();
    UV.get_or_init(|| {
      let find = |name: &CStr| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks it up.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!f.is_null()).then_some(f)
      };
      Some(Uv {
        handle_size: function(&find, c"uv_handle_size")?,
        poll_init: function(&find, c"uv_poll_init")?,
        poll_start: function(&find, c"uv_poll_start")?,
        close: function(&find, c"uv_close")?,
        ref_: function(&find, c"uv_ref")?,
        unref: function(&find, c"uv_unref")?,
        set_data: function(&find, c"uv_handle_set_data")?,
        get_data: function(&find, c"uv_handle_get_data")?,
      })
    })
    .as_ref()
  }

  /// The ring of one JS thread, and the poll handle that watches its eventfd.
  pub(super) struct Ring {
    ring: FutexRing,
    poll: Cell<*mut c_void>,
  }

  impl Ring {
    /// A ring for this JS thread, or `None` when `io_uring` futex waits are not available
    /// (then the waiter threads serve).
    pub(super) fn start(env: &Env) -> Option<Box<Ring>> {
      if super::io_uring_disabled() || !super::runs_in_node(env) {
        return None;
      }
      let uv = uv()?;
      let ring = Box::new(Ring {
        ring: FutexRing::new().ok()?,
        poll: Cell::new(ptr::null_mut()),
      });
      let mut uv_loop = ptr::null_mut();
      // SAFETY: valid env and out-pointer.
      if unsafe { sys::napi_get_uv_event_loop(env.raw(), &raw mut uv_loop) } != sys::Status::napi_ok {
        return None;
      }
      // SAFETY: libuv's size of a poll handle.
      let size = unsafe { (uv.handle_size)(UV_POLL) };
      let layout = std::alloc::Layout::from_size_align(size, 16).ok()?;
      // SAFETY: a non-zero layout; freed in `free_handle` after uv_close.
      let handle = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<c_void>();
      if handle.is_null() {
        return None;
      }
      // SAFETY: a fresh handle on this thread's loop, watching our eventfd.
      if unsafe { (uv.poll_init)(uv_loop.cast(), handle, ring.ring.eventfd().as_raw_fd()) } != 0 {
        // SAFETY: never initialised, so libuv does not know it.
        unsafe { std::alloc::dealloc(handle.cast(), layout) };
        return None;
      }
      // SAFETY: an initialised handle; its data is the env, for the callback to find its loop.
      unsafe { (uv.set_data)(handle, env.raw().cast()) };
      // SAFETY: as above.
      unsafe { (uv.poll_start)(handle, UV_READABLE, on_readable) };
      // SAFETY: as above.
      unsafe { (uv.unref)(handle) };
      ring.poll.set(handle);
      Some(ring)
    }

    pub(super) fn arm(&self, word: &Word, expected: u32, id: u64, deadline: Option<Instant>) -> shmkit::Result<()> {
      self.ring.arm(word.get(), expected, id, deadline)
    }

    pub(super) fn cancel(&self, id: u64) {
      self.ring.cancel(id);
    }

    pub(super) fn hold_loop(&self, hold: bool) {
      let (Some(uv), handle) = (uv(), self.poll.get()) else {
        return;
      };
      if handle.is_null() {
        return;
      }
      if hold {
        // SAFETY: a live poll handle of this thread's loop.
        unsafe { (uv.ref_)(handle) };
      } else {
        // SAFETY: as above.
        unsafe { (uv.unref)(handle) };
      }
    }

    /// Closes the poll handle (libuv stops watching the eventfd at once); the cleanup hook
    /// is released when libuv has let go of the handle. The ring's fds close when the ring
    /// drops, which cancels whatever the kernel still has armed.
    pub(super) fn shut(&self, hook: sys::napi_async_cleanup_hook_handle) {
      let handle = self.poll.replace(ptr::null_mut());
      match uv() {
        Some(uv) if !handle.is_null() => {
          // SAFETY: a live, initialised handle; its data now carries the hook handle for
          // `free_handle`.
          unsafe { (uv.set_data)(handle, hook.cast()) };
          // SAFETY: as above; libuv calls `free_handle` once it has let go of the handle.
          unsafe { (uv.close)(handle, free_handle) };
        }
        _ => {
          // SAFETY: the hook's own handle, removed once.
          unsafe { sys::napi_remove_async_cleanup_hook(hook) };
        }
      }
    }
  }

  unsafe extern "C" fn free_handle(handle: *mut c_void) {
    if let Some(uv) = uv() {
      // SAFETY: the data `shut` stored: the cleanup hook to release now.
      let hook = unsafe { (uv.get_data)(handle) };
      // SAFETY: the hook's own handle, removed once.
      unsafe { sys::napi_remove_async_cleanup_hook(hook.cast()) };
      // SAFETY: libuv has let go of the handle; it was allocated with this size in `start`.
      let size = unsafe { (uv.handle_size)(UV_POLL) };
      if let Ok(layout) = std::alloc::Layout::from_size_align(size, 16) {
        // SAFETY: allocated in `start` with this layout, freed once.
        unsafe { std::alloc::dealloc(handle.cast(), layout) };
      }
    }
  }

  /// The eventfd is readable: completions are ready. Runs on the JS thread, from libuv.
  unsafe extern "C" fn on_readable(handle: *mut c_void, _status: c_int, _events: c_int) {
    let Some(uv) = uv() else { return };
    // SAFETY: a live handle whose data is the env it serves.
    let env: sys::napi_env = unsafe { (uv.get_data)(handle) }.cast();
    let Some(lp) = find_loop(env) else { return };
    let super::Backend::Uring(ring) = &lp.backend else {
      return;
    };
    let done = ring.ring.reap();
    if done.is_empty() {
      return;
    }
    in_callback_scope(&lp, |env| {
      for (id, outcome) in done {
        lp.complete(env, id, outcome);
      }
    });
  }
}

#[cfg(not(target_os = "linux"))]
mod uring {
  //! No `io_uring` outside Linux: the waiter threads serve.
  use napi::bindgen_prelude::*;
  use napi::sys;

  use super::Word;

  pub(super) enum Ring {}

  impl Ring {
    pub(super) fn start(_env: &Env) -> Option<Box<Ring>> {
      None
    }

    pub(super) fn arm(
      &self,
      _word: &Word,
      _expected: u32,
      _id: u64,
      _deadline: Option<std::time::Instant>,
    ) -> shmkit::Result<()> {
      match *self {}
    }

    pub(super) fn cancel(&self, _id: u64) {
      match *self {}
    }

    pub(super) fn hold_loop(&self, _hold: bool) {
      match *self {}
    }

    pub(super) fn shut(&self, _hook: sys::napi_async_cleanup_hook_handle) {
      match *self {}
    }
  }
}

mod pool {
  //! The waiter threads' place in the binding: completions reach each env through one
  //! threadsafe function (the threads themselves are `shmkit::futex_pool`).
  use std::ffi::c_void;
  use std::ptr;
  use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

  use napi::bindgen_prelude::*;
  use napi::sys;
  use shmkit::futex_pool::{self, Deliver};

  use super::{find_loop, WaitOutcome};

  /// Where one env's completions go: its threadsafe function, `None` once the env is gone.
  pub(super) struct Sink {
    tsfn: Mutex<Option<Tsfn>>,
  }

  struct Tsfn(sys::napi_threadsafe_function);
  // SAFETY: threadsafe functions are made to be called from any thread; releasing it
  // happens under the Sink's lock, so no call races the release.
  unsafe impl Send for Tsfn {}

  type Batch = Vec<(u64, WaitOutcome)>;

  fn lock(m: &Mutex<Option<Tsfn>>) -> MutexGuard<'_, Option<Tsfn>> {
    // Every change under this lock is a single `take`: a poisoned lock is still consistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
  }

  impl Sink {
    pub(super) fn new(env: &Env) -> Result<Arc<Self>> {
      let name = env.create_string("shmkit.wait")?;
      let mut tsfn = ptr::null_mut();
      // SAFETY: valid env and handles; no JS function (call_js does the work); one
      // "thread" (this Sink) holds it until `shut` releases it.
      let status = unsafe {
        sys::napi_create_threadsafe_function(
          env.raw(),
          ptr::null_mut(),
          ptr::null_mut(),
          name.raw(),
          0,
          1,
          ptr::null_mut(),
          None,
          ptr::null_mut(),
          Some(call_js),
          &raw mut tsfn,
        )
      };
      super::check(status)?;
      // SAFETY: a live threadsafe function of this env; unreferenced until waits pend.
      unsafe { sys::napi_unref_threadsafe_function(env.raw(), tsfn) };
      Ok(Arc::new(Self {
        tsfn: Mutex::new(Some(Tsfn(tsfn))),
      }))
    }

    /// This env as a destination of the waiter threads.
    pub(super) fn dest(self: &Arc<Self>) -> Arc<dyn Deliver> {
      self.clone()
    }

    pub(super) fn hold_loop(&self, env: sys::napi_env, hold: bool) {
      let tsfn = lock(&self.tsfn);
      if let Some(Tsfn(f)) = &*tsfn {
        if hold {
          // SAFETY: a live threadsafe function of this env, on its JS thread.
          unsafe { sys::napi_ref_threadsafe_function(env, *f) };
        } else {
          // SAFETY: as above.
          unsafe { sys::napi_unref_threadsafe_function(env, *f) };
        }
      }
    }

    /// The env is going: no more completions, and the threads forget its waits.
    pub(super) fn shut(self: &Arc<Self>) {
      if let Some(Tsfn(f)) = lock(&self.tsfn).take() {
        // SAFETY: released once; queued batches reach call_js with a null env and are freed.
        unsafe { sys::napi_release_threadsafe_function(f, 1) };
      }
      futex_pool::forget(&self.dest());
    }
  }

  impl Deliver for Sink {
    fn deliver(&self, batch: Batch) {
      let tsfn = lock(&self.tsfn);
      let Some(Tsfn(f)) = &*tsfn else { return };
      let data = Box::into_raw(Box::new(batch));
      // SAFETY: a live threadsafe function (released only under this lock); call_js takes
      // the box back.
      let status = unsafe { sys::napi_call_threadsafe_function(*f, data.cast(), 0) };
      if status != sys::Status::napi_ok {
        // SAFETY: not queued, so still ours.
        drop(unsafe { Box::from_raw(data) });
      }
    }
  }

  unsafe extern "C" fn call_js(env: sys::napi_env, _js: sys::napi_value, _ctx: *mut c_void, data: *mut c_void) {
    // SAFETY: every item is a Box<Batch> made in `deliver`.
    let batch = unsafe { Box::from_raw(data.cast::<Batch>()) };
    if env.is_null() {
      return;
    }
    let Some(lp) = find_loop(env) else { return };
    let env = Env::from_raw(env);
    for (id, outcome) in *batch {
      lp.complete(&env, id, Ok(outcome));
    }
  }
}
