//! Technique 2: an anonymous mapping, `mmap(MAP_SHARED | MAP_ANONYMOUS, fd = -1)`.
//! See `mmap(2)`. No file and no descriptor; shared only with children made by `fork()`.

use nix::sys::mman::mmap_anonymous;

use crate::error::{Result, SyscallExt};
use crate::region::{check_len, Kind, MapOptions, Region};

impl Region {
  /// Maps `len` bytes of zeroed anonymous memory, `MAP_SHARED`: a child made by
  /// [`crate::fork`] sees the parent's writes and the parent sees the child's.
  ///
  /// Pages cost nothing until touched.
  ///
  /// ```
  /// let region = shmkit::Region::anonymous(4096).unwrap();
  /// region.write_at(0, b"hi").unwrap();
  /// let mut out = [0u8; 2];
  /// region.read_at(0, &mut out).unwrap();
  /// assert_eq!(&out, b"hi");
  /// ```
  ///
  /// # Errors
  /// [`crate::ErrorKind::InvalidSize`] for 0 or an impossible size; `mmap` failures
  /// (`ENOMEM`).
  pub fn anonymous(len: usize) -> Result<Region> {
    Self::anonymous_with(len, &MapOptions::default())
  }

  /// [`Region::anonymous`] with options; reads only [`MapOptions::private`]
  /// (`MAP_PRIVATE`: after a fork, each process's writes stay its own).
  ///
  /// # Errors
  /// As [`Region::anonymous`].
  pub fn anonymous_with(len: usize, opts: &MapOptions) -> Result<Region> {
    let len = check_len(len)?;
    // SAFETY: no address hint, so the kernel picks a fresh range that aliases nothing; the
    // returned Region owns it and unmaps it once.
    let ptr = unsafe { mmap_anonymous(None, len, opts.prot(), opts.flags()) }.syscall("mmap")?;
    Ok(Region::from_raw(ptr, len, Kind::Anonymous, opts))
  }
}
