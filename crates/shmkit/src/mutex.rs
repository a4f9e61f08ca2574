//! A robust, process-shared mutex placed inside a [`Region`]: `pthread_mutex_t` with
//! `PTHREAD_PROCESS_SHARED` and `PTHREAD_MUTEX_ROBUST`. See `pthread_mutexattr_setrobust(3)`.
//!
//! When a process dies holding the lock, the kernel marks it; the next locker is told
//! ([`Lock::OwnerDied`]), holds the lock, and decides whether the protected data is usable:
//! [`RobustMutex::make_consistent`] then [`RobustMutex::unlock`] repairs it, while unlocking
//! without repairing leaves it permanently unusable (`ENOTRECOVERABLE`), so nobody silently
//! trusts half-written data. It is also error-checking: locking it twice from one thread is
//! `EDEADLK` instead of a hang, and unlocking someone else's lock is `EPERM`.
//!
//! glibc keeps every robust mutex a thread holds on a list threaded through the mutexes
//! themselves, so a held mutex whose bytes get overwritten, or unmapped, would make the next
//! unlock write through a wild pointer. shmkit therefore remembers which mutexes each thread
//! holds (keeping their regions mapped), rewrites their list links before every unlock, and
//! unlocks a held mutex when its handle is dropped.
//!
//! Supported with glibc on 64-bit Linux. macOS has no robust mutexes, and musl lays the list
//! out differently; there every constructor is [`crate::ErrorKind::Unsupported`].

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::region::Region;

/// How a lock was acquired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
  /// Normally: the previous owner unlocked it.
  Acquired,
  /// The previous owner died holding it. You hold it now; check the data, then call
  /// [`RobustMutex::make_consistent`] before unlocking, or it becomes unusable.
  OwnerDied,
}

/// A robust process-shared mutex at an offset inside a region (see the module docs).
#[derive(Debug)]
pub struct RobustMutex {
  region: Arc<Region>,
  offset: usize,
}

/// Bytes a mutex occupies in a region on this platform (`size_of::<pthread_mutex_t>()`).
#[must_use]
pub fn mutex_size() -> usize {
  std::mem::size_of::<libc::pthread_mutex_t>()
}

/// Required alignment of a mutex's offset (and of the region, which is page-aligned).
#[must_use]
pub fn mutex_align() -> usize {
  std::mem::align_of::<libc::pthread_mutex_t>().max(8)
}

impl RobustMutex {
  /// Initialises a new unlocked mutex at `offset` of `region`. Do this once, in one process,
  /// before anyone else uses the bytes; others attach with [`RobustMutex::at`].
  ///
  /// # Errors
  /// [`ErrorKind::InvalidSize`] if the mutex does not fit or `offset` is misaligned;
  /// `pthread_mutex_init` failures; [`ErrorKind::Unsupported`] on macOS.
  pub fn init_in(region: Arc<Region>, offset: usize) -> Result<Self> {
    let mutex = Self::at(region, offset)?;
    imp::init(mutex.ptr())?;
    Ok(mutex)
  }

  /// Attaches to a mutex that some process already initialised at `offset` of `region`.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidSize`] if the mutex does not fit or `offset` is misaligned;
  /// `EACCES` for a read-only region; [`ErrorKind::Unsupported`] on macOS.
  pub fn at(region: Arc<Region>, offset: usize) -> Result<Self> {
    imp::supported()?;
    check_placement(&region, offset)?;
    Ok(Self { region, offset })
  }

  /// The region the mutex lives in.
  #[must_use]
  pub fn region(&self) -> &Arc<Region> {
    &self.region
  }

  /// Its offset inside the region.
  #[must_use]
  pub fn offset(&self) -> usize {
    self.offset
  }

  fn ptr(&self) -> *mut libc::pthread_mutex_t {
    // SAFETY: `check_placement` proved `offset + mutex_size() <= len`.
    unsafe { self.region.as_ptr().add(self.offset) }.cast()
  }

  /// Blocks until the lock is held by this thread.
  ///
  /// # Errors
  /// `EDEADLK` if this thread already holds it; `ENOTRECOVERABLE` if a previous owner died and
  /// the next one unlocked without [`RobustMutex::make_consistent`].
  pub fn lock(&self) -> Result<Lock> {
    self.guarded(|| imp::lock(self.ptr(), None))
  }

  /// Like [`RobustMutex::lock`], giving up after `timeout` with [`ErrorKind::TimedOut`].
  ///
  /// # Errors
  /// As [`RobustMutex::lock`], and [`ErrorKind::TimedOut`].
  pub fn lock_timeout(&self, timeout: Duration) -> Result<Lock> {
    self.guarded(|| imp::lock(self.ptr(), Some(timeout)))
  }

  /// Takes the lock if it is free; `None` if another thread or process holds it.
  ///
  /// # Errors
  /// As [`RobustMutex::lock`].
  pub fn try_lock(&self) -> Result<Option<Lock>> {
    let mut busy = false;
    let lock = self.guarded(|| match imp::try_lock(self.ptr())? {
      Some(lock) => Ok(lock),
      None => {
        busy = true;
        Err(Error::os(nix::errno::Errno::EBUSY, "pthread_mutex_trylock"))
      }
    });
    if busy {
      return Ok(None);
    }
    lock.map(Some)
  }

  /// Runs a pthread lock call with glibc's robust list in order around it, and records the
  /// mutex as held when it succeeds.
  fn guarded(&self, call: impl FnOnce() -> Result<Lock>) -> Result<Lock> {
    let address = self.ptr() as usize;
    if imp::held::overlaps(address, mutex_size()) {
      return Err(Error::os(nix::errno::Errno::EDEADLK, "pthread_mutex_lock"));
    }
    imp::held::prepare(None);
    let lock = call();
    imp::held::settle();
    if lock.is_ok() {
      imp::held::acquired(address, &self.region);
    }
    lock
  }

  /// Whether this thread holds the lock (through this or another handle).
  #[must_use]
  pub fn is_held(&self) -> bool {
    imp::held::holds(self.ptr() as usize)
  }

  /// Releases the lock.
  ///
  /// # Errors
  /// `EPERM` if this thread does not hold it.
  pub fn unlock(&self) -> Result<()> {
    let address = self.ptr() as usize;
    // Only a mutex this thread locked through shmkit is on glibc's list; anything else (an
    // overlapping mutex whose lock word happens to carry our thread id, say) must not reach
    // pthread_mutex_unlock, which would unlink it from a list it is not on.
    if !imp::held::holds(address) {
      return Err(Error::os(nix::errno::Errno::EPERM, "pthread_mutex_unlock"));
    }
    imp::held::prepare(Some(address));
    let unlocked = imp::unlock(self.ptr());
    imp::held::settle();
    unlocked?;
    imp::held::released(address);
    Ok(())
  }

  /// After [`Lock::OwnerDied`]: declares the protected data consistent again, so that unlocking
  /// returns the mutex to normal use.
  ///
  /// # Errors
  /// `EINVAL` if the mutex is not in the owner-died state or not held by this thread.
  pub fn make_consistent(&self) -> Result<()> {
    imp::consistent(self.ptr())
  }

  /// Destroys the mutex (`pthread_mutex_destroy`). Only when no process uses it any more.
  ///
  /// # Errors
  /// `EBUSY` if it is locked.
  pub fn destroy(self) -> Result<()> {
    imp::destroy(self.ptr())
  }
}

impl Drop for RobustMutex {
  /// A lock this thread still holds is released, so no thread keeps a list link into a
  /// mutex nobody can reach any more. Failures are ignored (Drop cannot report).
  fn drop(&mut self) {
    if self.is_held() {
      let _ = self.unlock();
    }
  }
}

fn check_placement(region: &Region, offset: usize) -> Result<()> {
  let fits = offset.checked_add(mutex_size()).is_some_and(|end| end <= region.len());
  if !fits {
    return Err(Error::new(
      ErrorKind::InvalidSize,
      format!(
        "a mutex needs {} bytes at offset {offset}, and the region has {}",
        mutex_size(),
        region.len()
      ),
    ));
  }
  if !offset.is_multiple_of(mutex_align()) {
    return Err(Error::new(
      ErrorKind::InvalidSize,
      format!("a mutex offset must be a multiple of {}", mutex_align()),
    ));
  }
  if !region.is_writable() {
    return Err(Error::os(nix::errno::Errno::EACCES, "pthread_mutex_lock"));
  }
  if region.is_private() {
    return Err(Error::new(
      ErrorKind::InvalidArgument,
      "a process-shared mutex needs a shared mapping; in a private one no other process would see it",
    ));
  }
  Ok(())
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
mod imp {
  use std::mem::MaybeUninit;
  use std::time::Duration;

  use nix::errno::Errno;

  use super::Lock;
  use crate::error::{Error, Result};

  #[expect(clippy::unnecessary_wraps, reason = "same signature as the macOS stub")]
  pub(super) fn supported() -> Result<()> {
    Ok(())
  }

  /// pthread calls return the error number instead of setting errno.
  fn check(ret: libc::c_int, syscall: &'static str) -> Result<()> {
    if ret == 0 {
      Ok(())
    } else {
      Err(Error::os(Errno::from_raw(ret), syscall))
    }
  }

  pub(super) fn init(mutex: *mut libc::pthread_mutex_t) -> Result<()> {
    let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    let attr_ptr = attr.as_mut_ptr();
    // SAFETY: `attr_ptr` is valid storage for an attribute object.
    let ret = unsafe { libc::pthread_mutexattr_init(attr_ptr) };
    check(ret, "pthread_mutexattr_init")?;
    let configured = (|| {
      // SAFETY: `attr_ptr` points to the initialised attribute object.
      let ret = unsafe { libc::pthread_mutexattr_setpshared(attr_ptr, libc::PTHREAD_PROCESS_SHARED) };
      check(ret, "pthread_mutexattr_setpshared")?;
      // SAFETY: as above.
      let ret = unsafe { libc::pthread_mutexattr_setrobust(attr_ptr, libc::PTHREAD_MUTEX_ROBUST) };
      check(ret, "pthread_mutexattr_setrobust")?;
      // SAFETY: as above.
      let ret = unsafe { libc::pthread_mutexattr_settype(attr_ptr, libc::PTHREAD_MUTEX_ERRORCHECK) };
      check(ret, "pthread_mutexattr_settype")?;
      // SAFETY: `mutex` points into a live, writable mapping with room and alignment for a
      // mutex (checked by the caller); `attr_ptr` is initialised.
      let ret = unsafe { libc::pthread_mutex_init(mutex, attr_ptr) };
      check(ret, "pthread_mutex_init")
    })();
    // SAFETY: `attr_ptr` is initialised and no longer needed.
    unsafe { libc::pthread_mutexattr_destroy(attr_ptr) };
    configured
  }

  fn outcome(ret: libc::c_int, syscall: &'static str) -> Result<Lock> {
    match ret {
      0 => Ok(Lock::Acquired),
      libc::EOWNERDEAD => Ok(Lock::OwnerDied),
      libc::ETIMEDOUT => Err(Error::timed_out(syscall)),
      e => Err(Error::os(Errno::from_raw(e), syscall)),
    }
  }

  pub(super) fn lock(mutex: *mut libc::pthread_mutex_t, timeout: Option<Duration>) -> Result<Lock> {
    // A deadline past what a timespec holds is no deadline.
    match timeout.and_then(crate::clock::realtime_after) {
      None => {
        // SAFETY: `mutex` points to a mutex inside a live mapping (checked by the caller).
        let ret = unsafe { libc::pthread_mutex_lock(mutex) };
        outcome(ret, "pthread_mutex_lock")
      }
      Some(deadline) => {
        // SAFETY: as above; `deadline` is a valid timespec.
        let ret = unsafe { libc::pthread_mutex_timedlock(mutex, &raw const deadline) };
        outcome(ret, "pthread_mutex_timedlock")
      }
    }
  }

  pub(super) fn try_lock(mutex: *mut libc::pthread_mutex_t) -> Result<Option<Lock>> {
    // SAFETY: `mutex` points to a mutex inside a live mapping (checked by the caller).
    match unsafe { libc::pthread_mutex_trylock(mutex) } {
      libc::EBUSY => Ok(None),
      ret => outcome(ret, "pthread_mutex_trylock").map(Some),
    }
  }

  pub(super) fn unlock(mutex: *mut libc::pthread_mutex_t) -> Result<()> {
    // SAFETY: `mutex` points to a mutex inside a live mapping (checked by the caller).
    let ret = unsafe { libc::pthread_mutex_unlock(mutex) };
    check(ret, "pthread_mutex_unlock")
  }

  pub(super) fn consistent(mutex: *mut libc::pthread_mutex_t) -> Result<()> {
    // SAFETY: `mutex` points to a mutex inside a live mapping (checked by the caller).
    let ret = unsafe { libc::pthread_mutex_consistent(mutex) };
    check(ret, "pthread_mutex_consistent")
  }

  /// The robust mutexes this thread holds, and the repair of glibc's list through them.
  pub(super) mod held {
    use std::cell::RefCell;
    use std::sync::Arc;

    use crate::region::Region;

    // glibc's 64-bit `pthread_mutex_t`: `__lock` (the owner's thread id, plus a waiters bit) at
    // byte 0, `__kind` at 16, `__list { __prev, __next }` at 24..40. List entries point at the
    // `__next` field, and the list starts and ends at the thread's `robust_head` (whose address
    // the kernel reports through get_robust_list(2)).
    const LOCK: usize = 0;
    const KIND: usize = 16;
    const PREV: usize = 24;
    const NEXT: usize = 32;
    const FUTEX_WAITERS: u32 = 0x8000_0000;
    const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

    /// A held mutex: its address, its `__kind` when we took it, and its region (kept mapped).
    struct Entry {
      address: usize,
      kind: i32,
      _region: Arc<Region>,
    }

    struct Held {
      pid: u32,
      /// Oldest first.
      mutexes: Vec<Entry>,
      /// The head of glibc's list as our last pthread call left it. A different value later
      /// means code other than shmkit locked or unlocked a robust mutex on this thread.
      last_head: Option<usize>,
      /// Where this thread's list head lives (fixed for the thread's life; asked once).
      head: Option<usize>,
    }

    thread_local! {
      static HELD: RefCell<Held> =
        const { RefCell::new(Held { pid: 0, mutexes: Vec::new(), last_head: None, head: None }) };
    }

    /// This thread's state, forgetting any inherited through `fork` (the child holds nothing).
    fn with_state<T>(f: impl FnOnce(&mut Held) -> T) -> T {
      HELD.with(|held| {
        let mut held = held.borrow_mut();
        let pid = std::process::id();
        if held.pid != pid {
          held.pid = pid;
          held.mutexes.clear();
          held.last_head = None;
          held.head = None;
        }
        f(&mut held)
      })
    }

    fn with<T>(f: impl FnOnce(&mut Vec<Entry>) -> T) -> T {
      with_state(|held| f(&mut held.mutexes))
    }

    /// Whether this thread holds a mutex whose bytes overlap the one at `address` without
    /// being it (two placements that share bytes would corrupt each other's links).
    pub(in super::super) fn overlaps(address: usize, size: usize) -> bool {
      with(|held| {
        held
          .iter()
          .any(|e| e.address != address && e.address < address + size && address < e.address + size)
      })
    }

    pub(in super::super) fn acquired(address: usize, region: &Arc<Region>) {
      // SAFETY: `address` is a mutex inside `region`'s live mapping; we just locked it, so its
      // `__kind` is the real one.
      let kind = unsafe { ((address + KIND) as *const i32).read_volatile() };
      with(|held| {
        if !held.iter().any(|e| e.address == address) {
          held.push(Entry {
            address,
            kind,
            _region: region.clone(),
          });
        }
      });
    }

    pub(in super::super) fn released(address: usize) {
      with(|held| held.retain(|e| e.address != address));
    }

    pub(in super::super) fn holds(address: usize) -> bool {
      with(|held| held.iter().any(|e| e.address == address))
    }

    fn thread_id() -> u32 {
      // The raw syscall: gettid(3) is newer than the oldest glibc we build against.
      // SAFETY: gettid takes no arguments and cannot fail.
      let tid = unsafe { libc::syscall(libc::SYS_gettid) };
      u32::try_from(tid).unwrap_or(0)
    }

    /// The address of this thread's robust-list head, from `get_robust_list(2)` the first time.
    fn robust_head() -> Option<usize> {
      if let Some(head) = with_state(|state| state.head) {
        return Some(head);
      }
      let mut head: *mut libc::c_void = std::ptr::null_mut();
      let mut len: libc::size_t = 0;
      // SAFETY: pid 0 means this thread; both out-pointers are valid.
      let ret = unsafe { libc::syscall(libc::SYS_get_robust_list, 0, &raw mut head, &raw mut len) };
      let head = (ret == 0 && !head.is_null()).then_some(head as usize)?;
      with_state(|state| state.head = Some(head));
      Some(head)
    }

    /// Before any pthread call on a robust mutex: makes glibc's list of the mutexes this thread
    /// holds exactly our record of them (links written through a mutex's own bytes may have
    /// been overwritten, and a mutex released since may still be linked), and, when
    /// `unlocking` names a held mutex, restores its lock word and kind (we hold it, so they
    /// must name this thread and the kind it had). Touches nothing if code other than shmkit
    /// changed the list since our last call: then its entries are not ours to rewrite.
    pub(in super::super) fn prepare(unlocking: Option<usize>) {
      let Some(head) = robust_head() else { return };
      with_state(|state| {
        // SAFETY: `head` is this thread's live robust_list_head; its first word is the list.
        let current = unsafe { (head as *const usize).read_volatile() };
        let changed_by_others = match state.last_head {
          Some(last) => last != current,
          // Our first call on this thread: the list must be empty, or it is someone else's.
          None => current & !1 != head,
        };
        if changed_by_others {
          return;
        }
        if let Some(entry) = state.mutexes.iter().find(|e| Some(e.address) == unlocking) {
          let lock = (entry.address + LOCK) as *mut u32;
          let kind = (entry.address + KIND) as *mut i32;
          let tid = thread_id();
          // SAFETY: the entry's region is kept mapped and writable while the mutex is held; the
          // words are inside the mutex, and we own the lock, so nobody else may change them.
          unsafe {
            if lock.read_volatile() & FUTEX_TID_MASK != tid {
              lock.write_volatile(tid | FUTEX_WAITERS); // a spare wake-up at most
            }
          }
          // SAFETY: as above.
          unsafe {
            if kind.read_volatile() != entry.kind {
              kind.write_volatile(entry.kind);
            }
          }
        }
        // Newest first, as glibc links them: head -> newest -> ... -> oldest -> head.
        let order: Vec<usize> = state.mutexes.iter().rev().map(|e| e.address).collect();
        for (i, &mutex) in order.iter().enumerate() {
          let prev = if i == 0 { head } else { order[i - 1] + NEXT };
          let next = order.get(i + 1).map_or(head, |m| m + NEXT);
          // SAFETY: `mutex` is a held mutex whose region the entry keeps mapped and writable;
          // bytes 24..40 are its list links.
          unsafe {
            ((mutex + PREV) as *mut usize).write_volatile(prev);
          }
          // SAFETY: as above.
          unsafe {
            ((mutex + NEXT) as *mut usize).write_volatile(next);
          }
        }
        let first = order.first().map_or(head, |m| m + NEXT);
        // SAFETY: as for the read above; the kernel and glibc read this word as the list.
        unsafe { (head as *mut usize).write_volatile(first) };
        state.last_head = Some(first);
      });
    }

    /// After a pthread call on a robust mutex: remembers the list head it left.
    pub(in super::super) fn settle() {
      let Some(head) = robust_head() else { return };
      // SAFETY: `head` is this thread's live robust_list_head.
      let current = unsafe { (head as *const usize).read_volatile() };
      with_state(|state| state.last_head = Some(current));
    }
  }

  pub(super) fn destroy(mutex: *mut libc::pthread_mutex_t) -> Result<()> {
    // SAFETY: `mutex` points to a mutex inside a live mapping (checked by the caller).
    let ret = unsafe { libc::pthread_mutex_destroy(mutex) };
    check(ret, "pthread_mutex_destroy")
  }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
mod imp {
  use std::time::Duration;

  use super::Lock;
  use crate::error::{Error, ErrorKind, Result};

  fn unsupported<T>() -> Result<T> {
    Err(Error::new(
      ErrorKind::Unsupported,
      "robust process-shared mutexes need glibc on 64-bit Linux",
    ))
  }
  pub(super) fn supported() -> Result<()> {
    unsupported()
  }
  pub(super) fn init(_: *mut libc::pthread_mutex_t) -> Result<()> {
    unsupported()
  }
  pub(super) fn lock(_: *mut libc::pthread_mutex_t, _: Option<Duration>) -> Result<Lock> {
    unsupported()
  }
  pub(super) fn try_lock(_: *mut libc::pthread_mutex_t) -> Result<Option<Lock>> {
    unsupported()
  }
  pub(super) fn unlock(_: *mut libc::pthread_mutex_t) -> Result<()> {
    unsupported()
  }
  pub(super) fn consistent(_: *mut libc::pthread_mutex_t) -> Result<()> {
    unsupported()
  }
  pub(super) fn destroy(_: *mut libc::pthread_mutex_t) -> Result<()> {
    unsupported()
  }

  pub(super) mod held {
    use std::sync::Arc;

    use crate::region::Region;

    pub(in super::super) fn acquired(_: usize, _: &Arc<Region>) {}
    pub(in super::super) fn released(_: usize) {}
    pub(in super::super) fn holds(_: usize) -> bool {
      false
    }
    pub(in super::super) fn prepare(_: Option<usize>) {}
    pub(in super::super) fn settle() {}
    pub(in super::super) fn overlaps(_: usize, _: usize) -> bool {
      false
    }
  }
}
