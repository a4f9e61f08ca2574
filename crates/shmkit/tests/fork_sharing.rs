//! The seed's scenario for the two fork-shared techniques: map, fork, the child writes, the
//! parent reads after `waitpid`. And the contrast case: with `MAP_PRIVATE` it does not.

mod common;

use common::{byte_at, fork_lock};
use shmkit::{fork, MapOptions, Region};

fn child_writes(region: &Region) -> shmkit::ExitStatus {
  let _lock = fork_lock();
  let body = || {
    // SAFETY: 0..4 is inside the 4096-byte, page-aligned region, and only the child writes now.
    #[expect(clippy::cast_ptr_alignment, reason = "mappings are page-aligned")]
    let word = region.as_ptr().cast::<u32>();
    // SAFETY: as above.
    unsafe { word.write_volatile(0xC0FF_EE42) };
    7
  };
  // SAFETY: the child only writes into the mapping and returns; no allocation.
  let mut child = unsafe { fork(body) }.unwrap();
  child.wait().unwrap()
}

fn read_u32(region: &Region) -> u32 {
  let mut b = [0u8; 4];
  region.read_at(0, &mut b).unwrap();
  u32::from_ne_bytes(b)
}

#[test]
fn anonymous_shared_child_write_is_seen_by_parent() {
  let region = Region::anonymous(4096).unwrap();
  assert_eq!(read_u32(&region), 0, "fresh memory is zeroed");
  let status = child_writes(&region);
  assert_eq!(status.code(), Some(7));
  assert_eq!(read_u32(&region), 0xC0FF_EE42);
}

#[test]
fn dev_zero_shared_child_write_is_seen_by_parent() {
  let region = Region::dev_zero(4096).unwrap();
  assert_eq!(region.kind(), shmkit::Kind::DevZero);
  let status = child_writes(&region);
  assert_eq!(status.code(), Some(7));
  assert_eq!(read_u32(&region), 0xC0FF_EE42);
}

#[test]
fn anonymous_private_child_write_stays_in_child() {
  let region = Region::anonymous_with(4096, &MapOptions::new().private(true)).unwrap();
  region.write_at(0, &[1, 2, 3, 4]).unwrap();
  let status = child_writes(&region);
  assert!(status.code() == Some(7));
  assert_eq!(
    [byte_at(&region, 0), byte_at(&region, 3)],
    [1, 4],
    "the child's write is copy-on-write"
  );
}

#[test]
fn dev_zero_private_child_write_stays_in_child() {
  let region = Region::dev_zero_with(4096, &MapOptions::new().private(true)).unwrap();
  assert!(region.is_private());
  let status = child_writes(&region);
  assert_eq!(status.code(), Some(7));
  assert_eq!(read_u32(&region), 0);
}

#[test]
fn parent_writes_before_fork_are_visible_to_child() {
  let _lock = fork_lock();
  let region = Region::anonymous(8192).unwrap();
  region.write_at(5000, b"from parent").unwrap();
  // SAFETY: the child only reads the mapping and returns a code.
  let mut child = unsafe {
    fork(|| {
      let mut buf = [0u8; 11];
      region.read_at(5000, &mut buf).unwrap();
      i32::from(&buf == b"from parent")
    })
  }
  .unwrap();
  assert_eq!(child.wait().unwrap().code(), Some(1));
}

#[test]
fn named_region_is_shared_with_forked_child() {
  let _lock = fork_lock();
  let name = common::NameGuard::new();
  let region = Region::create(&name.0, 4096).unwrap();
  // SAFETY: the child opens the name and writes; this test binary's other threads never
  // hold a lock the child needs (the allocator is thread-safe across fork in glibc).
  let mut child = unsafe {
    fork(|| {
      let other = Region::open(&name.0).unwrap();
      other.write_at(100, b"xyz").unwrap();
      0
    })
  }
  .unwrap();
  assert!(child.wait().unwrap().success());
  let mut buf = [0u8; 3];
  region.read_at(100, &mut buf).unwrap();
  assert_eq!(&buf, b"xyz");
}
