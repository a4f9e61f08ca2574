//! Wait and wake on a 32-bit word in shared memory, across processes: the primitive every
//! shmkit synchronisation object stands on.
//!
//! Linux: `futex(FUTEX_WAIT_BITSET | FUTEX_WAKE)` **without** `FUTEX_PRIVATE_FLAG`, so the
//! kernel keys the wait by the page's backing object and offset, and a wake from a process
//! that maps the same object at another address finds it. The deadline is absolute on
//! `CLOCK_MONOTONIC`, so retries after `EINTR` never stretch a timeout and wall-clock jumps
//! never shorten or lengthen one. macOS: `os_sync_wait_on_address` with its shared flag
//! (macOS 14.4+), else the older `__ulock_wait` with `UL_COMPARE_AND_WAIT_SHARED`.
//!
//! Every bit pattern of the word is valid input: a wait returns [`WaitOutcome::NotEqual`] at
//! once when the word is not `expected`, and spurious wake-ups are reported as
//! [`WaitOutcome::Woken`], as with `Atomics.wait`; callers re-check their condition.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How a [`wait`] ended; the same three answers as `Atomics.wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
  /// A wake arrived (or a spurious wake-up: re-check the word). `'ok'` in JavaScript.
  Woken,
  /// The word did not hold the expected value when the wait began. `'not-equal'`.
  NotEqual,
  /// The deadline passed first. `'timed-out'`.
  TimedOut,
}

impl WaitOutcome {
  /// The `Atomics.wait` spelling: `"ok"`, `"not-equal"` or `"timed-out"`.
  #[must_use]
  pub fn as_str(self) -> &'static str {
    match self {
      WaitOutcome::Woken => "ok",
      WaitOutcome::NotEqual => "not-equal",
      WaitOutcome::TimedOut => "timed-out",
    }
  }
}

/// Blocks while `word` holds `expected`, until a [`wake`] on the same word (from any
/// process that maps it shared), or until `timeout` has passed (`None`: no limit).
///
/// A signal that interrupts the wait is retried against the same monotonic deadline.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Result<WaitOutcome> {
  let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
  wait_until(word, expected, deadline)
}

/// [`wait`] with an absolute deadline (`None`: no limit).
pub fn wait_until(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Result<WaitOutcome> {
  loop {
    if let Some(at) = deadline {
      if Instant::now() >= at {
        return Ok(WaitOutcome::TimedOut);
      }
    }
    return match sys::wait(word, expected, deadline) {
      Err(nix::errno::Errno::EINTR) => continue,
      Err(nix::errno::Errno::EAGAIN) => Ok(WaitOutcome::NotEqual),
      Err(nix::errno::Errno::ETIMEDOUT) => Ok(WaitOutcome::TimedOut),
      Err(errno) => Err(Error::os(errno, sys::WAIT_SYSCALL)),
      Ok(()) => Ok(WaitOutcome::Woken),
    };
  }
}

/// Wakes up to `count` waiters blocked on `word` (in any process); returns how many were
/// woken where the platform says (Linux), else `count` capped at 1 or "all".
pub fn wake(word: &AtomicU32, count: u32) -> Result<u32> {
  sys::wake(word, count).map_err(|errno| Error::os(errno, sys::WAKE_SYSCALL))
}

/// Wakes every waiter blocked on `word`.
pub fn wake_all(word: &AtomicU32) -> Result<u32> {
  wake(word, u32::MAX)
}

/// The most words one [`wait_any`] watches (the limit of `futex_waitv`).
pub const WAIT_ANY_MAX: usize = 128;

/// Blocks while every word of `words` holds its expected value, until a [`wake`] on any of
/// them (from any process that maps it shared) or `deadline` (`None`: no limit).
/// `Ok(Some(i))`: word `i` was woken. `Ok(None)`: the wait ended without a wake (a word no
/// longer held its value, the deadline passed, or a signal came): look at the words and the
/// clock again.
///
/// Linux ≥ 5.16 only (`futex_waitv`).
///
/// # Errors
/// `ENOSYS` (older kernels, other systems) or `EPERM` (a seccomp filter) where there is no
/// `futex_waitv`; `EINVAL` for more than [`WAIT_ANY_MAX`] words.
pub fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> Result<Option<usize>> {
  match sys::wait_any(words, deadline) {
    Ok(index) => Ok(Some(index)),
    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::ETIMEDOUT | nix::errno::Errno::EINTR) => Ok(None),
    Err(errno) => Err(Error::os(errno, "futex_waitv")),
  }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) mod sys {
  use std::sync::atomic::AtomicU32;
  use std::time::Instant;

  use nix::errno::Errno;

  pub(super) const WAIT_SYSCALL: &str = "futex";
  pub(super) const WAKE_SYSCALL: &str = "futex";
  /// futex2 flags for every wait here: a 32-bit word, shared (no `FUTEX2_PRIVATE`, which
  /// would never see another process's wake). Also the `io_uring` waits of `futex_ring`.
  pub(crate) const FUTEX2_SIZE_U32: u32 = 0x02;

  /// `FUTEX_WAIT_BITSET` takes an absolute `CLOCK_MONOTONIC` deadline; the private flag is
  /// deliberately absent (a private wait never sees another process's wake).
  pub(super) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Result<(), Errno> {
    let ts = deadline.map(monotonic_timespec);
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `word` is a live, aligned u32 for the duration of the call; the kernel only
    // reads it. `ts_ptr` is null or points at a timespec on this stack frame.
    let rc = unsafe {
      libc::syscall(
        libc::SYS_futex,
        word.as_ptr(),
        libc::FUTEX_WAIT_BITSET,
        expected,
        ts_ptr,
        std::ptr::null::<u32>(),
        libc::FUTEX_BITSET_MATCH_ANY,
      )
    };
    if rc == -1 {
      Err(Errno::last())
    } else {
      Ok(())
    }
  }

  pub(super) fn wake(word: &AtomicU32, count: u32) -> Result<u32, Errno> {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    // SAFETY: FUTEX_WAKE only uses the address as a key; it neither reads nor writes it.
    let rc = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) };
    if rc == -1 {
      Err(Errno::last())
    } else {
      Ok(u32::try_from(rc).unwrap_or(0))
    }
  }

  /// `futex_waitv(2)`, every word shared and 32-bit, with an absolute monotonic deadline.
  pub(super) fn wait_any(words: &[(&AtomicU32, u32)], deadline: Option<Instant>) -> Result<usize, Errno> {
    #[repr(C)]
    struct FutexWaitv {
      val: u64,
      uaddr: u64,
      flags: u32,
      reserved: u32,
    }
    const SYS_FUTEX_WAITV: libc::c_long = 449;
    let list: Vec<FutexWaitv> = words
      .iter()
      .map(|(word, expected)| FutexWaitv {
        val: u64::from(*expected),
        uaddr: word.as_ptr() as u64,
        flags: FUTEX2_SIZE_U32,
        reserved: 0,
      })
      .collect();
    let ts = deadline.map(monotonic_timespec);
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
    // SAFETY: `list` holds valid futex_waitv entries for words borrowed for the call; the
    // kernel only reads them; `ts_ptr` is null or a timespec on this stack frame.
    let rc = unsafe {
      libc::syscall(
        SYS_FUTEX_WAITV,
        list.as_ptr(),
        list.len(),
        0,
        ts_ptr,
        libc::CLOCK_MONOTONIC,
      )
    };
    if rc < 0 {
      Err(Errno::last())
    } else {
      Ok(usize::try_from(rc).unwrap_or(0))
    }
  }

  /// `deadline` as a `CLOCK_MONOTONIC` timespec. `Instant` is `CLOCK_MONOTONIC` on Linux,
  /// so the offset from now is carried over to the kernel's clock read now.
  pub(crate) fn monotonic_timespec(deadline: Instant) -> libc::timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    // SAFETY: timespec is plain integers, for which all-zero bytes are valid.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `now` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut now) };
    let nanos = i128::from(now.tv_nsec) + i128::from(left.subsec_nanos());
    let secs = i128::from(now.tv_sec) + i128::from(left.as_secs()) + nanos / 1_000_000_000;
    let mut ts = now;
    // (64-bit targets only: `libc::time_t` is deprecated on musl, so i64 names it.)
    ts.tv_sec = secs.try_into().unwrap_or(i64::MAX);
    ts.tv_nsec = (nanos % 1_000_000_000).try_into().unwrap_or(0);
    ts
  }
}

#[cfg(target_os = "macos")]
mod sys {
  //! `os_sync_wait_on_address` (macOS 14.4+) when the C library has it, else the
  //! `__ulock_*` calls it is built on, which every supported macOS has.
  use std::ffi::{c_int, c_void};
  use std::sync::atomic::AtomicU32;
  use std::sync::OnceLock;
  use std::time::Instant;

  use nix::errno::Errno;

  pub(super) const WAIT_SYSCALL: &str = "os_sync_wait_on_address";
  pub(super) const WAKE_SYSCALL: &str = "os_sync_wake_by_address";

  const OS_SYNC_WAIT_ON_ADDRESS_SHARED: u32 = 1;
  const OS_SYNC_WAKE_BY_ADDRESS_SHARED: u32 = 1;
  const OS_CLOCK_MACH_ABSOLUTE_TIME: u32 = 32;
  const UL_COMPARE_AND_WAIT_SHARED: u32 = 3;
  const ULF_WAKE_ALL: u32 = 0x0000_0100;
  const ULF_NO_ERRNO: u32 = 0x0100_0000;

  type WaitFn = unsafe extern "C" fn(*mut c_void, u64, usize, u32) -> c_int;
  type WaitTimeoutFn = unsafe extern "C" fn(*mut c_void, u64, usize, u32, u32, u64) -> c_int;
  type WakeFn = unsafe extern "C" fn(*mut c_void, usize, u32) -> c_int;

  struct OsSync {
    wait: WaitFn,
    wait_timeout: WaitTimeoutFn,
    wake_any: WakeFn,
    wake_all: WakeFn,
  }

  extern "C" {
    fn __ulock_wait(operation: u32, addr: *mut c_void, value: u64, timeout_us: u32) -> c_int;
    fn __ulock_wake(operation: u32, addr: *mut c_void, wake_value: u64) -> c_int;
  }

  fn symbol(name: &std::ffi::CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
  }

  fn os_sync() -> Option<&'static OsSync> {
    static FNS: OnceLock<Option<OsSync>> = OnceLock::new();
    FNS
      .get_or_init(|| {
        let wait = symbol(c"os_sync_wait_on_address");
        let wait_timeout = symbol(c"os_sync_wait_on_address_with_timeout");
        let wake_any = symbol(c"os_sync_wake_by_address_any");
        let wake_all = symbol(c"os_sync_wake_by_address_all");
        if wait.is_null() || wait_timeout.is_null() || wake_any.is_null() || wake_all.is_null() {
          return None;
        }
        // Each non-null pointer is the libSystem function of that documented signature;
        // transmuting a data pointer from dlsym to its function type is how dlsym is used.
        // SAFETY: as just said, for `os_sync_wait_on_address`.
        let wait = unsafe { std::mem::transmute::<*mut c_void, WaitFn>(wait) };
        // SAFETY: as above, for `os_sync_wait_on_address_with_timeout`.
        let wait_timeout = unsafe { std::mem::transmute::<*mut c_void, WaitTimeoutFn>(wait_timeout) };
        // SAFETY: as above, for `os_sync_wake_by_address_any`.
        let wake_any = unsafe { std::mem::transmute::<*mut c_void, WakeFn>(wake_any) };
        // SAFETY: as above, for `os_sync_wake_by_address_all`.
        let wake_all = unsafe { std::mem::transmute::<*mut c_void, WakeFn>(wake_all) };
        Some(OsSync {
          wait,
          wait_timeout,
          wake_any,
          wake_all,
        })
      })
      .as_ref()
  }

  pub(super) fn wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Result<(), Errno> {
    if word.load(std::sync::atomic::Ordering::SeqCst) != expected {
      return Err(Errno::EAGAIN);
    }
    let addr = word.as_ptr().cast::<c_void>();
    let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
    if left.is_some_and(|l| l.is_zero()) {
      return Err(Errno::ETIMEDOUT);
    }
    let rc = match (os_sync(), left) {
      // SAFETY: `addr` is a live, aligned u32 for the call; the kernel only reads it.
      (Some(f), None) => unsafe { (f.wait)(addr, u64::from(expected), 4, OS_SYNC_WAIT_ON_ADDRESS_SHARED) },
      (Some(f), Some(l)) => {
        let nanos = u64::try_from(l.as_nanos()).unwrap_or(u64::MAX);
        // SAFETY: as above; the timeout is a relative count of nanoseconds.
        unsafe {
          (f.wait_timeout)(
            addr,
            u64::from(expected),
            4,
            OS_SYNC_WAIT_ON_ADDRESS_SHARED,
            OS_CLOCK_MACH_ABSOLUTE_TIME,
            nanos,
          )
        }
      }
      (None, left) => {
        // __ulock_wait takes microseconds in a u32 (0: no limit): long waits come back
        // ETIMEDOUT early and the caller's loop waits again against the same deadline.
        let micros = left.map_or(0, |l| u32::try_from(l.as_micros().max(1)).unwrap_or(u32::MAX));
        // SAFETY: as above.
        let rc = unsafe {
          __ulock_wait(
            UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO,
            addr,
            u64::from(expected),
            micros,
          )
        };
        if rc < 0 {
          return Err(Errno::from_raw(-rc));
        }
        rc
      }
    };
    if rc < 0 {
      let errno = Errno::last();
      return Err(
        if errno == Errno::ETIMEDOUT && deadline.is_some_and(|at| Instant::now() < at) {
          Errno::EINTR
        } else {
          errno
        },
      );
    }
    Ok(())
  }

  /// No multi-word wait on macOS.
  pub(super) fn wait_any(_: &[(&AtomicU32, u32)], _: Option<Instant>) -> Result<usize, Errno> {
    Err(Errno::ENOSYS)
  }

  pub(super) fn wake(word: &AtomicU32, count: u32) -> Result<u32, Errno> {
    let addr = word.as_ptr().cast::<c_void>();
    let all = count > 1;
    let rc = match os_sync() {
      Some(f) => {
        let wake = if all { f.wake_all } else { f.wake_any };
        // SAFETY: wake only uses the address as a key.
        unsafe { wake(addr, 4, OS_SYNC_WAKE_BY_ADDRESS_SHARED) }
      }
      None => {
        let op = UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO | if all { ULF_WAKE_ALL } else { 0 };
        // SAFETY: as above.
        let rc = unsafe { __ulock_wake(op, addr, 0) };
        if rc < 0 && -rc != libc::ENOENT {
          return Err(Errno::from_raw(-rc));
        }
        0
      }
    };
    if rc < 0 {
      let errno = Errno::last();
      // Nobody waiting is not an error.
      return if errno == Errno::ENOENT { Ok(0) } else { Err(errno) };
    }
    Ok(if count == 0 {
      0
    } else {
      count.min(if all { u32::MAX } else { 1 })
    })
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::sync::atomic::Ordering;
  use std::sync::Arc;

  #[test]
  fn not_equal_returns_at_once() {
    let word = AtomicU32::new(5);
    assert_eq!(wait(&word, 4, None).unwrap(), WaitOutcome::NotEqual);
  }

  #[test]
  fn timeout_is_reported() {
    let word = AtomicU32::new(0);
    let start = Instant::now();
    assert_eq!(
      wait(&word, 0, Some(Duration::from_millis(20))).unwrap(),
      WaitOutcome::TimedOut
    );
    assert!(start.elapsed() >= Duration::from_millis(20));
  }

  #[test]
  fn wake_releases_a_waiter() {
    let word = Arc::new(AtomicU32::new(0));
    let waiter = {
      let word = Arc::clone(&word);
      std::thread::spawn(move || {
        while word.load(Ordering::SeqCst) == 0 {
          wait(&word, 0, None).unwrap();
        }
      })
    };
    std::thread::sleep(Duration::from_millis(10));
    word.store(1, Ordering::SeqCst);
    wake_all(&word).unwrap();
    waiter.join().unwrap();
  }
}
