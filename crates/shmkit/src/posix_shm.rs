//! Technique 3: named POSIX shared memory, for unrelated processes. See `shm_open(3)`,
//! `shm_unlink(3)` and `shm_overview(7)`.
//!
//! The object holds exactly the caller's bytes (no header), so C, Rust and Python
//! (`multiprocessing.shared_memory`) programs interoperate by name. Creating never replaces
//! an existing object (`O_EXCL`), new objects get mode `0o600` unless asked otherwise, and
//! nothing here unlinks a name implicitly except a `create` undoing its own half-made object.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::unistd::ftruncate;

use crate::error::{Error, ErrorKind, Result, SyscallExt};
use crate::name::ObjectName;
use crate::region::{check_len, Kind, MapOptions, Region};

impl Region {
  /// Creates the named object `name` with `len` bytes (all zero) and maps it, `MAP_SHARED`.
  /// Fails with `EEXIST` if the name exists. Mode `0o600`.
  ///
  /// ```
  /// use shmkit::{Region, unique_name, unlink};
  /// let name = unique_name("doc");
  /// let a = Region::create(&name, 4096).unwrap();
  /// a.write_at(0, b"ping").unwrap();
  /// let b = Region::open(&name).unwrap();
  /// let mut out = [0u8; 4];
  /// b.read_at(0, &mut out).unwrap();
  /// assert_eq!(&out, b"ping");
  /// unlink(&name).unwrap();
  /// ```
  ///
  /// # Errors
  /// [`ErrorKind::InvalidName`], [`ErrorKind::InvalidSize`]; `EEXIST`, `EACCES`; `ENOSPC`
  /// when the backing store (`/dev/shm`) has less free space than `len`.
  pub fn create<N>(name: N, len: usize) -> Result<Region>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    Self::create_with(name, len, &MapOptions::default())
  }

  /// [`Region::create`] with options: [`MapOptions::mode`], [`MapOptions::reserve`],
  /// [`MapOptions::private`].
  ///
  /// # Errors
  /// As [`Region::create`].
  pub fn create_with<N>(name: N, len: usize, opts: &MapOptions) -> Result<Region>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    let name = name.try_into()?;
    create_named(&name, len, opts).map_err(|e| e.with_name(name.as_str()))
  }

  /// Opens the existing named object `name` and maps all of it; the length comes from
  /// `fstat`. A process that only opens never needs to unlink.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidName`]; `ENOENT` if there is no such object, `EACCES`.
  pub fn open<N>(name: N) -> Result<Region>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    Self::open_with(name, &MapOptions::default())
  }

  /// [`Region::open`] with options: [`MapOptions::read_only`], [`MapOptions::private`].
  ///
  /// # Errors
  /// As [`Region::open`].
  pub fn open_with<N>(name: N, opts: &MapOptions) -> Result<Region>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    let name = name.try_into()?;
    open_named(&name, opts).map_err(|e| e.with_name(name.as_str()))
  }

  /// Opens `name` if it exists (keeping its size and mode), or creates it with `len` bytes.
  /// Check [`Region::len`] when the size matters: an existing object is never resized.
  ///
  /// # Errors
  /// As [`Region::create`] and [`Region::open`].
  pub fn open_or_create<N>(name: N, len: usize) -> Result<Region>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    Self::open_or_create_with(name, len, &MapOptions::default())
  }

  /// [`Region::open_or_create`] with options.
  ///
  /// # Errors
  /// As [`Region::create`] and [`Region::open`].
  pub fn open_or_create_with<N>(name: N, len: usize, opts: &MapOptions) -> Result<Region>
  where
    N: TryInto<ObjectName, Error = Error>,
  {
    let name = name.try_into()?;
    check_len(len)?;
    // Another process may create or unlink the name between our two calls; a few rounds
    // settle any such race.
    let mut last = None;
    for _ in 0..8 {
      match create_named(&name, len, opts) {
        Err(e) if e.errno() == Some(Errno::EEXIST) => {}
        other => return other.map_err(|e| e.with_name(name.as_str())),
      }
      match open_named(&name, opts) {
        Err(e) if e.errno() == Some(Errno::ENOENT) => last = Some(e),
        other => return other.map_err(|e| e.with_name(name.as_str())),
      }
    }
    Err(last.expect("the loop ran").with_name(name.as_str()))
  }
}

/// Removes the name `name`. Processes that have it mapped keep their mapping; the memory is
/// freed when the last one unmaps. Never called implicitly.
///
/// # Errors
/// [`ErrorKind::InvalidName`]; `ENOENT` if there is no such object.
pub fn unlink<N>(name: N) -> Result<()>
where
  N: TryInto<ObjectName, Error = Error>,
{
  let name = name.try_into()?;
  shm_unlink(name.as_c_str())
    .syscall("shm_unlink")
    .map_err(|e| e.with_name(name.as_str()))
}

fn create_named(name: &ObjectName, len: usize, opts: &MapOptions) -> Result<Region> {
  let len = check_len(len)?;
  let mode = opts.check_mode()?;
  check_platform(opts)?;
  ensure_backing_space(len.get())?;
  let fd = shm_open(name.as_c_str(), OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR, mode).syscall("shm_open")?;
  // From here on the name is ours: undo it if the rest fails, so no half-made object stays.
  let sized = (|| {
    // shm_open's mode is narrowed by the umask; set it exactly as asked.
    fchmod(&fd, mode).syscall("fchmod")?;
    let size = nix::libc::off_t::try_from(len.get())
      .map_err(|_| Error::new(ErrorKind::InvalidSize, "the size does not fit in off_t"))?;
    ftruncate(&fd, size).syscall("ftruncate")?;
    if opts.is_reserve() {
      reserve(&fd, size)?;
    }
    Region::map_fd(fd.as_fd(), len, opts)
  })();
  match sized {
    Ok(ptr) => Ok(Region::from_raw(ptr, len, Kind::Named, opts).with_name(name.as_str().to_owned())),
    Err(e) => {
      let _ = shm_unlink(name.as_c_str());
      Err(e)
    }
  }
}

fn open_named(name: &ObjectName, opts: &MapOptions) -> Result<Region> {
  check_platform(opts)?;
  let access = if opts.is_read_only() {
    OFlag::O_RDONLY
  } else {
    OFlag::O_RDWR
  };
  let fd = shm_open(name.as_c_str(), access, Mode::empty()).syscall("shm_open")?;
  opts.get_owner().check(fstat(&fd).syscall("fstat")?.st_uid)?;
  let len = settled_size(&fd)?;
  let ptr = Region::map_fd(fd.as_fd(), len, opts)?;
  Ok(Region::from_raw(ptr, len, Kind::Named, opts).with_name(name.as_str().to_owned()))
}

/// The object's size from `fstat`. A creator sizes its object right after `shm_open`, so a
/// size of 0 may be a creation in progress: look again briefly before calling it empty.
fn settled_size(fd: &OwnedFd) -> Result<std::num::NonZeroUsize> {
  for attempt in 0..50 {
    let size = fstat(fd).syscall("fstat")?.st_size;
    if size > 0 {
      let size = usize::try_from(size).map_err(|_| Error::new(ErrorKind::InvalidSize, "object too large to map"))?;
      return check_len(size);
    }
    if attempt < 49 {
      std::thread::sleep(std::time::Duration::from_millis(2));
    }
  }
  // mmap of 0 bytes is EINVAL: say so the way the kernel would.
  Err(Error::os(Errno::EINVAL, "mmap"))
}

#[cfg(target_os = "linux")]
fn ensure_backing_space(len: usize) -> Result<()> {
  // A tmpfs smaller than the object would accept it and then SIGBUS on first touch of a
  // page it cannot supply; refuse up front instead (containers often have 64 MB).
  let Ok(stat) = nix::sys::statvfs::statvfs("/dev/shm") else {
    return Ok(()); // no /dev/shm to ask; the kernel decides
  };
  let free = u128::from(stat.blocks_available()) * u128::from(stat.fragment_size());
  if stat.blocks() > 0 && (len as u128) > free {
    return Err(Error::os(Errno::ENOSPC, "ftruncate"));
  }
  Ok(())
}

#[cfg(not(target_os = "linux"))]
#[allow(clippy::unnecessary_wraps)] // the Linux version's signature
fn ensure_backing_space(_len: usize) -> Result<()> {
  Ok(())
}

#[cfg(target_os = "linux")]
fn reserve(fd: &OwnedFd, size: nix::libc::off_t) -> Result<()> {
  nix::fcntl::posix_fallocate(fd, 0, size).syscall("posix_fallocate")
}

#[cfg(not(target_os = "linux"))]
fn reserve(_fd: &OwnedFd, _size: nix::libc::off_t) -> Result<()> {
  Err(Error::new(
    ErrorKind::Unsupported,
    "reserve (posix_fallocate) is not available for shared memory here",
  ))
}

#[cfg(target_vendor = "apple")]
fn check_platform(opts: &MapOptions) -> Result<()> {
  if opts.is_private() {
    return Err(Error::new(
      ErrorKind::Unsupported,
      "macOS maps shared memory objects only MAP_SHARED",
    ));
  }
  Ok(())
}

#[cfg(not(target_vendor = "apple"))]
#[expect(clippy::unnecessary_wraps, reason = "same signature as the macOS check")]
fn check_platform(_opts: &MapOptions) -> Result<()> {
  Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn shm_open_anonymous(len: std::num::NonZeroUsize, mode: Mode) -> Result<OwnedFd> {
  // Used where memfd_create is missing: a fresh name, unlinked at once, leaves only the fd.
  let name = crate::name::unique_name("anon");
  let fd = shm_open(name.as_c_str(), OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR, mode).syscall("shm_open")?;
  let _ = shm_unlink(name.as_c_str());
  let size = nix::libc::off_t::try_from(len.get())
    .map_err(|_| Error::new(ErrorKind::InvalidSize, "the size does not fit in off_t"))?;
  ftruncate(&fd, size).syscall("ftruncate")?;
  Ok(fd)
}
