//! Fd-backed anonymous regions: `memfd_create(2)` on Linux (a shared-memory emulation with an
//! immediately unlinked name elsewhere). The memory has no name but has a descriptor, so it
//! crosses `exec`: hand the fd to a spawned child and map it there with [`Region::from_fd`].

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::stat::fstat;

use crate::error::{Error, ErrorKind, Result, SyscallExt};
use crate::region::{check_len, Kind, MapOptions, Region};

impl Region {
  /// Creates an anonymous fd-backed object of `len` bytes and maps it `MAP_SHARED`.
  /// [`Region::fd`] returns the descriptor (close-on-exec; pass it to a child through its
  /// stdio, which dups it).
  ///
  /// ```
  /// let region = shmkit::Region::memfd(4096).unwrap();
  /// assert!(region.fd().is_some());
  /// ```
  ///
  /// # Errors
  /// [`ErrorKind::InvalidSize`]; `memfd_create`, `ftruncate` or `mmap` failures.
  pub fn memfd(len: usize) -> Result<Region> {
    Self::memfd_with(len, &MapOptions::default())
  }

  /// [`Region::memfd`] with options: [`MapOptions::reserve`], [`MapOptions::private`],
  /// [`MapOptions::growable`].
  ///
  /// On Linux the object is sealed once sized: `F_SEAL_SHRINK` always (a process it is
  /// shared with cannot truncate it and make our next access fault), `F_SEAL_GROW` unless
  /// [`MapOptions::growable`].
  ///
  /// # Errors
  /// As [`Region::memfd`].
  pub fn memfd_with(len: usize, opts: &MapOptions) -> Result<Region> {
    let len = check_len(len)?;
    let fd = imp::create(len, opts)?;
    let ptr = Region::map_fd(fd.as_fd(), len, opts)?;
    Ok(Region::from_raw(ptr, len, Kind::Memfd, opts).with_fd(fd))
  }

  /// Maps all of an inherited descriptor (a memfd or shared-memory fd from a parent), with
  /// the size from `fstat`. The region keeps its own duplicate of `fd`; the caller may close
  /// theirs.
  ///
  /// # Errors
  /// `fcntl`, `fstat` or `mmap` failures (`EACCES` when mapping a read-only fd writable);
  /// `EINVAL` for an empty object.
  pub fn from_fd(fd: BorrowedFd<'_>, opts: &MapOptions) -> Result<Region> {
    let own: OwnedFd = fd.try_clone_to_owned().syscall("fcntl")?;
    let size = fstat(&own).syscall("fstat")?.st_size;
    let size = usize::try_from(size).map_err(|_| Error::new(ErrorKind::InvalidSize, "object too large to map"))?;
    let len = check_len(size).map_err(|_| Error::os(nix::errno::Errno::EINVAL, "mmap"))?;
    let ptr = Region::map_fd(own.as_fd(), len, opts)?;
    Ok(Region::from_raw(ptr, len, Kind::Memfd, opts).with_fd(own))
  }

  /// Whether this region's descriptor is sealed against shrinking (`F_SEAL_SHRINK`), so no
  /// process holding it can truncate the memory under this mapping. Always `true` for
  /// [`Region::memfd`] on Linux; for [`Region::from_fd`] it depends on who made the object;
  /// `false` for regions without a descriptor and outside Linux.
  #[must_use]
  pub fn is_sealed(&self) -> bool {
    self.fd().is_some_and(imp::sealed_against_shrinking)
  }
}

#[cfg(target_os = "linux")]
mod imp {
  use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

  use nix::errno::Errno;
  use nix::unistd::ftruncate;

  use crate::error::{Error, ErrorKind, Result, SyscallExt};
  use crate::region::MapOptions;

  pub(super) fn create(len: std::num::NonZeroUsize, opts: &MapOptions) -> Result<OwnedFd> {
    // The raw syscall, not libc's wrapper: prebuilt binaries target glibc 2.17, which
    // predates memfd_create(3).
    // SAFETY: a NUL-terminated name and valid flags; the kernel returns a new fd or -1.
    let ret = unsafe {
      nix::libc::syscall(
        nix::libc::SYS_memfd_create,
        c"shmkit".as_ptr(),
        nix::libc::MFD_CLOEXEC | nix::libc::MFD_ALLOW_SEALING,
      )
    };
    let raw = Errno::result(ret).syscall("memfd_create")?;
    let raw = i32::try_from(raw).expect("fds fit in an int");
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let size = nix::libc::off_t::try_from(len.get())
      .map_err(|_| Error::new(ErrorKind::InvalidSize, "the size does not fit in off_t"))?;
    ftruncate(&fd, size).syscall("ftruncate")?;
    if opts.is_reserve() {
      nix::fcntl::posix_fallocate(&fd, 0, size).syscall("posix_fallocate")?;
    }
    let mut seals = nix::libc::F_SEAL_SHRINK;
    if !opts.is_growable() {
      seals |= nix::libc::F_SEAL_GROW;
    }
    // SAFETY: F_ADD_SEALS on a descriptor we own, with seal bits only.
    Errno::result(unsafe { nix::libc::fcntl(fd.as_raw_fd(), nix::libc::F_ADD_SEALS, seals) }).syscall("fcntl")?;
    Ok(fd)
  }

  pub(super) fn sealed_against_shrinking(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: F_GET_SEALS only reads the seals; a descriptor without sealing support fails
    // with EINVAL, which means "not sealed".
    let seals = unsafe { nix::libc::fcntl(fd.as_raw_fd(), nix::libc::F_GET_SEALS) };
    seals >= 0 && seals & nix::libc::F_SEAL_SHRINK != 0
  }
}

#[cfg(not(target_os = "linux"))]
mod imp {
  use std::os::fd::{BorrowedFd, OwnedFd};

  /// No seals outside Linux.
  pub(super) fn sealed_against_shrinking(_fd: BorrowedFd<'_>) -> bool {
    false
  }

  use crate::error::{Error, ErrorKind, Result};
  use crate::region::MapOptions;

  pub(super) fn create(len: std::num::NonZeroUsize, opts: &MapOptions) -> Result<OwnedFd> {
    if opts.is_reserve() {
      return Err(Error::new(
        ErrorKind::Unsupported,
        "reserve (posix_fallocate) is not available here",
      ));
    }
    crate::posix_shm::shm_open_anonymous(len, nix::sys::stat::Mode::from_bits_truncate(0o600))
  }
}
