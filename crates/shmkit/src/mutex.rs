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
//! macOS has no robust mutexes; there every constructor is [`crate::ErrorKind::Unsupported`].

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
    imp::lock(self.ptr(), None)
  }

  /// Like [`RobustMutex::lock`], giving up after `timeout` with [`ErrorKind::TimedOut`].
  ///
  /// # Errors
  /// As [`RobustMutex::lock`], and [`ErrorKind::TimedOut`].
  pub fn lock_timeout(&self, timeout: Duration) -> Result<Lock> {
    imp::lock(self.ptr(), Some(timeout))
  }

  /// Takes the lock if it is free; `None` if another thread or process holds it.
  ///
  /// # Errors
  /// As [`RobustMutex::lock`].
  pub fn try_lock(&self) -> Result<Option<Lock>> {
    imp::try_lock(self.ptr())
  }

  /// Releases the lock.
  ///
  /// # Errors
  /// `EPERM` if this thread does not hold it.
  pub fn unlock(&self) -> Result<()> {
    imp::unlock(self.ptr())
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
  Ok(())
}

#[cfg(target_os = "linux")]
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
    match timeout {
      // SAFETY: `mutex` points to a mutex inside a live mapping (checked by the caller).
      None => outcome(unsafe { libc::pthread_mutex_lock(mutex) }, "pthread_mutex_lock"),
      Some(timeout) => {
        let deadline = crate::clock::realtime_deadline(timeout)?;
        // SAFETY: as above; `deadline` is a valid timespec.
        outcome(
          unsafe { libc::pthread_mutex_timedlock(mutex, &raw const deadline) },
          "pthread_mutex_timedlock",
        )
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
    check(
      unsafe { libc::pthread_mutex_consistent(mutex) },
      "pthread_mutex_consistent",
    )
  }

  pub(super) fn destroy(mutex: *mut libc::pthread_mutex_t) -> Result<()> {
    // SAFETY: `mutex` points to a mutex inside a live mapping (checked by the caller).
    let ret = unsafe { libc::pthread_mutex_destroy(mutex) };
    check(ret, "pthread_mutex_destroy")
  }
}

#[cfg(not(target_os = "linux"))]
mod imp {
  use std::time::Duration;

  use super::Lock;
  use crate::error::{Error, ErrorKind, Result};

  fn unsupported<T>() -> Result<T> {
    Err(Error::new(
      ErrorKind::Unsupported,
      "robust process-shared mutexes are not available on this platform",
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
}
