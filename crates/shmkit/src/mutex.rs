//! A robust, process-shared mutex placed inside a [`Region`]: shmkit's own lock word on
//! [`crate::futex`], whose byte protocol is written down in `docs/layout.md` so that C or any
//! other language can take part.
//!
//! When the thread holding the lock dies (its process killed, a worker thread terminated, a
//! Rust thread exiting), the next locker is told ([`Lock::OwnerDied`]), holds the lock, and
//! decides whether the protected data is usable: [`RobustMutex::make_consistent`] then
//! [`RobustMutex::unlock`] repairs it, while unlocking without repairing makes it permanently
//! unusable (`ENOTRECOVERABLE`), so nobody silently trusts half-written data. It is
//! error-checking: locking it twice from one thread is `EDEADLK` instead of a hang, and
//! unlocking (or repairing) someone else's lock is `EPERM`.
//!
//! Owner death is found two ways. A thread that exits holding locks marks them owner-died and
//! wakes a waiter on its way out (a thread-local record, which also keeps their regions
//! mapped until then; the Node binding does the same when a worker's env is torn down). A
//! process that is killed cannot do that, so a blocked waiter checks the owner recorded in the
//! mutex every [`SLICE`]: on Linux the thread must still exist (`tgkill(pid, tid, 0)`) and
//! have the recorded start time (field 22 of `/proc/<pid>/task/<tid>/stat`, so a reused
//! thread id is not mistaken for the owner); on macOS the process must exist with the
//! recorded start time.
//!
//! No bytes can break it: every bit pattern is either a lock state, a detectably dead or
//! impossible owner (reported as [`Lock::OwnerDied`] to whoever takes it), or
//! `ENOTRECOVERABLE`. Nothing here is kept by the C library, so it works the same with glibc,
//! musl and on macOS. Dropping or closing a handle never unlocks: a lock belongs to a thread,
//! not to a handle.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::error::{Error, ErrorKind, Result};
use crate::futex;
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

/// What to do next in a [`RobustMutex::step`]-wise lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
  /// This thread holds the lock now.
  Locked(Lock),
  /// Wait (`futex` style) while the lock word at the mutex's offset holds `expected`, until
  /// `until` at the latest (a slice: then the owner's liveness is checked), then step again.
  Wait {
    /// The lock word's value to wait on.
    expected: u32,
    /// When to step again even without a wake-up.
    until: Instant,
  },
}

/// The state of one attempt to take a [`RobustMutex`] by [`RobustMutex::step`].
#[derive(Clone, Copy, Debug)]
pub struct LockAttempt {
  deadline: Option<Instant>,
  /// Whether this attempt has waited: it then takes the lock with the waiters bit set, as
  /// others may still be asleep.
  slept: bool,
  /// The busy word (waiters bit aside) last seen, and since when: an owner record that
  /// stays incomplete for the grace period is a dead owner.
  seen: Option<(u32, Instant)>,
  /// Whether the owner's liveness is due: after each slice that passed without a wake-up
  /// and at the deadline, not on every hand-over (reading `/proc` costs microseconds).
  check_owner: bool,
}

impl LockAttempt {
  /// A new attempt that gives up at `deadline` (`None`: never).
  #[must_use]
  pub fn new(deadline: Option<Instant>) -> Self {
    Self {
      deadline,
      slept: false,
      seen: None,
      check_owner: false,
    }
  }

  /// Reports how the wait asked for by [`Step::Wait`] ended.
  pub fn waited(&mut self, outcome: futex::WaitOutcome) {
    self.slept = true;
    self.check_owner = outcome == futex::WaitOutcome::TimedOut;
  }
}

/// Bytes a mutex occupies in a region (the same on every platform).
const MUTEX_SIZE: usize = RobustMutex::SIZE;
/// Required alignment of a mutex's offset.
const MUTEX_ALIGN: usize = RobustMutex::ALIGN;

/// How often a blocked locker checks that the owner is still alive.
pub const SLICE: Duration = Duration::from_millis(20);
/// How long a locked word without a complete owner record may stay so before its owner is
/// taken for dead (a legitimate owner completes the record a few instructions after winning).
const RECORD_GRACE: Duration = Duration::from_secs(1);

// The lock word (byte 0), bit by bit; see docs/layout.md.
const WAITERS: u32 = 1 << 31;
const OWNER_DIED: u32 = 1 << 30;
const RECORDED: u32 = 1 << 29;
const OWNER_MASK: u32 = RECORDED - 1;
/// An owner field of all ones: the mutex is permanently unusable.
const NOT_RECOVERABLE: u32 = OWNER_MASK;

// Byte offsets of the sequence and the owner record.
const STATE: usize = 0;
const SEQUENCE: usize = 4;
const OWNER_PID: usize = 8;
const OWNER_TID: usize = 12;
const OWNER_START_LO: usize = 16;
const OWNER_START_HI: usize = 20;

/// A robust process-shared mutex at an offset inside a region (see the module docs).
#[derive(Debug)]
pub struct RobustMutex {
  region: Arc<Region>,
  offset: usize,
}

/// The words of one mutex, borrowed from its region.
struct Words<'a> {
  state: &'a AtomicU32,
  /// Bumped by each new owner before it writes the record, so that a reader can tell a
  /// record read whole from one mixed from two owners'.
  sequence: &'a AtomicU32,
  pid: &'a AtomicU32,
  tid: &'a AtomicU32,
  start_lo: &'a AtomicU32,
  start_hi: &'a AtomicU32,
}

impl RobustMutex {
  /// Bytes a mutex occupies in a region: 32 on every platform.
  pub const SIZE: usize = 32;

  /// Required alignment of a mutex's offset: 8 (regions are page-aligned).
  pub const ALIGN: usize = 8;

  /// Initialises a new unlocked mutex at `offset` of `region` (zeroes its 32 bytes). Do this
  /// once, in one process, before anyone else uses the bytes; others attach with
  /// [`RobustMutex::at`]. Zeroed memory already is an unlocked mutex.
  ///
  /// # Errors
  /// As [`RobustMutex::at`].
  pub fn init_in(region: Arc<Region>, offset: usize) -> Result<Self> {
    let mutex = Self::at(region, offset)?;
    for word in (0..MUTEX_SIZE).step_by(4) {
      mutex.region.atomic_u32(offset + word)?.store(0, Ordering::SeqCst);
    }
    Ok(mutex)
  }

  /// Attaches to a mutex at `offset` of `region` that some process initialised.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidSize`] if the mutex does not fit or `offset` is not a multiple of 8;
  /// `EACCES` for a read-only region; [`ErrorKind::InvalidArgument`] for a private mapping.
  pub fn at(region: Arc<Region>, offset: usize) -> Result<Self> {
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

  fn words(&self) -> Result<Words<'_>> {
    words(&self.region, self.offset)
  }

  /// Blocks until the lock is held by this thread.
  ///
  /// # Errors
  /// `EDEADLK` if this thread already holds it; `ENOTRECOVERABLE` if a previous owner died
  /// and the next one unlocked without [`RobustMutex::make_consistent`].
  pub fn lock(&self) -> Result<Lock> {
    self.lock_until(None)
  }

  /// Like [`RobustMutex::lock`], giving up after `timeout` (on the monotonic clock) with
  /// [`ErrorKind::TimedOut`].
  ///
  /// # Errors
  /// As [`RobustMutex::lock`], and [`ErrorKind::TimedOut`].
  pub fn lock_timeout(&self, timeout: Duration) -> Result<Lock> {
    self.lock_until(Instant::now().checked_add(timeout))
  }

  /// Like [`RobustMutex::lock`], giving up at `deadline` (`None`: never).
  ///
  /// # Errors
  /// As [`RobustMutex::lock_timeout`].
  pub fn lock_until(&self, deadline: Option<Instant>) -> Result<Lock> {
    let mut attempt = LockAttempt::new(deadline);
    loop {
      match self.step(&mut attempt)? {
        Step::Locked(lock) => return Ok(lock),
        Step::Wait { expected, until } => {
          let outcome = futex::wait_until(self.words()?.state, expected, Some(until))?;
          attempt.waited(outcome);
        }
      }
    }
  }

  /// One step of taking the lock without blocking, for callers that wait their own way (an
  /// event loop): [`Step::Locked`], or [`Step::Wait`] for the lock word to change from
  /// `expected` until `until`, then [`LockAttempt::waited`] and another step. The thread
  /// that takes the lock is the one that calls `step`.
  ///
  /// # Errors
  /// As [`RobustMutex::lock_timeout`] ([`ErrorKind::TimedOut`] once the attempt's deadline
  /// has passed).
  pub fn step(&self, attempt: &mut LockAttempt) -> Result<Step> {
    let me = me()?;
    let words = self.words()?;
    loop {
      let word = match look(&words, &me, "mutex_lock")? {
        Found::Free(word) => {
          let waiters = if attempt.slept { WAITERS } else { 0 };
          if let Some(lock) = self.take(&words, &me, word, me.id | (word & OWNER_DIED) | waiters) {
            return Ok(Step::Locked(lock));
          }
          continue;
        }
        Found::Held(word) => word,
      };
      let first_seen = match attempt.seen {
        Some((w, at)) if w == word & !WAITERS => at,
        _ => Instant::now(),
      };
      attempt.seen = Some((word & !WAITERS, first_seen));
      let now = Instant::now();
      let late = attempt.deadline.is_some_and(|at| now >= at);
      if attempt.check_owner || late {
        attempt.check_owner = false;
        if owner_is_dead(&words, word, first_seen) {
          if let Some(lock) = self.take(&words, &me, word, me.id | OWNER_DIED | (word & WAITERS)) {
            return Ok(Step::Locked(lock));
          }
          continue;
        }
      }
      if late {
        return Err(Error::timed_out("mutex_lock"));
      }
      if word & WAITERS == 0
        && words
          .state
          .compare_exchange(word, word | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
          .is_err()
      {
        continue;
      }
      let slice_end = now + SLICE;
      return Ok(Step::Wait {
        expected: word | WAITERS,
        until: attempt.deadline.map_or(slice_end, |at| at.min(slice_end)),
      });
    }
  }

  /// Takes the lock if it is free (or its owner is dead); `None` if a live owner holds it.
  ///
  /// # Errors
  /// As [`RobustMutex::lock`].
  pub fn try_lock(&self) -> Result<Option<Lock>> {
    let me = me()?;
    let words = self.words()?;
    loop {
      let (word, new) = match look(&words, &me, "mutex_trylock")? {
        Found::Free(word) => (word, me.id | (word & OWNER_DIED) | (word & WAITERS)),
        Found::Held(word) if owner_is_dead(&words, word, Instant::now()) => {
          (word, me.id | OWNER_DIED | (word & WAITERS))
        }
        Found::Held(_) => return Ok(None),
      };
      if let Some(lock) = self.take(&words, &me, word, new) {
        return Ok(Some(lock));
      }
    }
  }

  /// Swaps the lock word from `word` to `new` (which names this thread), then completes the
  /// owner record. `None` if the word changed first, or if a waiter took the lock over
  /// before the record was complete (then this thread never held it in any way that
  /// matters: it had not returned to its caller).
  fn take(&self, words: &Words<'_>, me: &Me, word: u32, new: u32) -> Option<Lock> {
    if words
      .state
      .compare_exchange(word, new, Ordering::Acquire, Ordering::Relaxed)
      .is_err()
    {
      return None;
    }
    // Sequentially consistent, like the reads in `owner_is_dead`: a reader that sees any of
    // these stores also sees the sequence bumped before them.
    words.sequence.fetch_add(1, Ordering::SeqCst);
    words.pid.store(me.pid, Ordering::SeqCst);
    words.tid.store(me.tid, Ordering::SeqCst);
    #[expect(clippy::cast_possible_truncation, reason = "the two halves of a u64")]
    {
      words.start_lo.store(me.start as u32, Ordering::SeqCst);
      words.start_hi.store((me.start >> 32) as u32, Ordering::SeqCst);
    }
    let mut current = new;
    loop {
      if current & OWNER_MASK != me.id || current & RECORDED != 0 {
        return None;
      }
      match words
        .state
        .compare_exchange(current, current | RECORDED, Ordering::AcqRel, Ordering::Acquire)
      {
        Ok(_) => break,
        Err(now) => current = now,
      }
    }
    held::acquired(&self.region, self.offset);
    Some(if new & OWNER_DIED != 0 {
      Lock::OwnerDied
    } else {
      Lock::Acquired
    })
  }

  /// Whether this thread holds the lock (through this or any other handle).
  #[must_use]
  pub fn is_held(&self) -> bool {
    match (me(), self.words()) {
      (Ok(me), Ok(words)) => names(&words, words.state.load(Ordering::Acquire), &me),
      _ => false,
    }
  }

  /// Releases the lock. If it was taken with [`Lock::OwnerDied`] and not repaired with
  /// [`RobustMutex::make_consistent`], the mutex becomes permanently unusable instead.
  ///
  /// # Errors
  /// `EPERM` if this thread does not hold it.
  pub fn unlock(&self) -> Result<()> {
    let me = me()?;
    let words = self.words()?;
    held::released(&self.region, self.offset);
    let mut word = words.state.load(Ordering::Acquire);
    loop {
      if !names(&words, word, &me) {
        return Err(Error::os(Errno::EPERM, "mutex_unlock"));
      }
      let new = if word & OWNER_DIED != 0 { NOT_RECOVERABLE } else { 0 };
      match words
        .state
        .compare_exchange(word, new, Ordering::Release, Ordering::Acquire)
      {
        Ok(_) => break,
        Err(now) => word = now,
      }
    }
    if word & OWNER_DIED != 0 {
      futex::wake_all(words.state)?;
    } else if word & WAITERS != 0 {
      futex::wake(words.state, 1)?;
    }
    Ok(())
  }

  /// After [`Lock::OwnerDied`]: declares the protected data consistent again, so that
  /// unlocking returns the mutex to normal use.
  ///
  /// # Errors
  /// `EPERM` if this thread does not hold the lock; `EINVAL` if it holds it normally (there
  /// is nothing to repair).
  pub fn make_consistent(&self) -> Result<()> {
    let me = me()?;
    let words = self.words()?;
    let mut word = words.state.load(Ordering::Acquire);
    loop {
      if !names(&words, word, &me) {
        return Err(Error::os(Errno::EPERM, "mutex_consistent"));
      }
      if word & OWNER_DIED == 0 {
        return Err(Error::os(Errno::EINVAL, "mutex_consistent"));
      }
      match words
        .state
        .compare_exchange(word, word & !OWNER_DIED, Ordering::AcqRel, Ordering::Acquire)
      {
        Ok(_) => return Ok(()),
        Err(now) => word = now,
      }
    }
  }

  /// Marks every lock the calling thread holds as owner-died and wakes a waiter for each, as
  /// if the thread had exited. For runtimes whose threads end without the thread's exit
  /// (a Node worker's env torn down); a thread that really exits does this by itself.
  pub fn abandon_thread_locks() {
    held::abandon_all();
  }
}

impl Drop for RobustMutex {
  /// Never unlocks (the lock belongs to the thread, not to this handle). Forgets this
  /// thread's records of mutexes it no longer holds (their bytes overwritten, say), so their
  /// regions are not kept mapped any longer.
  fn drop(&mut self) {
    held::prune();
  }
}

fn words(region: &Region, offset: usize) -> Result<Words<'_>> {
  Ok(Words {
    state: region.atomic_u32(offset + STATE)?,
    sequence: region.atomic_u32(offset + SEQUENCE)?,
    pid: region.atomic_u32(offset + OWNER_PID)?,
    tid: region.atomic_u32(offset + OWNER_TID)?,
    start_lo: region.atomic_u32(offset + OWNER_START_LO)?,
    start_hi: region.atomic_u32(offset + OWNER_START_HI)?,
  })
}

/// The lock word as a locker finds it.
enum Found {
  /// No owner: the lock can be taken by swapping this word.
  Free(u32),
  /// Another thread holds it (or held it and died).
  Held(u32),
}

/// Reads the lock word for a locker. The failures every attempt shares are errors of
/// `syscall`: `ENOTRECOVERABLE` for a mutex nobody can lock any more, `EDEADLK` when this
/// thread holds it already.
fn look(words: &Words<'_>, me: &Me, syscall: &'static str) -> Result<Found> {
  let word = words.state.load(Ordering::Acquire);
  match word & OWNER_MASK {
    NOT_RECOVERABLE => Err(Error::os(Errno::ENOTRECOVERABLE, syscall)),
    0 => Ok(Found::Free(word)),
    _ if names(words, word, me) => Err(Error::os(Errno::EDEADLK, syscall)),
    _ => Ok(Found::Held(word)),
  }
}

/// Whether `word` (read from `words`) says the calling thread holds the lock: its owner field
/// is this thread's and the completed owner record is this thread's.
fn names(words: &Words<'_>, word: u32, me: &Me) -> bool {
  word & OWNER_MASK == me.id
    && word & RECORDED != 0
    && words.pid.load(Ordering::Relaxed) == me.pid
    && words.tid.load(Ordering::Relaxed) == me.tid
}

/// Whether the owner named by `word` (busy, first seen at `first_seen`) is dead, or the bytes
/// name an owner that cannot exist.
fn owner_is_dead(words: &Words<'_>, word: u32, first_seen: Instant) -> bool {
  if word & RECORDED == 0 {
    // Won but not yet recorded: normally for a few instructions. A thread id that does not
    // exist (Linux) or a record that never completes is a dead owner.
    return sys::id_gone(word & OWNER_MASK) || first_seen.elapsed() >= RECORD_GRACE;
  }
  let pid = words.pid.load(Ordering::Relaxed);
  let tid = words.tid.load(Ordering::Relaxed);
  let start =
    u64::from(words.start_lo.load(Ordering::Relaxed)) | (u64::from(words.start_hi.load(Ordering::Relaxed)) << 32);
  if words.state.load(Ordering::Acquire) != word {
    return false; // changed under us: the caller looks again
  }
  !sys::owner_alive(word & OWNER_MASK, pid, tid, start)
}

/// Who the calling thread is, in the terms of the lock word and owner record.
#[derive(Clone, Copy, Debug)]
struct Me {
  /// The owner field's value: the kernel thread id (Linux), the low bits of the system-wide
  /// thread id (macOS). Never 0 or `NOT_RECOVERABLE`.
  id: u32,
  pid: u32,
  tid: u32,
  /// Start time, as [`sys::owner_alive`] checks it.
  start: u64,
}

fn me() -> Result<Me> {
  held::me()
}

fn check_placement(region: &Region, offset: usize) -> Result<()> {
  let fits = offset.checked_add(MUTEX_SIZE).is_some_and(|end| end <= region.len());
  if !fits {
    return Err(Error::new(
      ErrorKind::InvalidSize,
      format!(
        "a mutex needs {MUTEX_SIZE} bytes at offset {offset}, and the region has {}",
        region.len()
      ),
    ));
  }
  if !offset.is_multiple_of(MUTEX_ALIGN) {
    return Err(Error::new(
      ErrorKind::InvalidSize,
      format!("a mutex offset must be a multiple of {MUTEX_ALIGN}"),
    ));
  }
  if !region.is_writable() {
    return Err(Error::os(Errno::EACCES, "mutex_lock"));
  }
  if region.is_private() {
    return Err(Error::new(
      ErrorKind::InvalidArgument,
      "a process-shared mutex needs a shared mapping; in a private one no other process would see it",
    ));
  }
  Ok(())
}

/// The calling thread's identity and the mutexes it holds. The record keeps their regions
/// mapped, and its destructor (at thread exit) marks those still held as owner-died.
mod held {
  use std::sync::atomic::AtomicU32;
  use std::sync::Once;

  use super::{words, Arc, Error, ErrorKind, Me, Ordering, RefCell, Region, Result, OWNER_DIED};
  use crate::futex;

  #[derive(Default)]
  struct Thread {
    /// `None` until first asked.
    me: Option<Me>,
    /// [`FORKS`] when `me` was found: a forked child is another thread in another process.
    forks: u32,
    held: Vec<(Arc<Region>, usize)>,
  }

  /// Bumped in every child of `fork` (a `pthread_atfork` handler): cheaper to compare than
  /// asking the kernel for the pid on every lock.
  static FORKS: AtomicU32 = AtomicU32::new(0);

  extern "C" fn forked() {
    FORKS.fetch_add(1, Ordering::Relaxed);
  }

  fn forks() -> u32 {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
      // SAFETY: registers a child handler that only does an atomic add (async-signal-safe).
      // A failure (ENOMEM) leaves forked children to recompute nothing; nothing unsafe.
      unsafe { libc::pthread_atfork(None, None, Some(forked)) };
    });
    FORKS.load(Ordering::Relaxed)
  }

  impl Drop for Thread {
    fn drop(&mut self) {
      abandon(self);
    }
  }

  thread_local! {
    static THREAD: RefCell<Thread> = RefCell::new(Thread::default());
  }

  fn with<T>(f: impl FnOnce(&mut Thread) -> T) -> Option<T> {
    THREAD.try_with(|thread| f(&mut thread.borrow_mut())).ok()
  }

  /// The calling thread's identity. Every operation starts here, so this is also where a
  /// forked child forgets what its parent's thread held: it holds nothing, and is another
  /// thread (the regions are not unmapped: the child may still use them).
  pub(super) fn me() -> Result<Me> {
    let forks = forks();
    let found = with(|thread| {
      if thread.me.is_some() && thread.forks != forks {
        thread.me = None;
        std::mem::forget(std::mem::take(&mut thread.held));
      }
      if thread.me.is_none() {
        thread.me = Some(super::sys::me()?);
        thread.forks = forks;
      }
      Ok(thread.me)
    });
    match found {
      Some(Ok(Some(me))) => Ok(me),
      Some(Err(e)) => Err(e),
      _ => Err(Error::new(
        ErrorKind::Unsupported,
        "a thread that is exiting cannot lock",
      )),
    }
  }

  pub(super) fn acquired(region: &Arc<Region>, offset: usize) {
    with(|thread| thread.held.push((region.clone(), offset)));
  }

  /// Forgets the mutexes this thread no longer holds.
  pub(super) fn prune() {
    with(|thread| {
      let me = thread.me;
      thread.held.retain(|(r, o)| still_mine(me, r, *o));
    });
  }

  /// Forgets `region`/`offset` and any record of a mutex this thread no longer holds.
  pub(super) fn released(region: &Region, offset: usize) {
    with(|thread| {
      let address = region.as_ptr() as usize + offset;
      thread
        .held
        .retain(|(r, o)| r.as_ptr() as usize + o != address && still_mine(thread.me, r, *o));
    });
  }

  fn still_mine(me: Option<Me>, region: &Region, offset: usize) -> bool {
    let (Some(me), Ok(words)) = (me, words(region, offset)) else {
      return false;
    };
    super::names(&words, words.state.load(Ordering::Acquire), &me)
  }

  pub(super) fn abandon_all() {
    with(abandon);
  }

  /// Marks the locks `thread` still holds as owner-died (tid 0 with the owner-died bit: free,
  /// and the next locker is told) and wakes a waiter for each.
  fn abandon(thread: &mut Thread) {
    let me = thread.me;
    for (region, offset) in std::mem::take(&mut thread.held) {
      let (Some(me), Ok(words)) = (me, words(&region, offset)) else {
        continue;
      };
      let mut word = words.state.load(Ordering::Acquire);
      while super::names(&words, word, &me) {
        match words
          .state
          .compare_exchange(word, OWNER_DIED, Ordering::Release, Ordering::Acquire)
        {
          Ok(_) => {
            // Nothing to report to: a thread on its way out.
            let _ = futex::wake(words.state, 1);
            break;
          }
          Err(now) => word = now,
        }
      }
    }
  }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod sys {
  use nix::errno::Errno;

  use super::{Me, Result, NOT_RECOVERABLE};
  use crate::error::Error;

  fn gettid() -> u32 {
    // The raw syscall: gettid(3) is newer than the oldest glibc we build against.
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    u32::try_from(tid).unwrap_or(0)
  }

  /// Fields 3 (`state`) and 22 (`starttime`, clock ticks after boot) of
  /// `/proc/<pid>/task/<tid>/stat`; `Err` with the errno when the file cannot be read
  /// (`ENOENT`: no such thread).
  pub(super) fn thread_stat(pid: u32, tid: u32) -> std::result::Result<(char, u64), Errno> {
    let path = format!("/proc/{pid}/task/{tid}/stat");
    let text = std::fs::read_to_string(path).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    // The command name (field 2) is in parentheses and may contain anything: count fields
    // after the last ')'. Field 3 is the first there, so field 22 is the 20th.
    let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next().and_then(|f| f.chars().next()).ok_or(Errno::EIO)?;
    let start = fields.nth(18).and_then(|f| f.parse().ok()).ok_or(Errno::EIO)?;
    Ok((state, start))
  }

  pub(super) fn me() -> Result<Me> {
    let pid = std::process::id();
    let tid = gettid();
    if tid == 0 || tid >= NOT_RECOVERABLE {
      return Err(Error::os(Errno::EOVERFLOW, "gettid"));
    }
    // Without /proc the start time is unknown (0): waiters then trust the thread id alone.
    let start = thread_stat(pid, tid).map_or(0, |(_, start)| start);
    Ok(Me {
      id: tid,
      pid,
      tid,
      start,
    })
  }

  /// Whether no thread has id `tid` (kill(2) accepts any thread's id and signals its process;
  /// signal 0 only checks).
  pub(super) fn id_gone(tid: u32) -> bool {
    let Ok(tid) = libc::pid_t::try_from(tid) else {
      return true;
    };
    // SAFETY: signal 0 sends nothing; any pid value is a valid argument.
    let rc = unsafe { libc::kill(tid, 0) };
    rc == -1 && Errno::last() == Errno::ESRCH
  }

  /// Whether thread `tid` of process `pid`, started at `start`, exists and is the one the
  /// owner field `id` names.
  pub(super) fn owner_alive(id: u32, pid: u32, tid: u32, start: u64) -> bool {
    if id != tid {
      return false; // a record that is not the owner's: scribbled bytes
    }
    let (Ok(pid_t), Ok(tid_t)) = (libc::pid_t::try_from(pid), libc::pid_t::try_from(tid)) else {
      return false;
    };
    if pid_t <= 0 || tid_t <= 0 {
      return false;
    }
    // SAFETY: signal 0 sends nothing; tgkill checks that `tid` is a thread of `pid`.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid_t, tid_t, 0) };
    if rc == -1 && matches!(Errno::last(), Errno::ESRCH | Errno::EINVAL) {
      return false;
    }
    match thread_stat(pid, tid) {
      // A zombie (killed, not yet reaped) or dead thread holds nothing any more.
      Ok((state, now)) => !matches!(state, 'Z' | 'X' | 'x') && (start == 0 || now == start),
      Err(Errno::ENOENT | Errno::ESRCH) => false,
      // No /proc, or not ours to read: the thread exists, and that is all we can know.
      Err(_) => true,
    }
  }
}

#[cfg(target_os = "macos")]
mod sys {
  use nix::errno::Errno;

  use super::{Me, Result, NOT_RECOVERABLE, OWNER_MASK};
  use crate::error::Error;

  /// The process's start time in microseconds since the epoch and whether it is a zombie
  /// (killed, not yet reaped), from `proc_pidinfo`.
  fn process_info(pid: u32) -> Option<(u64, bool)> {
    let pid = libc::c_int::try_from(pid).ok()?;
    // SAFETY: proc_bsdinfo is plain integers and arrays, for which zero bytes are valid.
    let mut info: libc::proc_bsdinfo = unsafe { std::mem::zeroed() };
    let size = libc::c_int::try_from(std::mem::size_of::<libc::proc_bsdinfo>()).ok()?;
    // SAFETY: `info` is a writable buffer of `size` bytes for the PROC_PIDTBSDINFO flavour.
    let got = unsafe { libc::proc_pidinfo(pid, libc::PROC_PIDTBSDINFO, 0, (&raw mut info).cast(), size) };
    (got == size).then(|| {
      (
        info.pbi_start_tvsec * 1_000_000 + info.pbi_start_tvusec,
        info.pbi_status == libc::SZOMB,
      )
    })
  }

  pub(super) fn me() -> Result<Me> {
    let mut thread_id = 0u64;
    // SAFETY: a null thread means the calling thread; `thread_id` is a valid out-pointer.
    let rc = unsafe { libc::pthread_threadid_np(0 as libc::pthread_t, &raw mut thread_id) };
    if rc != 0 {
      return Err(Error::os(Errno::from_raw(rc), "pthread_threadid_np"));
    }
    // The owner field holds the low bits of the system-wide thread id; two live threads
    // sharing them would need 2^29 thread creations between them.
    #[expect(clippy::cast_possible_truncation, reason = "masked to 29 bits")]
    let mut id = (thread_id as u32) & OWNER_MASK;
    if id == 0 || id == NOT_RECOVERABLE {
      id ^= 1;
    }
    let pid = std::process::id();
    #[expect(clippy::cast_possible_truncation, reason = "the record keeps the low half")]
    let tid = thread_id as u32;
    Ok(Me {
      id,
      pid,
      tid,
      start: process_info(pid).map_or(0, |(start, _)| start),
    })
  }

  /// Without a record the owner's process is unknown here: only the grace period decides.
  pub(super) fn id_gone(_: u32) -> bool {
    false
  }

  /// Whether process `pid`, started at `start`, still exists (threads of a live process that
  /// exit holding locks release them as owner-died themselves).
  pub(super) fn owner_alive(_id: u32, pid: u32, _tid: u32, start: u64) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
      return false;
    };
    if pid_t <= 0 {
      return false;
    }
    // SAFETY: signal 0 sends nothing; any pid value is a valid argument.
    let rc = unsafe { libc::kill(pid_t, 0) };
    if rc == -1 && Errno::last() == Errno::ESRCH {
      return false;
    }
    match process_info(pid) {
      Some((now, zombie)) => !zombie && (start == 0 || now == start),
      None => Errno::last() != Errno::ESRCH,
    }
  }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
mod sys {
  use super::{Me, Result};
  use crate::error::{Error, ErrorKind};

  pub(super) fn me() -> Result<Me> {
    Err(Error::new(ErrorKind::Unsupported, "RobustMutex needs Linux or macOS"))
  }
  pub(super) fn id_gone(_: u32) -> bool {
    false
  }
  pub(super) fn owner_alive(_: u32, _: u32, _: u32, _: u64) -> bool {
    true
  }
}
