//! Technique 1: a `MAP_SHARED` mapping of `/dev/zero`, as in APUE's example: open
//! `/dev/zero` `O_RDWR`, map it, close the descriptor. See `zero(4)` and `mmap(2)`.
//! Shared only with children made by `fork()`. macOS refuses it (`ENODEV`), so there it
//! is [`crate::ErrorKind::Unsupported`].

use crate::error::Result;
use crate::region::{MapOptions, Region};

impl Region {
  /// Maps `len` zero bytes from `/dev/zero`, `MAP_SHARED`. The descriptor is closed right
  /// after `mmap`; the mapping stays.
  ///
  /// ```
  /// # #[cfg(target_os = "linux")] {
  /// let region = shmkit::Region::dev_zero(4096).unwrap();
  /// assert_eq!(region.kind(), shmkit::Kind::DevZero);
  /// # }
  /// ```
  ///
  /// # Errors
  /// [`crate::ErrorKind::InvalidSize`]; `open` or `mmap` failures;
  /// [`crate::ErrorKind::Unsupported`] on macOS.
  pub fn dev_zero(len: usize) -> Result<Region> {
    Self::dev_zero_with(len, &MapOptions::default())
  }

  /// [`Region::dev_zero`] with options; reads only [`MapOptions::private`].
  ///
  /// # Errors
  /// As [`Region::dev_zero`].
  pub fn dev_zero_with(len: usize, opts: &MapOptions) -> Result<Region> {
    imp::dev_zero(len, opts)
  }
}

#[cfg(not(target_vendor = "apple"))]
mod imp {
  use nix::fcntl::{open, OFlag};
  use nix::sys::stat::Mode;

  use crate::error::{Result, SyscallExt};
  use crate::region::{check_len, Kind, MapOptions, Region};

  pub(super) fn dev_zero(len: usize, opts: &MapOptions) -> Result<Region> {
    let len = check_len(len)?;
    let fd = open("/dev/zero", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
      .syscall("open")
      .map_err(|e| e.with_name("/dev/zero"))?;
    let ptr = Region::map_fd(std::os::fd::AsFd::as_fd(&fd), len, opts).map_err(|e| e.with_name("/dev/zero"))?;
    drop(fd); // the mapping does not need the descriptor
    Ok(Region::from_raw(ptr, len, Kind::DevZero, opts))
  }
}

#[cfg(target_vendor = "apple")]
mod imp {
  use crate::error::{Error, ErrorKind, Result};
  use crate::region::{check_len, MapOptions, Region};

  pub(super) fn dev_zero(len: usize, _opts: &MapOptions) -> Result<Region> {
    check_len(len)?;
    Err(
      Error::new(
        ErrorKind::Unsupported,
        "macOS cannot mmap /dev/zero; use Region::anonymous",
      )
      .with_name("/dev/zero"),
    )
  }
}
