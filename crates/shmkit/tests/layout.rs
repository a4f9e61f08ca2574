//! The numbers and mappings that `docs/layout.md` promises, checked on the platform the tests
//! run on: sizes and alignments of what shmkit places in a region (against the document's
//! own text, and on glibc against the C compiler's `sem_t`), a segment's bytes being exactly
//! the file's bytes, and where Linux keeps named objects. Keep the two in step.

mod common;

use shmkit::{RobustMutex, Semaphore};

/// docs/layout.md, read at test time: the numbers below are compared with what it says.
fn document() -> String {
  let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/layout.md");
  std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The row of a Markdown table whose first cell starts with `first_cell`.
fn row<'d>(document: &'d str, first_cell: &str) -> &'d str {
  let prefix = format!("| {first_cell}");
  let mut rows = document.lines().filter(|line| line.starts_with(&prefix));
  let found = rows
    .next()
    .unwrap_or_else(|| panic!("docs/layout.md has no table row '{first_cell}'"));
  assert!(rows.next().is_none(), "docs/layout.md has two rows '{first_cell}'");
  found
}

#[test]
fn semaphore_size_and_alignment_are_the_documented_ones() {
  let platform = if cfg!(target_os = "macos") {
    "macOS"
  } else if cfg!(target_env = "musl") {
    "Linux musl"
  } else if cfg!(target_arch = "aarch64") {
    "Linux glibc, aarch64"
  } else {
    "Linux glibc, x86_64"
  };
  let document = document();
  let documented = row(&document, platform);
  let actual = format!("{} bytes, align {}", Semaphore::SIZE, Semaphore::ALIGN);
  assert!(
    documented.contains(&actual),
    "docs/layout.md says {documented:?}, the code {actual:?}"
  );
  // The document's advice: offsets that are multiples of 8 (or 64) suit every platform.
  assert_eq!(8 % Semaphore::ALIGN, 0);
}

#[test]
fn mutex_size_and_alignment_are_the_documented_ones() {
  let document = document();
  let documented = row(&document, "robust mutex");
  let size = format!("| {} (`RobustMutex::SIZE`", RobustMutex::SIZE);
  let align = format!("| {} (`RobustMutex::ALIGN`)", RobustMutex::ALIGN);
  assert!(
    documented.contains(&size) && documented.contains(&align),
    "docs/layout.md says {documented:?}, the code size {} align {}",
    RobustMutex::SIZE,
    RobustMutex::ALIGN
  );
  let everywhere = format!(
    "the mutex is {} bytes, align {}, everywhere",
    RobustMutex::SIZE,
    RobustMutex::ALIGN
  );
  assert!(document.contains(&everywhere), "docs/layout.md lacks {everywhere:?}");
}

/// On glibc a C program's `sem_t` and shmkit's semaphore are the same bytes (named
/// semaphores and semaphores in a region are shared with `sem_post`/`sem_wait`), so the C
/// compiler's `sizeof`/`alignof` must be shmkit's. Needs `cc`, as the C interop tests do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn semaphore_is_the_c_compilers_sem_t() {
  let dir = std::env::temp_dir().join(format!("shmkit-layout-{}", std::process::id()));
  std::fs::create_dir_all(&dir).unwrap();
  let source = dir.join("sem_t.c");
  let program = dir.join("sem_t");
  std::fs::write(
    &source,
    "#include <semaphore.h>\n#include <stdalign.h>\n#include <stdio.h>\n\
     int main(void) { printf(\"%zu %zu\\n\", sizeof(sem_t), alignof(sem_t)); return 0; }\n",
  )
  .unwrap();
  let compiled = std::process::Command::new("cc")
    .arg("-o")
    .arg(&program)
    .arg(&source)
    .status()
    .unwrap_or_else(|e| panic!("cc is needed to check sem_t against C (the interop tests need it too): {e}"));
  assert!(compiled.success(), "cc failed on {}", source.display());
  let output = std::process::Command::new(&program).output().unwrap();
  std::fs::remove_dir_all(&dir).unwrap();
  let printed = String::from_utf8(output.stdout).unwrap();
  assert_eq!(
    printed.trim(),
    format!("{} {}", Semaphore::SIZE, Semaphore::ALIGN),
    "C's sizeof and alignof of sem_t"
  );
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
