//! POSIX semaphores, named and in a region: see `sem_overview(7)`, `sem_open(3)`,
//! `sem_init(3)`, `sem_wait(3)`, `sem_post(3)`.
//!
//! nix wraps no semaphore call, so this module wraps libc's the nix way: `Errno::result` on
//! every return, a `NonNull<sem_t>` that is never null, and errors tagged with the call and
//! the semaphore's name.
//!
//! Two kinds, one type:
//! - **named** ([`Semaphore::create`], [`Semaphore::open`], [`Semaphore::open_or_create`]):
//!   any process that knows the name (on Linux the file `/dev/shm/sem.NAME` with glibc,
//!   `/dev/shm/NAME` with musl); removed by
//!   [`Semaphore::unlink`] only.
//! - **in a region** ([`Semaphore::init_in`], [`Semaphore::at`]): `sem_init(pshared = 1)` at
//!   an offset of a shared [`Region`], used by every process that maps the region (forked
//!   children, or processes that map the same named or memfd region). The semaphore keeps an
//!   `Arc<Region>`, so the memory outlives every handle to it.
//!
//! `EINTR` is retried everywhere; timed waits recompute the time left after each
//! interruption, against the monotonic clock.
//!
//! # Platforms
//! Linux (glibc, musl): everything. macOS has named semaphores only: `init_in`/`at` and
//! [`Semaphore::value`] return [`ErrorKind::Unsupported`], and [`Semaphore::wait_timeout`] is
//! emulated by polling `sem_trywait` with a growing pause (at most 10 ms), because macOS has
//! no `sem_timedwait`. There, the umask also narrows the mode of a new named semaphore
//! (macOS gives no way to change it afterwards).

use std::ffi::c_uint;
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::error::{Error, ErrorKind, Result};
use crate::name::ObjectName;
use crate::owner::Owner;
use crate::region::Region;

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

/// What owns the `sem_t`.
#[derive(Debug)]
enum Backing {
  /// From `sem_open`: released with `sem_close`.
  Named(ObjectName),
  /// Inside a region, which stays mapped while the semaphore exists.
  Region { region: Arc<Region>, offset: usize },
}

/// A POSIX semaphore shared between processes.
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
  raw: NonNull<libc::sem_t>,
  backing: Backing,
}

// SAFETY: POSIX semaphore operations are thread-safe; the pointer stays valid for the life of
// the handle (a named semaphore until sem_close in Drop, an in-region one while the Arc keeps
// the region mapped).
unsafe impl Send for Semaphore {}
// SAFETY: see `Send`: every operation through `&Semaphore` is a thread-safe sem_* call.
unsafe impl Sync for Semaphore {}

impl Semaphore {
  /// The size of a `sem_t` in bytes: what an in-region semaphore occupies (32 on 64-bit
  /// Linux).
  pub const SIZE: usize = size_of::<libc::sem_t>();

  /// The alignment an in-region semaphore's offset must have, counted from the start of the
  /// mapping (which is page-aligned). 8 on 64-bit Linux.
  pub const ALIGN: usize = align_of::<libc::sem_t>();

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
  /// [`ErrorKind::InvalidName`]; `ENOENT` if there is no such semaphore, `EACCES`.
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
    open_named(&name, opts.owner).map_err(|e| e.with_name(name.as_str()))
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
      match open_named(&name, opts.owner) {
        Err(e) if e.errno() == Some(Errno::ENOENT) => last = Some(e),
        other => return other.map_err(|e| e.with_name(name.as_str())),
      }
    }
    Err(last.expect("the loop ran").with_name(name.as_str()))
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
    // SAFETY: a NUL-terminated name; sem_unlink only reads it.
    let ret = unsafe { libc::sem_unlink(name.as_c_str().as_ptr()) };
    Errno::result(ret)
      .map(drop)
      .map_err(|e| Error::os(e, "sem_unlink").with_name(name.as_str()))
  }

  /// Initialises a process-shared semaphore (`sem_init(pshared = 1)`) with value `initial`
  /// at byte `offset` of `region`, and returns a handle to it. Other processes that map the
  /// same memory use it through [`Semaphore::at`] (or inherit this handle across `fork`).
  ///
  /// The bytes `offset .. offset + SIZE` belong to the semaphore from now on: writing over
  /// them while it is in use breaks it (POSIX calls that undefined; here the operations then
  /// fail with `EINVAL` where the damage is detectable). Initialising a semaphore that
  /// processes are using resets it under them. The region stays mapped as long as the
  /// semaphore exists, even after every other handle to the region is gone.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidSize`] when the semaphore does not fit at `offset`;
  /// [`ErrorKind::InvalidArgument`] for a misaligned `offset` (see [`Semaphore::ALIGN`]), a
  /// `MAP_PRIVATE` or read-only region (the semaphore would not be shared), or `initial`
  /// above [`Semaphore::VALUE_MAX`]; [`ErrorKind::Unsupported`] on macOS.
  pub fn init_in(region: Arc<Region>, offset: usize, initial: u32) -> Result<Semaphore> {
    check_value(initial)?;
    let raw = place(&region, offset)?;
    imp::init(raw, initial).map_err(|e| region.named(Error::os(e, "sem_init")))?;
    Ok(Semaphore {
      raw,
      backing: Backing::Region { region, offset },
    })
  }

  /// Attaches to the semaphore that [`Semaphore::init_in`] (here or in another process, or
  /// a C program's `sem_init(pshared = 1)`) placed at byte `offset` of `region`. Nothing is
  /// initialised.
  ///
  /// # Errors
  /// As [`Semaphore::init_in`]; `EINVAL` (syscall `sem_init`) when the bytes at `offset`
  /// visibly hold no process-shared semaphore (checked on glibc, where such bytes would
  /// otherwise abort the process on the first wait).
  pub fn at(region: Arc<Region>, offset: usize) -> Result<Semaphore> {
    let raw = place(&region, offset)?;
    imp::check_intact(raw).map_err(|e| region.named(Error::os(e, "sem_init")))?;
    Ok(Semaphore {
      raw,
      backing: Backing::Region { region, offset },
    })
  }

  /// Adds one to the value, waking one waiter (`sem_post`). Async-signal-safe, so a forked
  /// child may call it.
  ///
  /// # Errors
  /// `EOVERFLOW` at [`Semaphore::VALUE_MAX`]; `EINVAL` for a damaged in-region semaphore.
  pub fn post(&self) -> Result<()> {
    imp::check_intact(self.raw).map_err(|e| self.err(e, "sem_post"))?;
    // SAFETY: `raw` is a live semaphore for the life of `self` (see the type's invariant).
    let ret = unsafe { libc::sem_post(self.raw.as_ptr()) };
    Errno::result(ret).map(drop).map_err(|e| self.err(e, "sem_post"))
  }

  /// Takes one from the value if it is above zero, without blocking (`sem_trywait`).
  /// Returns whether it did.
  ///
  /// # Errors
  /// `EINVAL` for a damaged in-region semaphore.
  pub fn try_wait(&self) -> Result<bool> {
    loop {
      imp::check_intact(self.raw).map_err(|e| self.err(e, "sem_trywait"))?;
      // SAFETY: `raw` is a live semaphore for the life of `self`.
      let ret = unsafe { libc::sem_trywait(self.raw.as_ptr()) };
      match Errno::result(ret) {
        Ok(_) => return Ok(true),
        Err(Errno::EAGAIN) => return Ok(false),
        Err(Errno::EINTR) => {}
        Err(e) => return Err(self.err(e, "sem_trywait")),
      }
    }
  }

  /// Blocks until the value is above zero, then takes one (`sem_wait`). Signals that
  /// interrupt the wait (`EINTR`) are retried.
  ///
  /// # Errors
  /// `EINVAL` for a damaged in-region semaphore.
  pub fn wait(&self) -> Result<()> {
    loop {
      imp::check_intact(self.raw).map_err(|e| self.err(e, "sem_wait"))?;
      // SAFETY: `raw` is a live semaphore for the life of `self`.
      let ret = unsafe { libc::sem_wait(self.raw.as_ptr()) };
      match Errno::result(ret) {
        Ok(_) => return Ok(()),
        Err(Errno::EINTR) => {}
        Err(e) => return Err(self.err(e, "sem_wait")),
      }
    }
  }

  /// Like [`Semaphore::wait`], but gives up after `timeout`: returns `true` when it took one,
  /// `false` when the time ran out. A zero `timeout` tries once. Interruptions by signals
  /// are retried with the time that is left; the deadline is kept on the monotonic clock,
  /// so changes of the wall clock do not shorten or stretch it.
  ///
  /// # Errors
  /// `EINVAL` for a damaged in-region semaphore.
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
    imp::wait_until(self.raw, deadline).map_err(|e| self.err(e, "sem_timedwait"))
  }

  /// The current value (`sem_getvalue`). Other processes may change it at any moment, so it
  /// is a snapshot for diagnostics, never a reason to skip a wait.
  ///
  /// # Errors
  /// [`ErrorKind::Unsupported`] on macOS; `EINVAL` for a damaged in-region semaphore.
  pub fn value(&self) -> Result<u32> {
    imp::value(self.raw).map_err(|e| match e {
      Some(errno) => self.err(errno, "sem_getvalue"),
      None => Error::new(ErrorKind::Unsupported, "macOS does not report a semaphore's value"),
    })
  }

  /// The name (with its leading `/`) of a named semaphore; `None` for one in a region.
  #[must_use]
  pub fn name(&self) -> Option<&str> {
    match &self.backing {
      Backing::Named(name) => Some(name.as_str()),
      Backing::Region { .. } => None,
    }
  }

  /// The region an in-region semaphore lives in.
  #[must_use]
  pub fn region(&self) -> Option<&Arc<Region>> {
    match &self.backing {
      Backing::Named(_) => None,
      Backing::Region { region, .. } => Some(region),
    }
  }

  /// The byte offset of an in-region semaphore inside its region.
  #[must_use]
  pub fn offset(&self) -> Option<usize> {
    match &self.backing {
      Backing::Named(_) => None,
      Backing::Region { offset, .. } => Some(*offset),
    }
  }

  /// Releases this handle now and reports a failure, which `Drop` cannot: `sem_close` for a
  /// named semaphore (the name stays until [`Semaphore::unlink`]); for an in-region one it
  /// drops the handle's hold on the region. The semaphore itself is untouched.
  ///
  /// # Errors
  /// The `sem_close` failure; the handle is gone either way.
  pub fn close(self) -> Result<()> {
    let this = std::mem::ManuallyDrop::new(self);
    // SAFETY: `this` is never dropped or used again, so the backing is moved out only once.
    let backing = unsafe { std::ptr::read(&raw const this.backing) };
    match backing {
      Backing::Named(name) => {
        // SAFETY: `raw` came from sem_open, and Drop never runs for `this`, so it is closed
        // exactly once, here.
        let ret = unsafe { libc::sem_close(this.raw.as_ptr()) };
        Errno::result(ret)
          .map(drop)
          .map_err(|e| Error::os(e, "sem_close").with_name(name.as_str()))
      }
      // Dropping the backing releases this handle's hold on the region.
      Backing::Region { .. } => Ok(()),
    }
  }

  /// Destroys an in-region semaphore (`sem_destroy`), which only this explicit call ever
  /// does. No process may use it afterwards until it is initialised again.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidArgument`] for a named semaphore (remove those with
  /// [`Semaphore::unlink`]); `EINVAL` for a damaged one.
  pub fn destroy(self) -> Result<()> {
    match &self.backing {
      Backing::Named(_) => Err(Error::new(
        ErrorKind::InvalidArgument,
        "named semaphores are removed with unlink, not destroyed",
      )),
      Backing::Region { .. } => {
        imp::check_intact(self.raw).map_err(|e| self.err(e, "sem_destroy"))?;
        imp::destroy(self.raw).map_err(|e| self.err(e, "sem_destroy"))
      }
    }
  }

  fn err(&self, errno: Errno, syscall: &'static str) -> Error {
    let error = Error::os(errno, syscall);
    match &self.backing {
      Backing::Named(name) => error.with_name(name.as_str()),
      Backing::Region { region, .. } => region.named(error),
    }
  }
}

impl Drop for Semaphore {
  fn drop(&mut self) {
    if let Backing::Named(_) = self.backing {
      // SAFETY: `raw` came from sem_open and is closed once, here (`close` skips Drop).
      // sem_close fails only for an invalid pointer, which we never hold, so the result is
      // ignored (Drop cannot report; `close` does).
      let _ = unsafe { libc::sem_close(self.raw.as_ptr()) };
    }
  }
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
fn place(region: &Region, offset: usize) -> Result<NonNull<libc::sem_t>> {
  imp::supported()?;
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
  // SAFETY: offset + SIZE <= len (checked above), so the pointer stays inside the mapping.
  let ptr = unsafe { region.as_ptr().add(offset) };
  if ptr.align_offset(Semaphore::ALIGN) != 0 {
    return Err(region.named(Error::new(
      ErrorKind::InvalidArgument,
      format!(
        "a semaphore's offset must be a multiple of {} (got {offset})",
        Semaphore::ALIGN
      ),
    )));
  }
  Ok(NonNull::new(ptr.cast()).expect("a mapping is never at address 0"))
}

fn create_named(name: &ObjectName, initial: u32, opts: &SemOptions) -> Result<Semaphore> {
  check_value(initial)?;
  if opts.mode > 0o777 {
    return Err(Error::new(
      ErrorKind::InvalidArgument,
      format!("mode {:#o} is above 0o777", opts.mode),
    ));
  }
  let raw = sem_open(name, libc::O_CREAT | libc::O_EXCL, opts.mode, initial)?;
  let sem = Semaphore {
    raw,
    backing: Backing::Named(name.clone()),
  };
  // The name is ours now: if the mode cannot be made exact, undo it rather than leave a
  // semaphore with other permissions than asked.
  if let Err(e) = imp::exact_mode(name, opts.mode) {
    drop(sem);
    let _ = Semaphore::unlink(name);
    return Err(e);
  }
  Ok(sem)
}

fn open_named(name: &ObjectName, owner: Owner) -> Result<Semaphore> {
  let raw = sem_open(name, 0, 0, 0)?;
  let sem = Semaphore {
    raw,
    backing: Backing::Named(name.clone()),
  };
  imp::check_owner(name, owner)?;
  Ok(sem)
}

/// `sem_open(3)`, with `SEM_FAILED` turned into the errno.
fn sem_open(name: &ObjectName, oflag: libc::c_int, mode: u32, value: u32) -> Result<NonNull<libc::sem_t>> {
  // SAFETY: a NUL-terminated name; the variadic mode and value are passed as `unsigned int`,
  // the promoted types sem_open reads with va_arg (and ignored without O_CREAT).
  let ptr = unsafe { libc::sem_open(name.as_c_str().as_ptr(), oflag, c_uint::from(mode), c_uint::from(value)) };
  if ptr == libc::SEM_FAILED {
    return Err(Error::os(Errno::last(), "sem_open"));
  }
  // On Linux SEM_FAILED is null, so this is never None there; on macOS it is -1.
  NonNull::new(ptr).ok_or_else(|| Error::os(Errno::EINVAL, "sem_open"))
}

#[cfg(not(target_vendor = "apple"))]
mod imp {
  use std::ffi::c_uint;
  use std::ptr::NonNull;
  use std::time::Instant;

  use nix::errno::Errno;

  use crate::error::{Error, Result, SyscallExt};
  use crate::name::ObjectName;

  #[expect(clippy::unnecessary_wraps, reason = "same signature as the macOS stub")]
  pub(super) fn supported() -> Result<()> {
    Ok(())
  }

  pub(super) fn init(raw: NonNull<libc::sem_t>, initial: u32) -> Result<(), Errno> {
    // SAFETY: `raw` points to SIZE writable, aligned bytes of a shared mapping (checked by
    // `place`); pshared = 1 because other processes map the same memory.
    let ret = unsafe { libc::sem_init(raw.as_ptr(), 1, c_uint::from(initial)) };
    Errno::result(ret).map(drop)
  }

  pub(super) fn destroy(raw: NonNull<libc::sem_t>) -> Result<(), Errno> {
    // SAFETY: `raw` points to an initialised semaphore inside a live mapping.
    let ret = unsafe { libc::sem_destroy(raw.as_ptr()) };
    Errno::result(ret).map(drop)
  }

  pub(super) fn value(raw: NonNull<libc::sem_t>) -> Result<u32, Option<Errno>> {
    check_intact(raw).map_err(Some)?;
    let mut value: libc::c_int = 0;
    // SAFETY: `raw` is a live semaphore; `value` is a valid out-pointer.
    let ret = unsafe { libc::sem_getvalue(raw.as_ptr(), &raw mut value) };
    Errno::result(ret).map_err(Some)?;
    // Linux reports 0, never a negative count, when processes are waiting.
    Ok(u32::try_from(value).unwrap_or(0))
  }

  pub(super) fn wait_until(raw: NonNull<libc::sem_t>, deadline: Instant) -> Result<bool, Errno> {
    loop {
      check_intact(raw)?;
      // sem_timedwait wants an absolute CLOCK_REALTIME time; derive it from the time left on
      // the monotonic clock at every round, so interruptions and wall-clock jumps do not
      // change the deadline.
      let left = deadline.saturating_duration_since(Instant::now());
      let Some(abstime) = crate::clock::realtime_after(left) else {
        // Too far in the future for a timespec: no deadline at all.
        // SAFETY: `raw` is a live semaphore.
        let ret = unsafe { libc::sem_wait(raw.as_ptr()) };
        match Errno::result(ret) {
          Ok(_) => return Ok(true),
          Err(Errno::EINTR) => continue,
          Err(e) => return Err(e),
        }
      };
      // SAFETY: `raw` is a live semaphore; `abstime` is a valid, normalised timespec.
      let ret = unsafe { libc::sem_timedwait(raw.as_ptr(), &raw const abstime) };
      match Errno::result(ret) {
        Ok(_) => return Ok(true),
        Err(Errno::EINTR) => {}
        Err(Errno::ETIMEDOUT) => {
          if Instant::now() >= deadline {
            return Ok(false);
          }
          // The wall clock jumped forward: wait out the rest.
        }
        Err(e) => return Err(e),
      }
    }
  }

  /// Makes a new named semaphore's mode exactly `mode`. `sem_open` applies the umask, and a
  /// `sem_t` has no descriptor to `fchmod`; on Linux the semaphore is a file in `/dev/shm`
  /// (glibc: `sem.NAME`; musl: `NAME`, beside the shared-memory objects), so change that.
  /// Until then the mode can only be narrower than asked (the umask never widens), so nobody
  /// gets in early.
  pub(super) fn exact_mode(name: &ObjectName, mode: u32) -> Result<()> {
    let body = &name.as_str()[1..];
    let path = if cfg!(target_env = "musl") {
      format!("/dev/shm/{body}")
    } else {
      format!("/dev/shm/sem.{body}")
    };
    let bits = libc::mode_t::try_from(mode).expect("at most 0o777");
    nix::sys::stat::fchmodat(
      nix::fcntl::AT_FDCWD,
      path.as_str(),
      nix::sys::stat::Mode::from_bits_truncate(bits),
      nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .syscall("chmod")
    .map_err(|e: Error| e.with_name(name.as_str()))
  }

  /// Refuses a semaphore whose file in `/dev/shm` belongs to another user than `owner`
  /// accepts. Checked after `sem_open`: only the owner of a name can remove and recreate it
  /// (`/dev/shm` is sticky), so a file we see owned by us was not swapped in by a stranger.
  pub(super) fn check_owner(name: &ObjectName, owner: crate::Owner) -> Result<()> {
    if owner == crate::Owner::Any {
      return Ok(());
    }
    let stat = nix::sys::stat::stat(file_path(name).as_str()).syscall("stat")?;
    owner.check(stat.st_uid)
  }

  /// The file behind a named semaphore (glibc: `sem.NAME`; musl: `NAME`).
  fn file_path(name: &ObjectName) -> String {
    let body = &name.as_str()[1..];
    if cfg!(target_env = "musl") {
      format!("/dev/shm/{body}")
    } else {
      format!("/dev/shm/sem.{body}")
    }
  }

  /// glibc's 64-bit `struct new_sem` is `{ u64 data; int private; int pad; }`, and `private`
  /// is `FUTEX_SHARED` (128) for every process-shared semaphore (`sem_init(pshared = 1)` and
  /// `sem_open`). Any other value makes glibc pass a bogus futex operation to the kernel and
  /// then abort the whole process ("The futex facility returned an unexpected error code").
  /// Any write over shared memory can put one there, so look before every call and report
  /// `EINVAL`, which is what POSIX says for "not a valid semaphore".
  #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
  pub(super) fn check_intact(raw: NonNull<libc::sem_t>) -> Result<(), Errno> {
    const FUTEX_SHARED: i32 = 128;
    // SAFETY: a sem_t is 32 bytes, so byte 8 is inside it.
    let word = unsafe { raw.as_ptr().cast::<u8>().add(8) };
    #[expect(clippy::cast_ptr_alignment, reason = "sem_t is 8-aligned, so byte 8 is 4-aligned")]
    let word = word.cast::<i32>();
    // SAFETY: `word` is valid and 4-aligned for the life of the semaphore; the read is
    // atomic because other processes may write the word at the same time.
    let private = unsafe { std::sync::atomic::AtomicI32::from_ptr(word) }.load(std::sync::atomic::Ordering::Relaxed);
    if private == FUTEX_SHARED {
      Ok(())
    } else {
      Err(Errno::EINVAL)
    }
  }

  /// musl (and 32-bit glibc, which we do not ship) never aborts on a damaged semaphore.
  #[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
  #[expect(clippy::unnecessary_wraps, reason = "same signature as the glibc check")]
  pub(super) fn check_intact(_raw: NonNull<libc::sem_t>) -> Result<(), Errno> {
    Ok(())
  }
}

#[cfg(target_vendor = "apple")]
mod imp {
  use std::ptr::NonNull;
  use std::time::{Duration, Instant};

  use nix::errno::Errno;

  use crate::error::{Error, ErrorKind, Result};
  use crate::name::ObjectName;

  /// macOS has no unnamed semaphores: `sem_init` fails with `ENOSYS`.
  pub(super) fn supported() -> Result<()> {
    Err(Error::new(
      ErrorKind::Unsupported,
      "macOS has no process-shared unnamed semaphores (sem_init); use a named semaphore",
    ))
  }

  pub(super) fn init(_raw: NonNull<libc::sem_t>, _initial: u32) -> Result<(), Errno> {
    Err(Errno::ENOSYS)
  }

  pub(super) fn destroy(_raw: NonNull<libc::sem_t>) -> Result<(), Errno> {
    Err(Errno::ENOSYS)
  }

  pub(super) fn value(_raw: NonNull<libc::sem_t>) -> Result<u32, Option<Errno>> {
    Err(None)
  }

  /// No `sem_timedwait` on macOS: poll `sem_trywait` with a pause that grows to 10 ms.
  pub(super) fn wait_until(raw: NonNull<libc::sem_t>, deadline: Instant) -> Result<bool, Errno> {
    let mut pause = Duration::from_micros(100);
    loop {
      // SAFETY: `raw` is a live semaphore from sem_open.
      let ret = unsafe { libc::sem_trywait(raw.as_ptr()) };
      match Errno::result(ret) {
        Ok(_) => return Ok(true),
        Err(Errno::EAGAIN | Errno::EINTR) => {}
        Err(e) => return Err(e),
      }
      let now = Instant::now();
      if now >= deadline {
        return Ok(false);
      }
      std::thread::sleep(pause.min(deadline - now));
      pause = (pause * 2).min(Duration::from_millis(10));
    }
  }

  /// macOS keeps named semaphores in the kernel, with no file whose owner could be read.
  #[expect(clippy::unnecessary_wraps, reason = "same signature as the Linux check")]
  pub(super) fn check_owner(_name: &ObjectName, _owner: crate::Owner) -> Result<()> {
    Ok(())
  }

  /// XNU applies the umask to a new semaphore and offers no way to change its mode later.
  #[expect(clippy::unnecessary_wraps, reason = "same signature as the Linux version")]
  pub(super) fn exact_mode(_name: &ObjectName, _mode: u32) -> Result<()> {
    Ok(())
  }

  #[expect(clippy::unnecessary_wraps, reason = "same signature as the glibc check")]
  pub(super) fn check_intact(_raw: NonNull<libc::sem_t>) -> Result<(), Errno> {
    Ok(())
  }
}
