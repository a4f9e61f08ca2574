//! Regular-file mappings through memmap2: the region is the file's bytes, shared with every
//! process that maps the same file, and durable after [`Region::flush`]. See `mmap(2)`.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result, SyscallExt};
use crate::region::{check_len, MapOptions, Region};

impl Region {
  /// Maps the file at `path`, `MAP_SHARED`.
  ///
  /// With `len = Some(n)` the file is created if missing (mode from
  /// [`MapOptions::mode`], default `0o600`) and extended to `n` bytes if shorter (never
  /// shortened), and the first `n` bytes are mapped. With `None` the whole existing file is
  /// mapped.
  ///
  /// Another process truncating the file while it is mapped makes later access fault; keep
  /// files you map under your control.
  ///
  /// ```
  /// let path = std::env::temp_dir().join(format!("shmkit-doc-{}", std::process::id()));
  /// let region = shmkit::Region::file(&path, Some(4096)).unwrap();
  /// region.write_at(0, b"disk").unwrap();
  /// region.flush().unwrap();
  /// assert_eq!(&std::fs::read(&path).unwrap()[..4], b"disk");
  /// std::fs::remove_file(&path).unwrap();
  /// ```
  ///
  /// # Errors
  /// `open`, `ftruncate` or `mmap` failures; [`ErrorKind::InvalidSize`] for a zero length or
  /// an empty file.
  pub fn file(path: impl AsRef<Path>, len: Option<usize>) -> Result<Region> {
    Self::file_with(path, len, &MapOptions::default())
  }

  /// [`Region::file`] with options: [`MapOptions::create`], [`MapOptions::mode`],
  /// [`MapOptions::read_only`], [`MapOptions::private`].
  ///
  /// # Errors
  /// As [`Region::file`].
  pub fn file_with(path: impl AsRef<Path>, len: Option<usize>, opts: &MapOptions) -> Result<Region> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    map_file(path, len, opts).map_err(|e| e.with_name(shown))
  }
}

fn map_file(path: &Path, len: Option<usize>, opts: &MapOptions) -> Result<Region> {
  if let Some(len) = len {
    check_len(len)?;
  }
  opts.check_mode()?;
  let writable_file = !opts.is_read_only();
  let creating = writable_file && opts.is_create() && len.is_some();
  let file = OpenOptions::new()
    .read(true)
    .write(writable_file)
    .create(creating)
    .mode(opts.get_mode())
    .custom_flags(nix::libc::O_CLOEXEC)
    .open(path)
    .syscall("open")?;
  let size = file.metadata().syscall("fstat")?.len();
  let map_len = match len {
    Some(len) => {
      let wanted = len as u64;
      if size < wanted {
        if !writable_file {
          return Err(Error::new(
            ErrorKind::InvalidSize,
            format!("the file has {size} bytes, fewer than {len}"),
          ));
        }
        if size == 0 {
          // A file we may just have created: give it the requested permissions exactly.
          file
            .set_permissions(std::fs::Permissions::from_mode(opts.get_mode()))
            .syscall("fchmod")?;
        }
        file.set_len(wanted).syscall("ftruncate")?;
      }
      len
    }
    None => {
      let size = usize::try_from(size).map_err(|_| Error::new(ErrorKind::InvalidSize, "file too large to map"))?;
      check_len(size).map_err(|_| Error::new(ErrorKind::InvalidSize, "cannot map an empty file; pass a length"))?;
      size
    }
  };
  let mut options = memmap2::MmapOptions::new();
  options.len(map_len);
  if opts.is_private() {
    // SAFETY: memmap2's contract is that the file is not truncated underneath us; the
    // Region docs pass that on. MAP_PRIVATE keeps our writes out of the file.
    let map = unsafe { options.map_copy(&file) }.syscall("mmap")?;
    Ok(Region::from_file_private(map, path.display().to_string()))
  } else if writable_file {
    let map = options.map_raw(&file).syscall("mmap")?;
    Ok(Region::from_file_shared(map, path.display().to_string(), true))
  } else {
    let map = options.map_raw_read_only(&file).syscall("mmap")?;
    Ok(Region::from_file_shared(map, path.display().to_string(), false))
  }
}
