//! Regular-file mappings (memmap2) and fd-backed anonymous regions.

mod common;

use std::os::unix::fs::MetadataExt;

use common::{byte_at, fork_lock};
use shmkit::{fork, ErrorKind, MapOptions, Region};

struct TempPath(std::path::PathBuf);
impl TempPath {
  fn new(tag: &str) -> Self {
    Self(std::env::temp_dir().join(format!("shmkit-test-{tag}-{}", &shmkit::unique_name("f").as_str()[1..])))
  }
}
impl Drop for TempPath {
  fn drop(&mut self) {
    let _ = std::fs::remove_file(&self.0);
  }
}

#[test]
fn file_is_created_extended_and_flushed() {
  let path = TempPath::new("a");
  let region = Region::file(&path.0, Some(10_000)).unwrap();
  assert_eq!(region.kind(), shmkit::Kind::File);
  let meta = std::fs::metadata(&path.0).unwrap();
  assert_eq!(meta.len(), 10_000);
  assert_eq!(meta.mode() & 0o777, 0o600);
  region.write_at(9_000, b"durable").unwrap();
  region.flush().unwrap();
  let bytes = std::fs::read(&path.0).unwrap();
  assert_eq!(&bytes[9_000..9_007], b"durable");
  drop(region);

  // Mapped again without a length: the whole file.
  let again = Region::file(&path.0, None).unwrap();
  assert_eq!(again.len(), 10_000);
  assert_eq!(byte_at(&again, 9_000), b'd');
}

#[test]
fn file_private_mapping_does_not_write_the_file() {
  let path = TempPath::new("b");
  std::fs::write(&path.0, b"original").unwrap();
  let region = Region::file_with(&path.0, None, &MapOptions::new().private(true)).unwrap();
  region.write_at(0, b"CHANGED!").unwrap();
  region.flush().unwrap();
  assert_eq!(std::fs::read(&path.0).unwrap(), b"original");
}

#[test]
fn file_errors_name_the_path() {
  let path = TempPath::new("c");
  let err = Region::file_with(&path.0, None, &MapOptions::new().create(false)).unwrap_err();
  assert_eq!(err.errno(), Some(shmkit::Errno::ENOENT));
  assert_eq!(err.name(), Some(path.0.display().to_string().as_str()));
  std::fs::write(&path.0, b"").unwrap();
  assert_eq!(Region::file(&path.0, None).unwrap_err().kind(), ErrorKind::InvalidSize);
}

#[test]
fn memfd_is_shared_through_its_fd() {
  let _lock = fork_lock();
  let region = Region::memfd(4096).unwrap();
  let fd = region.fd().unwrap();
  let second = Region::from_fd(fd, &MapOptions::new()).unwrap();
  assert_eq!(second.len(), 4096);
  region.write_at(10, b"fd!").unwrap();
  assert_eq!(byte_at(&second, 12), b'!');
  // A forked child mapping the inherited fd sees the same memory.
  // SAFETY: the child maps, writes and returns.
  let mut child = unsafe {
    fork(|| {
      let mine = Region::from_fd(region.fd().unwrap(), &MapOptions::new()).unwrap();
      mine.write_at(0, b"C").unwrap();
      0
    })
  }
  .unwrap();
  assert!(child.wait().unwrap().success());
  assert_eq!(byte_at(&region, 0), b'C');
}

#[cfg(target_os = "linux")]
#[test]
fn memfd_is_sealed_against_shrinking_and_growing() {
  use std::os::fd::AsRawFd;
  let region = shmkit::Region::memfd(8192).unwrap();
  assert!(region.is_sealed());
  let fd = region.fd().unwrap().as_raw_fd();
  // SAFETY: ftruncate on a descriptor the region owns; the seals make it fail.
  assert_eq!(unsafe { libc::ftruncate(fd, 0) }, -1);
  assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EPERM));
  // SAFETY: as above.
  assert_eq!(unsafe { libc::ftruncate(fd, 1 << 20) }, -1);
  region.write_at(8191, &[7]).unwrap(); // still mapped and whole

  let growable = shmkit::Region::memfd_with(4096, &shmkit::MapOptions::new().growable(true)).unwrap();
  let fd = growable.fd().unwrap().as_raw_fd();
  // SAFETY: as above; growing is allowed, shrinking still is not.
  assert_eq!(unsafe { libc::ftruncate(fd, 8192) }, 0);
  // SAFETY: as above.
  assert_eq!(unsafe { libc::ftruncate(fd, 0) }, -1);
}

#[test]
fn a_pin_keeps_the_addresses_and_blanks_the_memory() {
  let region = shmkit::Region::memfd(4096).unwrap();
  let other = shmkit::Region::from_fd(region.fd().unwrap(), &shmkit::MapOptions::new()).unwrap();
  region.write_at(0, b"live").unwrap();
  let pin = region.pin();
  let ptr = region.as_ptr();
  drop(region);
  // SAFETY: the pin keeps the range mapped; it now holds private zero pages.
  unsafe {
    assert_eq!(ptr.read(), 0);
    ptr.write(9); // a late writer writes nowhere
  }
  let mut seen = [0u8; 4];
  other.read_at(0, &mut seen).unwrap();
  assert_eq!(&seen, b"live", "the object itself is untouched");
  assert_eq!(pin.len(), 4096);
  drop(pin);
}

#[cfg(target_os = "linux")]
#[test]
fn an_alias_shares_the_memory_until_blanked_and_the_region_is_untouched() {
  let region = shmkit::Region::anonymous(3 * 4096).unwrap();
  if common::under_user_mode_emulation() {
    // qemu-user refuses mremap with an old size of 0: no alias, and callers pin instead.
    assert!(region.alias().unwrap().is_none(), "no second mapping under emulation");
    return;
  }
  let alias = region.alias().unwrap().expect("shared mappings alias on Linux");
  assert_eq!(alias.len(), region.len());
  region.write_at(5, b"x").unwrap();
  // SAFETY: the alias is mapped for its length until dropped.
  unsafe {
    assert_eq!(alias.as_ptr().add(5).read(), b'x', "the same pages");
    alias.as_ptr().add(6).write(b'y');
  }
  let mut seen = [0u8; 2];
  region.read_at(5, &mut seen).unwrap();
  assert_eq!(&seen, b"xy");
  alias.blank().unwrap();
  // SAFETY: as above; the range now holds private zero pages.
  unsafe {
    assert_eq!(alias.as_ptr().add(5).read(), 0, "cut off: zeros");
    alias.as_ptr().add(7).write(b'z'); // reaches only the blank page
  }
  let mut seen = [0u8; 3];
  region.read_at(5, &mut seen).unwrap();
  assert_eq!(
    &seen, b"xy\0",
    "the region keeps its bytes and never sees the stale write"
  );

  // A sub-range: the alias covers its pages, and says where the offset lies in it.
  region.write_at(4096 + 10, b"q").unwrap();
  let (part, at) = region.alias_range(4096 + 10, 3).unwrap().unwrap();
  assert_eq!((part.len(), at), (4096, 10));
  // SAFETY: `at` is inside the alias.
  assert_eq!(unsafe { part.as_ptr().add(at).read() }, b'q');
  assert!(region.alias_range(3 * 4096, 1).is_err(), "outside the region");
  let private = shmkit::Region::anonymous_with(4096, &MapOptions::new().private(true)).unwrap();
  assert!(
    private.alias().unwrap().is_none(),
    "private memory has no second mapping"
  );
}

#[cfg(target_os = "linux")]
#[test]
fn a_region_mapped_again_outlives_the_first_one_closing_under_a_pin() {
  use std::os::fd::AsRawFd;

  let first = shmkit::Region::memfd(4096).unwrap();
  let Some(again) = first.map_again().unwrap() else {
    assert!(
      common::under_user_mode_emulation(),
      "shared mappings map again on Linux"
    );
    return;
  };
  assert_ne!(again.as_ptr(), first.as_ptr(), "fresh addresses");
  assert_eq!(
    (again.len(), again.kind(), again.is_sealed()),
    (first.len(), first.kind(), first.is_sealed())
  );
  assert_eq!(
    again.fd().map(|fd| fd.as_raw_fd()),
    first.fd().map(|fd| fd.as_raw_fd()),
    "one descriptor, not a dup"
  );
  first.write_at(0, b"ab").unwrap();
  let mut seen = [0u8; 2];
  again.read_at(0, &mut seen).unwrap();
  assert_eq!(&seen, b"ab", "the same memory");

  let pin = first.pin();
  let stale = first.as_ptr();
  first.close().unwrap();
  // SAFETY: the pin keeps the first range mapped (blank now).
  assert_eq!(unsafe { stale.read() }, 0, "the closed region reads zeros");
  again.write_at(1, b"c").unwrap();
  again.read_at(0, &mut seen).unwrap();
  assert_eq!(&seen, b"ac", "the second mapping still reaches the memory");
  assert!(again.fd().is_some(), "and keeps the descriptor open");
  drop(pin);

  let private = shmkit::Region::anonymous_with(4096, &MapOptions::new().private(true)).unwrap();
  assert!(
    private.map_again().unwrap().is_none(),
    "private memory is shared, not mapped again"
  );
}
