//! Semaphores shared between processes, named and in a region, on shmkit's own wait/wake
//! protocol over two shared words: see `docs/layout.md` ("Semaphores") and
//! `sem_overview(7)`.
//!
//! The bytes are glibc's 64-bit `struct new_sem`, so on glibc C programs (`sem_post`,
//! `sem_wait`) and Python (`posix_ipc`) share the same objects:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0–7 | `data`, a 64-bit word: the value in the low 32 bits (bytes 0–3, the futex word), the number of waiters in the high 32 bits (bytes 4–7) |
//! | 8–11 | `private`: `128` (glibc's `FUTEX_SHARED`) for a process-shared semaphore |
//! | 12–31 | unused, zero |
//!
//! shmkit never calls the C library's `sem_*` on these bytes: glibc re-reads them inside its
//! calls and aborts the process (or hangs) on bytes that another process scribbled over.
//! Here every bit pattern is handled: a `private` word other than `128` or a value above
//! [`Semaphore::VALUE_MAX`] is `EINVAL`, and no wait outlives its deadline whatever the
//! bytes say. The protocol, glibc's:
//! - **post**: compare-and-swap `data` to `data + 1` (`EOVERFLOW` at the maximum); if the
//!   waiter count was not zero, wake one waiter of the value word (shared futex).
//! - **try-wait**: compare-and-swap `data` to `data - 1` while the value is above zero.
//! - **wait**: try-wait; else add 1 to the waiter count, and until a compare-and-swap takes
//!   a permit and removes the waiter in one step, futex-wait on the value word while it is 0.
//!   A timeout removes the waiter again.
//!
//! Named semaphores are the files `/dev/shm/sem.NAME` (glibc's place, on glibc and musl
//! builds alike), opened and created by shmkit itself the way glibc does (a temporary file
//! with the initial bytes and the exact mode, then `link` to the name, so `O_EXCL` holds and
//! nobody sees a half-made semaphore), and mapped shared. On macOS named semaphores are the
//! kernel's (`sem_open`): timed waits poll there.
//!
//! `EINTR` is retried everywhere; timed waits keep their deadline on the monotonic clock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::error::{Error, ErrorKind, Result};
use crate::futex::{self, WaitOutcome};
use crate::name::ObjectName;
use crate::owner::Owner;
use crate::region::Region;

/// The `private` word of a process-shared semaphore (glibc's `FUTEX_SHARED`).
const SHARED: u32 = 128;
/// One waiter, in the 64-bit `data` word.
const ONE_WAITER: u64 = 1 << 32;
/// Where the 32-bit value sits inside `data` (the low half).
#[cfg(target_endian = "little")]
const VALUE_OFFSET: usize = 0;
#[cfg(target_endian = "big")]
const VALUE_OFFSET: usize = 4;

/// Options for creating a named semaphore.
///
/// ```
/// let opts = shmkit::SemOptions::new().mode(0o640);
/// assert_eq!(opts.get_mode(), 0o640);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SemOptions {
  mode: u32,
  owner: Owner,
}

impl Default for SemOptions {
  fn default() -> Self {
    Self {
      mode: 0o600,
      owner: Owner::Me,
    }
  }
}

impl SemOptions {
  /// The defaults: mode `0o600`.
  #[must_use]
  pub fn new() -> Self {
    Self::default()
  }

  /// Permission bits of a new named semaphore. Default `0o600`: owner only. On Linux they
  /// are applied exactly (the umask does not narrow them); on macOS the umask applies.
  #[must_use]
  pub fn mode(mut self, mode: u32) -> Self {
    self.mode = mode;
    self
  }

  /// The permission bits for new semaphores.
  #[must_use]
  pub fn get_mode(&self) -> u32 {
    self.mode
  }

  /// Whose semaphores opening accepts. Default [`Owner::Me`]: one another user created under
  /// the name is refused with [`ErrorKind::ForeignOwner`] (checked on Linux, where the
  /// semaphore is a file in `/dev/shm`).
  #[must_use]
  pub fn owner(mut self, owner: Owner) -> Self {
    self.owner = owner;
    self
  }

  /// The [`SemOptions::owner`] policy.
  #[must_use]
  pub fn get_owner(&self) -> Owner {
    self.owner
  }
}

/// What keeps the semaphore's bytes mapped.
#[derive(Debug)]
enum Backing {
  /// A named semaphore: its own mapping of `/dev/shm/sem.NAME` (or, on macOS, a `sem_t`
  /// from `sem_open`).
  Named { name: ObjectName, map: named::Map },
  /// Inside a region, which stays mapped while the semaphore exists.
  Region { region: Arc<Region>, offset: usize },
}

/// A semaphore shared between processes.
///
/// ```
/// use shmkit::{unique_name, Semaphore};
/// let name = unique_name("doc");
/// let sem = Semaphore::create(&name, 1).unwrap();
/// assert!(sem.try_wait().unwrap()); // took the one permit
/// assert!(!sem.try_wait().unwrap()); // none left
/// sem.post().unwrap();
/// assert!(sem.wait_timeout(std::time::Duration::from_secs(1)).unwrap());
/// Semaphore::unlink(&name).unwrap();
/// ```
///
/// In a region, shared with a forked child:
///
/// ```
/// use std::sync::Arc;
/// use shmkit::{fork, Region, Semaphore};
/// let region = Arc::new(Region::anonymous(4096).unwrap());
/// let sem = Semaphore::init_in(region.clone(), 0, 0).unwrap();
/// // SAFETY: this doctest is single-threaded, so the child may do anything.
/// let mut child = unsafe { fork(|| { sem.post().unwrap(); 0 }) }.unwrap();
/// sem.wait().unwrap(); // the child's post
/// assert!(child.wait().unwrap().success());
/// ```
#[derive(Debug)]
pub struct Semaphore {
  backing: Backing,
}

/// The protocol's words at one address. Every access is atomic: other processes read and
/// write them at any moment.
struct Words<'a> {
  data: &'a AtomicU64,
  value: &'a AtomicU32,
  private: &'a AtomicU32,
}

impl Words<'_> {
  fn value_of(data: u64) -> u32 {
    #[expect(clippy::cast_possible_truncation, reason = "the value is the low half")]
    let value = data as u32;
    value
  }

  /// `EINVAL` unless the bytes look like a process-shared semaphore.
  fn check(&self) -> Result<(), Errno> {
    if self.private.load(Ordering::Relaxed) == SHARED {
      Ok(())
    } else {
      Err(Errno::EINVAL)
    }
  }

  /// The value in `data`, or `EINVAL` when it is above the maximum (garbage).
  fn checked_value(data: u64) -> Result<u32, Errno> {
    let value = Self::value_of(data);
    if value > Semaphore::VALUE_MAX {
      Err(Errno::EINVAL)
    } else {
      Ok(value)
    }
  }

  fn value(&self) -> Result<u32, Errno> {
    self.check()?;
    Self::checked_value(self.data.load(Ordering::Relaxed))
  }

  /// Takes a permit if there is one; with `as_waiter`, removes one waiter in the same step.
  fn try_take(&self, as_waiter: bool) -> Result<bool, Errno> {
    self.check()?;
    let mut data = self.data.load(Ordering::Relaxed);
    loop {
      if Self::checked_value(data)? == 0 {
        return Ok(false);
      }
      let next = data
        .wrapping_sub(1)
        .wrapping_sub(if as_waiter { ONE_WAITER } else { 0 });
      match self
        .data
        .compare_exchange_weak(data, next, Ordering::Acquire, Ordering::Relaxed)
      {
        Ok(_) => return Ok(true),
        Err(now) => data = now,
      }
    }
  }

  fn post(&self) -> Result<(), Errno> {
    self.check()?;
    let mut data = self.data.load(Ordering::Relaxed);
    loop {
      match Self::checked_value(data)? {
        Semaphore::VALUE_MAX => return Err(Errno::EOVERFLOW),
        _ => match self
          .data
          .compare_exchange_weak(data, data.wrapping_add(1), Ordering::Release, Ordering::Relaxed)
        {
          Ok(_) => break,
          Err(now) => data = now,
        },
      }
    }
    if data >> 32 != 0 {
      futex::wake(self.value, 1).map_err(|e| e.errno().unwrap_or(Errno::EINVAL))?;
    }
    Ok(())
  }

  fn add_waiter(&self) {
    self.data.fetch_add(ONE_WAITER, Ordering::Relaxed);
  }

  /// Removes a waiter that leaves without a permit. If permits are left and others wait, a
  /// wake meant for this waiter may have been spent on it: pass one on.
  fn remove_waiter(&self) {
    let data = self
      .data
      .fetch_sub(ONE_WAITER, Ordering::Relaxed)
      .wrapping_sub(ONE_WAITER);
    if Self::value_of(data) > 0 && data >> 32 != 0 {
      let _ = futex::wake(self.value, 1);
    }
  }

  /// glibc's `sem_wait`/`sem_timedwait`: returns whether it took a permit before `deadline`.
  fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, Errno> {
    if self.try_take(false)? {
      return Ok(true);
    }
    self.add_waiter();
    loop {
      match self.try_take(true) {
        Ok(true) => return Ok(true),
        Ok(false) => {}
        Err(e) => {
          self.remove_waiter();
          return Err(e);
        }
      }
      match futex::wait_until(self.value, 0, deadline) {
        Ok(WaitOutcome::TimedOut) => {
          // One last look: a permit that came with the deadline is still taken.
          let took = self.try_take(true);
          if !matches!(took, Ok(true)) {
            self.remove_waiter();
          }
          return took;
        }
        Ok(WaitOutcome::Woken | WaitOutcome::NotEqual) => {}
        Err(e) => {
          self.remove_waiter();
          return Err(e.errno().unwrap_or(Errno::EINVAL));
        }
      }
    }
  }
}

// SAFETY: every access to the semaphore's bytes is atomic, and the backing keeps them mapped
// for the life of the handle.
unsafe impl Send for Semaphore {}
// SAFETY: see `Send`: every operation through `&Semaphore` is atomic or a futex call.
unsafe impl Sync for Semaphore {}

impl Semaphore {
  /// The bytes an in-region semaphore occupies: 32, glibc's `sizeof(sem_t)` on 64-bit Linux,
  /// on every platform (the protocol uses the first 12).
  pub const SIZE: usize = 32;

  /// The alignment an in-region semaphore's offset must have, counted from the start of the
  /// mapping (which is page-aligned): 8, for the 64-bit `data` word.
  pub const ALIGN: usize = 8;

  /// The largest value a semaphore can hold (`SEM_VALUE_MAX`): `i32::MAX` on Linux, 32767 on
  /// macOS. A `post` beyond it fails with `EOVERFLOW`.
  #[cfg(not(target_vendor = "apple"))]
  pub const VALUE_MAX: u32 = i32::MAX as u32;

  /// The largest value a semaphore can hold (`SEM_VALUE_MAX`): `i32::MAX` on Linux, 32767 on
  /// macOS. A `post` beyond it fails with `EOVERFLOW`.
  #[cfg(target_vendor = "apple")]
  pub const VALUE_MAX: u32 = 32_767;

  /// Creates the named semaphore `name` with value `initial`, mode `0o600`. Fails with
  /// `EEXIST` if it exists (`O_CREAT | O_EXCL`).
  ///
  /// # Errors
  /// [`ErrorKind::InvalidName`]; [`ErrorKind::InvalidArgument`] for `initial` above
  /// [`Semaphore::VALUE_MAX`]; `sem_open` failures (`EEXIST`, `EACCES`, `ENOSPC`).
  pub fn create<N>(name: N, initial: u32) -> Result<Semaphore>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    Self::create_with(name, initial, &SemOptions::default())
  }

  /// [`Semaphore::create`] with options ([`SemOptions::mode`]).
  ///
  /// # Errors
  /// As [`Semaphore::create`]; [`ErrorKind::InvalidArgument`] for a mode above `0o777`.
  pub fn create_with<N>(name: N, initial: u32, opts: &SemOptions) -> Result<Semaphore>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    let name = name.try_into()?;
    create_named(&name, initial, opts).map_err(|e| e.with_name(name.as_str()))
  }

  /// Opens the existing named semaphore `name`. A process that only opens never needs to
  /// unlink.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidName`]; `ENOENT` if there is no such semaphore, `EACCES`; `EINVAL`
  /// if the file is too small to be one.
  pub fn open<N>(name: N) -> Result<Semaphore>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    Self::open_with(name, &SemOptions::default())
  }

  /// [`Semaphore::open`] with options ([`SemOptions::owner`]).
  ///
  /// # Errors
  /// As [`Semaphore::open`]; [`ErrorKind::ForeignOwner`].
  pub fn open_with<N>(name: N, opts: &SemOptions) -> Result<Semaphore>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    let name = name.try_into()?;
    let map = named::open(&name, opts.owner).map_err(|e| e.with_name(name.as_str()))?;
    Ok(Semaphore {
      backing: Backing::Named { name, map },
    })
  }

  /// Opens `name` if it exists (keeping its value and mode), or creates it with `initial`.
  ///
  /// # Errors
  /// As [`Semaphore::create`] and [`Semaphore::open`].
  pub fn open_or_create<N>(name: N, initial: u32) -> Result<Semaphore>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    Self::open_or_create_with(name, initial, &SemOptions::default())
  }

  /// [`Semaphore::open_or_create`] with options.
  ///
  /// # Errors
  /// As [`Semaphore::create`] and [`Semaphore::open`].
  pub fn open_or_create_with<N>(name: N, initial: u32, opts: &SemOptions) -> Result<Semaphore>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    let name = name.try_into()?;
    // Another process may create or unlink the name between our two calls; a few rounds
    // settle any such race (as for shared memory).
    let mut last = None;
    for _ in 0..8 {
      match create_named(&name, initial, opts) {
        Err(e) if e.errno() == Some(Errno::EEXIST) => {}
        other => return other.map_err(|e| e.with_name(name.as_str())),
      }
      match Self::open_with(&name, opts) {
        Err(e) if e.errno() == Some(Errno::ENOENT) => last = Some(e),
        other => return other,
      }
    }
    Err(last.expect("the loop ran"))
  }

  /// Removes the name `name` (`sem_unlink`). Processes that have the semaphore open keep
  /// using it; it is freed when the last one closes it. Never called implicitly.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidName`]; `ENOENT` if there is no such semaphore.
  pub fn unlink<N>(name: N) -> Result<()>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    let name = name.try_into()?;
    named::unlink(&name).map_err(|e| Error::os(e, "sem_unlink").with_name(name.as_str()))
  }

  /// Initialises a process-shared semaphore with value `initial` at byte `offset` of
  /// `region` (the bytes glibc's `sem_init(pshared = 1)` writes), and returns a handle to it.
  /// Other processes that map the same memory use it through [`Semaphore::at`] (or inherit
  /// this handle across `fork`), and on glibc C programs through `sem_post`/`sem_wait`.
  ///
  /// The bytes `offset .. offset + SIZE` belong to the semaphore from now on. Writing over
  /// them breaks it, but never this process: operations then fail with `EINVAL` where the
  /// damage is visible, and waits still end at their deadline. Initialising a semaphore that
  /// processes are using resets it under them. The region stays mapped as long as the
  /// semaphore exists, even after every other handle to the region is gone.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidSize`] when the semaphore does not fit at `offset`;
  /// [`ErrorKind::InvalidArgument`] for a misaligned `offset` (see [`Semaphore::ALIGN`]), a
  /// `MAP_PRIVATE` or read-only region (the semaphore would not be shared), or `initial`
  /// above [`Semaphore::VALUE_MAX`].
  pub fn init_in(region: Arc<Region>, offset: usize, initial: u32) -> Result<Semaphore> {
    check_value(initial)?;
    let ptr = place(&region, offset)?;
    // SAFETY: `place` checked that SIZE bytes at `ptr` are inside the shared, writable
    // mapping and 8-aligned.
    unsafe { init_bytes(ptr, initial) };
    Ok(Semaphore {
      backing: Backing::Region { region, offset },
    })
  }

  /// Attaches to the semaphore that [`Semaphore::init_in`] (here or in another process, or
  /// a C program's `sem_init(pshared = 1)` on glibc) placed at byte `offset` of `region`.
  /// Nothing is initialised.
  ///
  /// # Errors
  /// As [`Semaphore::init_in`]; `EINVAL` (syscall `sem_init`) when the bytes at `offset`
  /// visibly hold no process-shared semaphore.
  pub fn at(region: Arc<Region>, offset: usize) -> Result<Semaphore> {
    place(&region, offset)?;
    let sem = Semaphore {
      backing: Backing::Region { region, offset },
    };
    sem.raw_value().map_err(|e| sem.err(e, "sem_init"))?;
    Ok(sem)
  }

  /// Runs `f` on the protocol's words; `None` for a macOS named semaphore (a kernel object).
  fn words(&self) -> Option<Words<'_>> {
    let ptr = match &self.backing {
      Backing::Region { region, offset } => {
        // SAFETY: `place` checked offset + SIZE <= len when the handle was made, and the
        // Arc keeps the mapping.
        unsafe { region.as_ptr().add(*offset) }
      }
      Backing::Named { map, .. } => map.words()?,
    };
    // SAFETY: `ptr` points at SIZE bytes, 8-aligned, mapped for the life of `self`; every
    // access through these references is atomic.
    Some(unsafe { words_at(ptr) })
  }

  fn with_words<'s, T>(&'s self, f: impl FnOnce(&Words<'s>) -> Result<T, Errno>) -> Result<T, Errno> {
    match self.words() {
      Some(words) => f(&words),
      None => Err(Errno::ENOSYS),
    }
  }

  fn raw_value(&self) -> Result<u32, Errno> {
    self.with_words(Words::value)
  }

  /// Adds one to the value, waking one waiter. Async-signal-safe (atomics and one futex
  /// call), so a forked child may call it.
  ///
  /// # Errors
  /// `EOVERFLOW` at [`Semaphore::VALUE_MAX`]; `EINVAL` for damaged bytes.
  pub fn post(&self) -> Result<()> {
    match &self.backing {
      Backing::Named { map, .. } if map.words().is_none() => map.post(),
      _ => self.with_words(Words::post),
    }
    .map_err(|e| self.err(e, "sem_post"))
  }

  /// Takes one from the value if it is above zero, without blocking. Returns whether it did.
  ///
  /// # Errors
  /// `EINVAL` for damaged bytes.
  pub fn try_wait(&self) -> Result<bool> {
    match &self.backing {
      Backing::Named { map, .. } if map.words().is_none() => map.try_wait(),
      _ => self.with_words(|w| w.try_take(false)),
    }
    .map_err(|e| self.err(e, "sem_trywait"))
  }

  /// Blocks until the value is above zero, then takes one. Signals that interrupt the wait
  /// are retried.
  ///
  /// # Errors
  /// `EINVAL` for damaged bytes.
  pub fn wait(&self) -> Result<()> {
    self.wait_deadline(None).map(drop).map_err(|e| self.err(e, "sem_wait"))
  }

  /// Like [`Semaphore::wait`], but gives up after `timeout`: returns `true` when it took one,
  /// `false` when the time ran out. A zero `timeout` tries once. The deadline is kept on the
  /// monotonic clock, so interruptions and changes of the wall clock do not shorten or
  /// stretch it.
  ///
  /// # Errors
  /// `EINVAL` for damaged bytes.
  pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
    match Instant::now().checked_add(timeout) {
      Some(deadline) => self.wait_until(deadline),
      // Beyond the clock's range: the same as no timeout.
      None => self.wait().map(|()| true),
    }
  }

  /// Like [`Semaphore::wait_timeout`], with an absolute monotonic `deadline`.
  ///
  /// # Errors
  /// As [`Semaphore::wait_timeout`].
  pub fn wait_until(&self, deadline: Instant) -> Result<bool> {
    self
      .wait_deadline(Some(deadline))
      .map_err(|e| self.err(e, "sem_timedwait"))
  }

  fn wait_deadline(&self, deadline: Option<Instant>) -> Result<bool, Errno> {
    match &self.backing {
      Backing::Named { map, .. } if map.words().is_none() => map.wait_until(deadline),
      _ => self.with_words(|w| w.wait_until(deadline)),
    }
  }

  /// The current value. Other processes may change it at any moment, so it is a snapshot
  /// for diagnostics, never a reason to skip a wait.
  ///
  /// # Errors
  /// [`ErrorKind::Unsupported`] for a named semaphore on macOS; `EINVAL` for damaged bytes.
  pub fn value(&self) -> Result<u32> {
    match self.raw_value() {
      Err(Errno::ENOSYS) => Err(Error::new(
        ErrorKind::Unsupported,
        "macOS does not report a named semaphore's value",
      )),
      other => other.map_err(|e| self.err(e, "sem_getvalue")),
    }
  }

  /// The 32-bit word waiters sleep on (the value, which they wait to see leave 0), for
  /// callers that wait on it asynchronously; `None` for a named semaphore on macOS.
  ///
  /// An asynchronous waiter follows the protocol in the module documentation: while it
  /// waits it counts itself once with [`Semaphore::add_waiter`], waits on this word while it
  /// reads 0, takes a permit with [`Semaphore::try_wait`], and leaves with
  /// [`Semaphore::remove_waiter`].
  #[must_use]
  pub fn wait_word(&self) -> Option<&AtomicU32> {
    self.words().map(|w| w.value)
  }

  /// Counts one more waiter, so that posts wake the value word (see
  /// [`Semaphore::wait_word`]). Does nothing for a macOS named semaphore.
  pub fn add_waiter(&self) {
    if let Some(words) = self.words() {
      words.add_waiter();
    }
  }

  /// Undoes [`Semaphore::add_waiter`], passing a wake on to another waiter when permits are
  /// left (the wake may have been meant for the one leaving).
  pub fn remove_waiter(&self) {
    if let Some(words) = self.words() {
      words.remove_waiter();
    }
  }

  /// The name (with its leading `/`) of a named semaphore; `None` for one in a region.
  #[must_use]
  pub fn name(&self) -> Option<&str> {
    match &self.backing {
      Backing::Named { name, .. } => Some(name.as_str()),
      Backing::Region { .. } => None,
    }
  }

  /// The region an in-region semaphore lives in.
  #[must_use]
  pub fn region(&self) -> Option<&Arc<Region>> {
    match &self.backing {
      Backing::Named { .. } => None,
      Backing::Region { region, .. } => Some(region),
    }
  }

  /// The byte offset of an in-region semaphore inside its region.
  #[must_use]
  pub fn offset(&self) -> Option<usize> {
    match &self.backing {
      Backing::Named { .. } => None,
      Backing::Region { offset, .. } => Some(*offset),
    }
  }

  /// Releases this handle now and reports a failure, which `Drop` cannot: unmaps a named
  /// semaphore (the name stays until [`Semaphore::unlink`]); for an in-region one it drops
  /// the handle's hold on the region. The semaphore itself is untouched.
  ///
  /// # Errors
  /// The `munmap` (`sem_close`) failure; the handle is gone either way.
  pub fn close(self) -> Result<()> {
    match self.backing {
      Backing::Named { name, map } => map
        .close()
        .map_err(|e| Error::os(e, "sem_close").with_name(name.as_str())),
      // Dropping the backing releases this handle's hold on the region.
      Backing::Region { .. } => Ok(()),
    }
  }

  /// Ends an in-region semaphore (`sem_destroy`), which only this explicit call ever does.
  /// Like glibc's, it changes no byte: no process may use the semaphore afterwards until it
  /// is initialised again.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidArgument`] for a named semaphore (remove those with
  /// [`Semaphore::unlink`]); `EINVAL` for damaged bytes.
  pub fn destroy(self) -> Result<()> {
    match &self.backing {
      Backing::Named { .. } => Err(Error::new(
        ErrorKind::InvalidArgument,
        "named semaphores are removed with unlink, not destroyed",
      )),
      Backing::Region { .. } => self.raw_value().map(drop).map_err(|e| self.err(e, "sem_destroy")),
    }
  }

  fn err(&self, errno: Errno, syscall: &'static str) -> Error {
    let error = Error::os(errno, syscall);
    match &self.backing {
      Backing::Named { name, .. } => error.with_name(name.as_str()),
      Backing::Region { region, .. } => region.named(error),
    }
  }
}

/// The words of the semaphore at `ptr`.
///
/// # Safety
/// `ptr` must point at [`Semaphore::SIZE`] bytes, 8-aligned, that stay mapped for `'a` and
/// are only accessed atomically.
unsafe fn words_at<'a>(ptr: *mut u8) -> Words<'a> {
  // SAFETY: per the contract, 8 aligned bytes at `ptr`.
  let data = unsafe { AtomicU64::from_ptr(ptr.cast()) };
  // SAFETY: per the contract; the value is one half of `data` (4-aligned), the kernel's
  // futex word. Both views only ever see atomic accesses.
  let value = unsafe { AtomicU32::from_ptr(ptr.wrapping_add(VALUE_OFFSET).cast()) };
  // SAFETY: per the contract, bytes 8..12 are inside the semaphore and 4-aligned.
  let private = unsafe { AtomicU32::from_ptr(ptr.wrapping_add(8).cast()) };
  Words { data, value, private }
}

/// Writes a fresh semaphore with value `initial`.
///
/// # Safety
/// As [`words_at`], and the bytes must be writable.
unsafe fn init_bytes(ptr: *mut u8, initial: u32) {
  // SAFETY: per the contract.
  let words = unsafe { words_at(ptr) };
  words.data.store(u64::from(initial), Ordering::Relaxed);
  // SAFETY: per the contract, bytes 12..16 are inside the semaphore and 4-aligned.
  unsafe { AtomicU32::from_ptr(ptr.wrapping_add(12).cast()) }.store(0, Ordering::Relaxed);
  words.private.store(SHARED, Ordering::Release);
}

fn check_value(initial: u32) -> Result<()> {
  if initial > Semaphore::VALUE_MAX {
    return Err(Error::new(
      ErrorKind::InvalidArgument,
      format!(
        "a semaphore's value is at most {} (SEM_VALUE_MAX); got {initial}",
        Semaphore::VALUE_MAX
      ),
    ));
  }
  Ok(())
}

/// Checks that a semaphore fits at `offset` of `region` and returns its address.
fn place(region: &Region, offset: usize) -> Result<*mut u8> {
  if region.is_private() || !region.is_writable() {
    return Err(region.named(Error::new(
      ErrorKind::InvalidArgument,
      "a semaphore needs a shared, writable region (this one is MAP_PRIVATE or read-only)",
    )));
  }
  match offset.checked_add(Semaphore::SIZE) {
    Some(end) if end <= region.len() => {}
    _ => {
      return Err(region.named(Error::new(
        ErrorKind::InvalidSize,
        format!(
          "a semaphore needs {} bytes at offset {offset}, but the region has {}",
          Semaphore::SIZE,
          region.len()
        ),
      )))
    }
  }
  if !offset.is_multiple_of(Semaphore::ALIGN) {
    return Err(region.named(Error::new(
      ErrorKind::InvalidArgument,
      format!(
        "a semaphore's offset must be a multiple of {} (got {offset})",
        Semaphore::ALIGN
      ),
    )));
  }
  // SAFETY: offset + SIZE <= len (checked above), so the pointer stays inside the mapping.
  Ok(unsafe { region.as_ptr().add(offset) })
}

fn create_named(name: &ObjectName, initial: u32, opts: &SemOptions) -> Result<Semaphore> {
  check_value(initial)?;
  if opts.mode > 0o777 {
    return Err(Error::new(
      ErrorKind::InvalidArgument,
      format!("mode {:#o} is above 0o777", opts.mode),
    ));
  }
  let map = named::create(name, initial, opts.mode)?;
  Ok(Semaphore {
    backing: Backing::Named {
      name: name.clone(),
      map,
    },
  })
}

#[cfg(not(target_vendor = "apple"))]
mod named {
  //! `/dev/shm/sem.NAME`, created, opened and mapped the way glibc's `sem_open` does it.
  use std::ffi::c_void;
  use std::num::NonZeroUsize;
  use std::os::fd::{AsFd, OwnedFd};
  use std::ptr::NonNull;
  use std::time::Instant;

  use nix::errno::Errno;
  use nix::fcntl::OFlag;
  use nix::sys::mman::{MapFlags, ProtFlags};
  use nix::sys::stat::Mode;

  use super::Semaphore;
  use crate::error::{Error, Result};
  use crate::name::ObjectName;

  /// The mapping of one named semaphore's file.
  #[derive(Debug)]
  pub(super) struct Map {
    ptr: NonNull<c_void>,
  }

  fn path(name: &ObjectName) -> String {
    format!("/dev/shm/sem.{}", &name.as_str()[1..])
  }

  fn len() -> NonZeroUsize {
    NonZeroUsize::new(Semaphore::SIZE).expect("not zero")
  }

  fn map(fd: &OwnedFd) -> Result<Map, Errno> {
    // SAFETY: no address hint; a new shared mapping of the file's first SIZE bytes, owned by
    // the returned Map, which unmaps it once.
    let ptr = unsafe {
      nix::sys::mman::mmap(
        None,
        len(),
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_SHARED,
        fd.as_fd(),
        0,
      )
    }?;
    Ok(Map { ptr })
  }

  /// Opens and maps the file, refusing one that another user than `owner` accepts owns.
  pub(super) fn open(name: &ObjectName, owner: crate::Owner) -> Result<Map> {
    let fail = |e| Error::os(e, "sem_open");
    let fd = nix::fcntl::open(
      path(name).as_str(),
      OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
      Mode::empty(),
    )
    .map_err(fail)?;
    // A shorter file is no semaphore, and touching its missing bytes would raise SIGBUS.
    let stat = nix::sys::stat::fstat(fd.as_fd()).map_err(fail)?;
    owner.check(stat.st_uid)?;
    if usize::try_from(stat.st_size).unwrap_or(0) < Semaphore::SIZE {
      return Err(fail(Errno::EINVAL));
    }
    map(&fd).map_err(fail)
  }

  /// A temporary file with the semaphore's bytes and exact mode, linked to the name only
  /// when complete: `link` fails with `EEXIST` if the name exists, so `O_EXCL` holds.
  pub(super) fn create(name: &ObjectName, initial: u32, mode: u32) -> Result<Map> {
    let fail = |e| Error::os(e, "sem_open");
    let (temp, fd) = loop {
      let temp = format!("/dev/shm/sem.{}", &crate::unique_name("tmp").as_str()[1..]);
      match nix::fcntl::open(
        temp.as_str(),
        OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
      ) {
        Ok(fd) => break (temp, fd),
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(fail(e)),
      }
    };
    let linked = (|| {
      let bits = nix::libc::mode_t::try_from(mode).expect("at most 0o777");
      nix::sys::stat::fchmod(fd.as_fd(), Mode::from_bits_truncate(bits))?;
      let mut bytes = [0u8; Semaphore::SIZE];
      bytes[..8].copy_from_slice(&u64::from(initial).to_ne_bytes());
      bytes[8..12].copy_from_slice(&super::SHARED.to_ne_bytes());
      let written = nix::unistd::write(&fd, &bytes)?;
      if written != bytes.len() {
        return Err(Errno::ENOSPC);
      }
      let map = map(&fd)?;
      nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        temp.as_str(),
        nix::fcntl::AT_FDCWD,
        path(name).as_str(),
        nix::fcntl::AtFlags::empty(),
      )?;
      Ok(map)
    })();
    let _ = nix::unistd::unlink(temp.as_str());
    linked.map_err(fail)
  }

  pub(super) fn unlink(name: &ObjectName) -> Result<(), Errno> {
    nix::unistd::unlink(path(name).as_str())
  }

  impl Map {
    #[expect(clippy::unnecessary_wraps, reason = "same signature as the macOS kernel semaphore")]
    pub(super) fn words(&self) -> Option<*mut u8> {
      Some(self.ptr.as_ptr().cast())
    }

    pub(super) fn close(self) -> Result<(), Errno> {
      let this = std::mem::ManuallyDrop::new(self);
      // SAFETY: the mapping is ours and unmapped once: Drop never runs for `this`.
      unsafe { nix::sys::mman::munmap(this.ptr, Semaphore::SIZE) }
    }

    // Only macOS named semaphores take these paths (`words` is never `None` here).
    #[expect(clippy::unused_self, reason = "never called on Linux")]
    pub(super) fn post(&self) -> Result<(), Errno> {
      Err(Errno::ENOSYS)
    }

    #[expect(clippy::unused_self, reason = "never called on Linux")]
    pub(super) fn try_wait(&self) -> Result<bool, Errno> {
      Err(Errno::ENOSYS)
    }

    #[expect(clippy::unused_self, reason = "never called on Linux")]
    pub(super) fn wait_until(&self, _deadline: Option<Instant>) -> Result<bool, Errno> {
      Err(Errno::ENOSYS)
    }
  }

  impl Drop for Map {
    fn drop(&mut self) {
      // SAFETY: the mapping is ours and unmapped once, here (`close` skips Drop). munmap of
      // a valid mapping does not fail, so the result is ignored.
      let _ = unsafe { nix::sys::mman::munmap(self.ptr, Semaphore::SIZE) };
    }
  }
}

#[cfg(target_vendor = "apple")]
mod named {
  //! macOS: named semaphores are kernel objects (`sem_open`), with no bytes to share.
  use std::ffi::c_uint;
  use std::ptr::NonNull;
  use std::time::{Duration, Instant};

  use nix::errno::Errno;

  use crate::error::{Error, Result};
  use crate::name::ObjectName;

  #[derive(Debug)]
  pub(super) struct Map {
    raw: NonNull<libc::sem_t>,
  }

  fn sem_open(name: &ObjectName, oflag: libc::c_int, mode: u32, value: u32) -> Result<Map> {
    // SAFETY: a NUL-terminated name; the variadic mode and value are passed as `unsigned
    // int`, the promoted types sem_open reads with va_arg (and ignored without O_CREAT).
    let ptr = unsafe { libc::sem_open(name.as_c_str().as_ptr(), oflag, c_uint::from(mode), c_uint::from(value)) };
    if ptr == libc::SEM_FAILED {
      return Err(Error::os(Errno::last(), "sem_open"));
    }
    let raw = NonNull::new(ptr).ok_or_else(|| Error::os(Errno::EINVAL, "sem_open"))?;
    Ok(Map { raw })
  }

  /// macOS keeps named semaphores in the kernel, with no file whose owner could be read.
  pub(super) fn open(name: &ObjectName, _owner: crate::Owner) -> Result<Map> {
    sem_open(name, 0, 0, 0)
  }

  /// XNU applies the umask to a new semaphore and offers no way to change its mode later.
  pub(super) fn create(name: &ObjectName, initial: u32, mode: u32) -> Result<Map> {
    sem_open(name, libc::O_CREAT | libc::O_EXCL, mode, initial)
  }

  pub(super) fn unlink(name: &ObjectName) -> Result<(), Errno> {
    // SAFETY: a NUL-terminated name; sem_unlink only reads it.
    Errno::result(unsafe { libc::sem_unlink(name.as_c_str().as_ptr()) }).map(drop)
  }

  impl Map {
    #[expect(clippy::unused_self, reason = "same signature as the Linux mapping")]
    pub(super) fn words(&self) -> Option<*mut u8> {
      None
    }

    pub(super) fn close(self) -> Result<(), Errno> {
      let this = std::mem::ManuallyDrop::new(self);
      // SAFETY: `raw` came from sem_open and is closed once: Drop never runs for `this`.
      Errno::result(unsafe { libc::sem_close(this.raw.as_ptr()) }).map(drop)
    }

    pub(super) fn post(&self) -> Result<(), Errno> {
      // SAFETY: `raw` is a live semaphore from sem_open.
      Errno::result(unsafe { libc::sem_post(self.raw.as_ptr()) }).map(drop)
    }

    pub(super) fn try_wait(&self) -> Result<bool, Errno> {
      loop {
        // SAFETY: `raw` is a live semaphore from sem_open.
        match Errno::result(unsafe { libc::sem_trywait(self.raw.as_ptr()) }) {
          Ok(_) => return Ok(true),
          Err(Errno::EAGAIN) => return Ok(false),
          Err(Errno::EINTR) => {}
          Err(e) => return Err(e),
        }
      }
    }

    /// No `sem_timedwait` on macOS: poll `sem_trywait` with a pause that grows to 10 ms.
    pub(super) fn wait_until(&self, deadline: Option<Instant>) -> Result<bool, Errno> {
      let mut pause = Duration::from_micros(100);
      loop {
        if self.try_wait()? {
          return Ok(true);
        }
        let now = Instant::now();
        let left = match deadline {
          Some(at) if now >= at => return Ok(false),
          Some(at) => at - now,
          None => pause,
        };
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(10));
      }
    }
  }

  impl Drop for Map {
    fn drop(&mut self) {
      // SAFETY: `raw` came from sem_open and is closed once, here (`close` skips Drop).
      // sem_close fails only for an invalid pointer, which we never hold.
      let _ = unsafe { libc::sem_close(self.raw.as_ptr()) };
    }
  }
}
