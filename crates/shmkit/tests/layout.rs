//! The numbers and mappings that `docs/layout.md` promises, checked on the platform the tests
//! run on: sizes and alignments of what shmkit places in a region, a segment's bytes being
//! exactly the file's bytes, and where Linux keeps named objects. Keep the two in step.

mod common;

use shmkit::{RobustMutex, Semaphore};

/// `(Semaphore::SIZE, Semaphore::ALIGN)` as the document's table gives them: glibc's 64-bit
/// `sem_t` on every platform (shmkit owns the protocol).
const SEM_T: (usize, usize) = (32, 8);

#[test]
fn semaphore_size_and_alignment_match_the_document() {
  assert_eq!((Semaphore::SIZE, Semaphore::ALIGN), SEM_T);
  #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
  assert_eq!(
    (Semaphore::SIZE, Semaphore::ALIGN),
    (size_of::<libc::sem_t>(), align_of::<libc::sem_t>()),
    "glibc's sem_t, byte for byte"
  );
  // The document's advice: offsets that are multiples of 8 (or 64) suit every platform.
  assert_eq!(8 % Semaphore::ALIGN, 0);
}

#[test]
fn mutex_size_and_alignment_match_the_document() {
  assert_eq!((RobustMutex::SIZE, RobustMutex::ALIGN), (32, 8));
}

/// The mutex's bytes as docs/layout.md gives them: the lock word at 0 (owner thread id in
/// bits 0..29, record-complete bit 29, owner-died bit 30, waiters bit 31), the sequence at 4,
/// the owner's pid at 8, thread id at 12, start time at 16..24; nothing outside the 32 bytes
/// is touched.
#[cfg(target_os = "linux")]
#[test]
fn a_mutex_encodes_its_owner_as_the_document_says() {
  use std::sync::Arc;

  use shmkit::{Region, RobustMutex};

  let region = Arc::new(Region::anonymous(4096).unwrap());
  region.write_at(0, &[0xAA; 4096]).unwrap();
  let mutex = RobustMutex::init_in(region.clone(), 64).unwrap();
  let word = |at: usize| {
    let mut b = [0u8; 4];
    region.read_at(64 + at, &mut b).unwrap();
    u32::from_ne_bytes(b)
  };
  assert!((0..32).step_by(4).all(|at| word(at) == 0), "init zeroes the 32 bytes");
  mutex.lock().unwrap();
  // SAFETY: gettid takes no arguments and cannot fail.
  let tid = u32::try_from(unsafe { libc::syscall(libc::SYS_gettid) }).unwrap();
  assert_eq!(word(0), tid | (1 << 29), "owner tid, record complete, no waiters");
  assert_eq!(word(4), 1, "the sequence, bumped by each new owner");
  assert_eq!(word(8), std::process::id());
  assert_eq!(word(12), tid);
  let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
  let field22: u64 = stat
    .rsplit_once(')')
    .unwrap()
    .1
    .split_whitespace()
    .nth(19)
    .unwrap()
    .parse()
    .unwrap();
  assert_eq!(u64::from(word(16)) | (u64::from(word(20)) << 32), field22, "start time");
  mutex.unlock().unwrap();
  assert_eq!(word(0), 0, "unlocked");
  let mut bytes = [0u8; 4096];
  region.read_at(0, &mut bytes).unwrap();
  assert!(bytes[..64].iter().chain(&bytes[96..]).all(|&b| b == 0xAA));
}

/// What Linux does with names and bytes.
#[cfg(target_os = "linux")]
mod linux {
  use std::sync::Arc;

  use shmkit::{unique_name, Region, Semaphore};

  use crate::common::NameGuard;

  /// An in-region semaphore touches its `SIZE` bytes at its offset and nothing else.
  #[test]
  fn an_in_region_semaphore_occupies_exactly_its_bytes() {
    let region = Arc::new(Region::anonymous(4096).unwrap());
    region.write_at(0, &[0xAA; 4096]).unwrap();
    let sem = Semaphore::init_in(region.clone(), 64, 5).unwrap();
    sem.post().unwrap();
    assert!(sem.try_wait().unwrap());
    let mut bytes = [0u8; 4096];
    region.read_at(0, &mut bytes).unwrap();
    assert!(
      bytes[..64].iter().all(|&b| b == 0xAA),
      "nothing before the semaphore changed"
    );
    assert!(
      bytes[64 + Semaphore::SIZE..].iter().all(|&b| b == 0xAA),
      "nothing after the semaphore changed"
    );
    assert!(
      bytes[64..64 + Semaphore::SIZE].iter().any(|&b| b != 0xAA),
      "sem_init wrote inside the semaphore's bytes"
    );
  }

  /// The protocol's bytes (glibc's 64-bit `new_sem`, on every platform): value, waiters,
  /// `128` for process-shared.
  #[test]
  fn a_semaphore_is_encoded_as_the_document_says() {
    let region = Arc::new(Region::anonymous(4096).unwrap());
    let _sem = Semaphore::init_in(region.clone(), 0, 5).unwrap();
    let word = |at: usize| {
      let mut b = [0u8; 4];
      region.read_at(at, &mut b).unwrap();
      u32::from_ne_bytes(b)
    };
    assert_eq!(word(0), 5, "the value, in the low half of the 64-bit data word");
    assert_eq!(word(4), 0, "no waiters");
    assert_eq!(word(8), 128, "FUTEX_SHARED: process-shared");
  }

  /// A named segment is the file `/dev/shm/NAME`, byte for byte: no header, its size is the
  /// size asked for, and an offset in the region is the same offset in the file.
  #[test]
  fn a_named_segment_is_raw_bytes_in_dev_shm() {
    let name = NameGuard::new();
    let region = Region::create(&name.0, 10_000).unwrap();
    region.write_at(4321, b"raw").unwrap();
    let path = format!("/dev/shm/{}", &name.0.as_str()[1..]);
    let file = std::fs::read(&path).unwrap();
    assert_eq!(file.len(), 10_000);
    assert_eq!(&file[4321..4324], b"raw");
    assert!(file[..4321].iter().all(|&b| b == 0));
    let opened = Region::open(&name.0).unwrap();
    assert_eq!(opened.len(), 10_000, "the opener's size comes from fstat");
  }

  /// A named semaphore `/NAME` is the file `/dev/shm/sem.NAME` (glibc's place; shmkit uses it
  /// with musl too).
  #[test]
  fn a_named_semaphore_is_a_file_in_dev_shm() {
    let name = unique_name("lay");
    let sem = Semaphore::create(&name, 0).unwrap();
    let path = format!("/dev/shm/sem.{}", &name.as_str()[1..]);
    let meta = std::fs::metadata(&path);
    Semaphore::unlink(&name).unwrap();
    drop(sem);
    let meta = meta.unwrap_or_else(|e| panic!("{path} exists while the semaphore does: {e}"));
    assert_eq!(meta.len(), Semaphore::SIZE as u64, "the file holds one sem_t");
    assert!(!std::path::Path::new(&path).exists(), "and is gone after sem_unlink");
  }

  /// Segments and semaphores have separate namespaces: they may have the same name.
  #[test]
  fn segments_and_semaphores_have_separate_namespaces() {
    let name = NameGuard::new();
    let _region = Region::create(&name.0, 4096).unwrap();
    let sem = Semaphore::create(&name.0, 0).unwrap();
    Semaphore::unlink(&name.0).unwrap();
    drop(sem);
  }
}
