//! Named POSIX shared memory: create, open, open-or-create, unlink, and their errors.

mod common;

use std::os::unix::fs::MetadataExt;

use common::NameGuard;
use shmkit::{Errno, ErrorKind, MapOptions, ObjectName, Region};

#[test]
fn create_open_unlink() {
  let name = NameGuard::new();
  let a = Region::create(&name.0, 10_000).unwrap();
  assert_eq!(a.len(), 10_000);
  assert_eq!(a.kind(), shmkit::Kind::Named);
  assert_eq!(a.name(), Some(name.0.as_str()));
  a.write_at(9_990, b"0123456789").unwrap();

  let b = Region::open(&name.0).unwrap();
  assert_eq!(b.len(), 10_000, "size comes from fstat");
  let mut buf = [0u8; 10];
  b.read_at(9_990, &mut buf).unwrap();
  assert_eq!(&buf, b"0123456789");
  b.write_at(0, b"back").unwrap();
  a.read_at(0, &mut buf[..4]).unwrap();
  assert_eq!(&buf[..4], b"back");

  shmkit::unlink(&name.0).unwrap();
  let err = Region::open(&name.0).unwrap_err();
  assert_eq!(err.errno(), Some(Errno::ENOENT));
  // The mappings outlive the name.
  a.read_at(0, &mut buf[..4]).unwrap();
  assert_eq!(&buf[..4], b"back");
}

#[test]
fn second_create_is_eexist() {
  let name = NameGuard::new();
  let _a = Region::create(&name.0, 4096).unwrap();
  let err = Region::create(&name.0, 4096).unwrap_err();
  assert_eq!(err.kind(), ErrorKind::Os);
  assert_eq!(err.errno(), Some(Errno::EEXIST));
  assert_eq!(err.syscall(), Some("shm_open"));
  assert_eq!(err.name(), Some(name.0.as_str()));
  assert!(err.to_string().starts_with("EEXIST: "), "{err}");
}

#[test]
fn opening_a_missing_name_is_enoent() {
  let name = NameGuard::new();
  let err = Region::open(&name.0).unwrap_err();
  assert_eq!(err.errno(), Some(Errno::ENOENT));
  assert_eq!(err.syscall(), Some("shm_open"));
  let err = shmkit::unlink(&name.0).unwrap_err();
  assert_eq!(err.errno(), Some(Errno::ENOENT));
}

#[test]
fn names_with_and_without_slash_are_the_same_object() {
  let name = NameGuard::new();
  let bare = &name.0.as_str()[1..];
  let a = Region::create(bare, 64).unwrap();
  assert_eq!(a.name(), Some(name.0.as_str()));
  let b = Region::open(name.0.as_str()).unwrap();
  assert_eq!(b.len(), 64);
}

#[test]
fn invalid_names_are_rejected_before_any_syscall() {
  for bad in [
    "",
    "/",
    "//x",
    "a/b",
    "/a/b",
    "x\0y",
    "/abcdefghijklmnopqrstuvwxyz0123",
    ".",
    "..",
  ] {
    let err = ObjectName::new(bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
  }
  assert!(
    ObjectName::new("/abcdefghijklmnopqrstuvwxyz012").is_ok(),
    "30 bytes is the limit"
  );
}

#[test]
fn invalid_sizes_are_rejected() {
  let name = NameGuard::new();
  assert_eq!(Region::create(&name.0, 0).unwrap_err().kind(), ErrorKind::InvalidSize);
  assert_eq!(Region::anonymous(0).unwrap_err().kind(), ErrorKind::InvalidSize);
  assert_eq!(
    Region::anonymous(usize::MAX).unwrap_err().kind(),
    ErrorKind::InvalidSize
  );
  assert!(Region::open(&name.0).is_err(), "nothing was created");
}

#[test]
fn default_mode_is_0600_and_explicit_mode_is_exact() {
  let name = NameGuard::new();
  let _a = Region::create(&name.0, 4096).unwrap();
  let path = format!("/dev/shm{}", name.0);
  assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);

  let other = NameGuard::new();
  // 0o666 would be narrowed to 0o644 by the usual umask; shmkit applies it exactly.
  let _b = Region::create_with(&other.0, 4096, &MapOptions::new().mode(0o666)).unwrap();
  let path = format!("/dev/shm{}", other.0);
  assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o666);

  let third = NameGuard::new();
  let err = Region::create_with(&third.0, 4096, &MapOptions::new().mode(0o1777)).unwrap_err();
  assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn open_or_create_creates_then_opens_without_resizing() {
  let name = NameGuard::new();
  let a = Region::open_or_create(&name.0, 8192).unwrap();
  assert_eq!(a.len(), 8192);
  a.write_at(0, b"first").unwrap();
  let b = Region::open_or_create(&name.0, 100).unwrap();
  assert_eq!(b.len(), 8192, "an existing object keeps its size");
  let mut buf = [0u8; 5];
  b.read_at(0, &mut buf).unwrap();
  assert_eq!(&buf, b"first");
}

#[test]
fn read_only_open_maps_prot_read_and_refuses_write_at() {
  let name = NameGuard::new();
  let a = Region::create(&name.0, 4096).unwrap();
  a.write_at(0, b"ro").unwrap();
  let r = Region::open_with(&name.0, &MapOptions::new().read_only(true)).unwrap();
  assert!(!r.is_writable());
  let mut buf = [0u8; 2];
  r.read_at(0, &mut buf).unwrap();
  assert_eq!(&buf, b"ro");
  assert_eq!(r.write_at(0, b"x").unwrap_err().errno(), Some(Errno::EACCES));
}

#[test]
fn read_only_private_open_keeps_writes_local() {
  let name = NameGuard::new();
  let a = Region::create(&name.0, 4096).unwrap();
  a.write_at(0, b"orig").unwrap();
  let r = Region::open_with(&name.0, &MapOptions::new().read_only(true).private(true)).unwrap();
  r.write_at(0, b"mine").unwrap();
  let mut buf = [0u8; 4];
  a.read_at(0, &mut buf).unwrap();
  assert_eq!(&buf, b"orig", "a copy-on-write view never reaches the object");
}

// Linux only: the ENOSPC precheck reads /dev/shm, which macOS does not have.
#[cfg(target_os = "linux")]
#[test]
fn larger_than_backing_store_is_enospc_and_leaves_no_name() {
  let stat = nix::sys::statvfs::statvfs("/dev/shm").unwrap();
  let free = usize::try_from(stat.blocks_available() * stat.fragment_size()).unwrap();
  let name = NameGuard::new();
  let err = Region::create(&name.0, free + (1 << 30)).unwrap_err();
  assert_eq!(err.errno(), Some(Errno::ENOSPC));
  assert_eq!(Region::open(&name.0).unwrap_err().errno(), Some(Errno::ENOENT));
}

#[test]
fn reserve_allocates_pages_up_front() {
  let name = NameGuard::new();
  let len = 8 << 20;
  let a = Region::create_with(&name.0, len, &MapOptions::new().reserve(true)).unwrap();
  let path = format!("/dev/shm{}", name.0);
  let blocks = std::fs::metadata(&path).unwrap().blocks();
  assert!(blocks * 512 >= len as u64, "{blocks} blocks reserved");
  a.write_at(len - 1, &[1]).unwrap();
}

#[test]
fn open_refuses_an_object_of_another_owner_unless_accepted() {
  let name = shmkit::unique_name("owner");
  let created = Region::create(&name, 4096).unwrap();
  let me = nix::unistd::geteuid().as_raw();
  // Our own object: accepted by default, by our uid and by Any.
  assert!(Region::open(&name).is_ok());
  assert!(Region::open_with(&name, &shmkit::MapOptions::new().owner(shmkit::Owner::Uid(me))).is_ok());
  assert!(Region::open_with(&name, &shmkit::MapOptions::new().owner(shmkit::Owner::Any)).is_ok());
  // Expecting someone else: refused, and the error names the real owner.
  let err = Region::open_with(&name, &shmkit::MapOptions::new().owner(shmkit::Owner::Uid(me + 1))).unwrap_err();
  assert_eq!(err.kind(), shmkit::ErrorKind::ForeignOwner);
  assert_eq!(err.owner(), Some(me));
  drop(created);
  shmkit::unlink(&name).unwrap();
}
