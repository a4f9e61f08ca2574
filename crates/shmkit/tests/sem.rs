//! Semaphores: named and in a region, across forked processes, under signals.
#![cfg_attr(
  not(target_os = "linux"),
  allow(dead_code, unused_imports, reason = "the Linux-only tests use these helpers")
)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::fork_lock;
use shmkit::{fork, unique_name, Errno, ErrorKind, ObjectName, Region, SemOptions, Semaphore};

/// A unique semaphore name, unlinked when the guard drops, even if the test fails.
struct SemName(ObjectName);

impl SemName {
  fn new() -> Self {
    Self(unique_name("sem"))
  }
}

impl Drop for SemName {
  fn drop(&mut self) {
    let _ = Semaphore::unlink(&self.0);
  }
}

/// Where Linux keeps a named semaphore: `/dev/shm/sem.NAME` (glibc's place, also with musl).
fn sem_path(name: &ObjectName) -> String {
  format!("/dev/shm/sem.{}", &name.as_str()[1..])
}

#[test]
fn named_create_open_post_wait_unlink() {
  let name = SemName::new();
  let a = Semaphore::create(&name.0, 2).unwrap();
  assert_eq!(a.name(), Some(name.0.as_str()));
  let b = Semaphore::open(&name.0).unwrap();
  assert_eq!(b.value().unwrap(), 2);
  assert!(b.try_wait().unwrap());
  assert!(a.try_wait().unwrap());
  assert!(!a.try_wait().unwrap(), "two permits, both taken");
  a.post().unwrap();
  assert_eq!(b.value().unwrap(), 1);
  b.wait().unwrap();
  assert_eq!(a.value().unwrap(), 0);
  a.close().unwrap();
  b.close().unwrap();
  Semaphore::unlink(&name.0).unwrap();
  let gone = Semaphore::open(&name.0).unwrap_err();
  assert_eq!(gone.errno(), Some(Errno::ENOENT));
}

#[test]
fn errors_carry_the_call_and_the_name() {
  let name = SemName::new();
  let _a = Semaphore::create(&name.0, 0).unwrap();
  let exists = Semaphore::create(&name.0, 0).unwrap_err();
  assert_eq!(exists.errno(), Some(Errno::EEXIST));
  assert_eq!(exists.syscall(), Some("sem_open"));
  assert_eq!(exists.name(), Some(name.0.as_str()));

  let missing = unique_name("none");
  let e = Semaphore::open(&missing).unwrap_err();
  assert_eq!(
    (e.errno(), e.syscall(), e.name()),
    (Some(Errno::ENOENT), Some("sem_open"), Some(missing.as_str()))
  );
  let e = Semaphore::unlink(&missing).unwrap_err();
  assert_eq!((e.errno(), e.syscall()), (Some(Errno::ENOENT), Some("sem_unlink")));

  assert_eq!(Semaphore::create("a/b", 0).unwrap_err().kind(), ErrorKind::InvalidName);
  let too_big = Semaphore::create(&SemName::new().0, Semaphore::VALUE_MAX + 1).unwrap_err();
  assert_eq!(too_big.kind(), ErrorKind::InvalidArgument);
  let bad_mode = Semaphore::create_with(&SemName::new().0, 0, &SemOptions::new().mode(0o1000)).unwrap_err();
  assert_eq!(bad_mode.kind(), ErrorKind::InvalidArgument);
}

#[test]
#[cfg(target_os = "linux")]
fn named_mode_is_0600_by_default_and_exact_when_given() {
  use std::os::unix::fs::PermissionsExt;
  let name = SemName::new();
  let _a = Semaphore::create(&name.0, 0).unwrap();
  let mode = std::fs::metadata(sem_path(&name.0)).unwrap().permissions().mode();
  assert_eq!(mode & 0o777, 0o600);

  // A umask that would narrow 0o666 must not.
  let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
  let wide = SemName::new();
  let created = Semaphore::create_with(&wide.0, 0, &SemOptions::new().mode(0o666));
  nix::sys::stat::umask(old);
  let _b = created.unwrap();
  let mode = std::fs::metadata(sem_path(&wide.0)).unwrap().permissions().mode();
  assert_eq!(mode & 0o777, 0o666);
}

#[test]
fn open_or_create_creates_once_and_then_opens() {
  let name = SemName::new();
  let first = Semaphore::open_or_create(&name.0, 3).unwrap();
  assert!(first.try_wait().unwrap());
  let second = Semaphore::open_or_create(&name.0, 100).unwrap();
  assert_eq!(second.value().unwrap(), 2, "the existing value is kept");
}

#[test]
fn timed_wait_times_out_and_succeeds() {
  let name = SemName::new();
  let sem = Semaphore::create(&name.0, 0).unwrap();
  assert!(!sem.wait_timeout(Duration::from_millis(20)).unwrap());
  assert!(!sem.wait_timeout(Duration::ZERO).unwrap());
  sem.post().unwrap();
  assert!(
    sem.wait_timeout(Duration::ZERO).unwrap(),
    "a zero timeout still tries once"
  );
  sem.post().unwrap();
  assert!(
    sem.wait_timeout(Duration::MAX).unwrap(),
    "an enormous timeout waits like no timeout"
  );
}

#[test]
fn a_posting_thread_wakes_a_timed_waiter() {
  let name = SemName::new();
  let sem = Arc::new(Semaphore::create(&name.0, 0).unwrap());
  let poster = {
    let sem = sem.clone();
    std::thread::spawn(move || {
      std::thread::sleep(Duration::from_millis(50));
      sem.post().unwrap();
    })
  };
  assert!(sem.wait_timeout(Duration::from_secs(60)).unwrap());
  poster.join().unwrap();
}

#[test]
fn in_region_bounds_alignment_and_sharing_are_checked() {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  const { assert!(Semaphore::SIZE >= 16 && Semaphore::ALIGN >= 4) };
  let last = 4096 - Semaphore::SIZE;
  assert!(Semaphore::init_in(region.clone(), last, 0).is_ok());
  let e = Semaphore::init_in(region.clone(), last + Semaphore::ALIGN, 0).unwrap_err();
  assert_eq!(e.kind(), ErrorKind::InvalidSize);
  let e = Semaphore::init_in(region.clone(), usize::MAX, 0).unwrap_err();
  assert_eq!(e.kind(), ErrorKind::InvalidSize);
  let e = Semaphore::init_in(region.clone(), Semaphore::ALIGN / 2, 0).unwrap_err();
  assert_eq!(e.kind(), ErrorKind::InvalidArgument, "misaligned");
  let e = Semaphore::init_in(region.clone(), 0, Semaphore::VALUE_MAX + 1).unwrap_err();
  assert_eq!(e.kind(), ErrorKind::InvalidArgument);

  let private = Arc::new(Region::anonymous_with(4096, &shmkit::MapOptions::new().private(true)).unwrap());
  let e = Semaphore::init_in(private, 0, 0).unwrap_err();
  assert_eq!(
    e.kind(),
    ErrorKind::InvalidArgument,
    "a private mapping would not share it"
  );
}

#[test]
fn in_region_semaphore_is_attached_at_its_offset_and_keeps_the_region() {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let sem = Semaphore::init_in(region.clone(), 64, 1).unwrap();
  assert_eq!((sem.name(), sem.offset()), (None, Some(64)));
  let again = Semaphore::at(region.clone(), 64).unwrap();
  assert!(again.try_wait().unwrap());
  assert!(!sem.try_wait().unwrap(), "one semaphore, two handles");
  drop(region);
  // The handles keep the mapping alive on their own.
  sem.post().unwrap();
  assert_eq!(again.value().unwrap(), 1);
  assert_eq!(sem.region().unwrap().len(), 4096);
  again.close().unwrap();
  sem.destroy().unwrap();
}

#[test]
fn damaged_semaphores_fail_with_einval_instead_of_aborting() {
  // glibc would abort the process for these bytes; shmkit owns the protocol and says EINVAL.
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let e = Semaphore::at(region.clone(), 0).unwrap_err();
  assert_eq!(
    (e.errno(), e.syscall()),
    (Some(Errno::EINVAL), Some("sem_init")),
    "zeroes are no semaphore"
  );

  let sem = Semaphore::init_in(region.clone(), 0, 0).unwrap();
  region.write_at(0, &[0xff; 32]).unwrap();
  for (result, call) in [
    (sem.post().map(drop), "sem_post"),
    (sem.try_wait().map(drop), "sem_trywait"),
    (sem.wait().map(drop), "sem_wait"),
    (sem.wait_timeout(Duration::from_millis(1)).map(drop), "sem_timedwait"),
    (sem.value().map(drop), "sem_getvalue"),
  ] {
    let e = result.unwrap_err();
    assert_eq!((e.errno(), e.syscall()), (Some(Errno::EINVAL), Some(call)));
  }
  // Initialising again repairs it.
  let sem = Semaphore::init_in(region, 0, 1).unwrap();
  assert!(sem.try_wait().unwrap());
}

#[test]
fn destroy_is_only_for_in_region_semaphores() {
  let name = SemName::new();
  let sem = Semaphore::create(&name.0, 0).unwrap();
  assert_eq!(sem.destroy().unwrap_err().kind(), ErrorKind::InvalidArgument);
}

/// Each of `children` forked processes adds 1 to the counter at byte 0 of `counter`
/// `rounds` times, with a plain read-modify-write guarded by `sem`.
fn count_under(sem: &Semaphore, counter: &Region, children: usize, rounds: u64) -> u64 {
  let _lock = fork_lock();
  #[expect(clippy::cast_ptr_alignment, reason = "mappings are page-aligned")]
  let word = counter.as_ptr().cast::<u64>();
  let body = || {
    for _ in 0..rounds {
      if sem.wait().is_err() {
        return 2;
      }
      // SAFETY: byte 0..8 of the page-aligned region; the semaphore gives this process the
      // counter to itself. Volatile, so the compiler cannot merge the rounds.
      unsafe { word.write_volatile(word.read_volatile() + 1) };
      if sem.post().is_err() {
        return 3;
      }
    }
    0
  };
  let mut kids: Vec<_> = (0..children)
    // SAFETY: the children only touch the region and the semaphore (no allocation) and exit.
    .map(|_| unsafe { fork(body) }.unwrap())
    .collect();
  for kid in &mut kids {
    let status = kid.wait_timeout(Duration::from_secs(120)).unwrap();
    assert!(status.success(), "{status:?}");
  }
  // SAFETY: every child has exited; nobody else writes the counter.
  unsafe { word.read_volatile() }
}

#[test]
fn four_forked_processes_count_exactly_under_a_named_semaphore() {
  let name = SemName::new();
  let sem = Semaphore::create(&name.0, 1).unwrap();
  let counter = Region::anonymous(4096).unwrap();
  assert_eq!(count_under(&sem, &counter, 4, 20_000), 80_000);
}

#[test]
fn four_forked_processes_count_exactly_under_an_in_region_semaphore() {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let sem = Semaphore::init_in(region.clone(), 64, 1).unwrap();
  assert_eq!(count_under(&sem, &region, 4, 20_000), 80_000);
}

#[test]
fn a_forked_producer_passes_100000_items_through_a_ring() {
  const SLOTS: usize = 64;
  const ITEMS: u64 = 100_000;
  let _lock = fork_lock();
  // Layout: two semaphores, then the ring of u64 slots.
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let items = Semaphore::init_in(region.clone(), 0, 0).unwrap();
  let slots = Semaphore::init_in(region.clone(), 64, u32::try_from(SLOTS).unwrap()).unwrap();
  #[expect(clippy::cast_ptr_alignment, reason = "offset 128 of a page-aligned mapping")]
  let ring = region.as_ptr().wrapping_add(128).cast::<u64>();
  // 128 + 64 * 8 bytes fit in the 4096-byte region, so every slot is inside it.
  let slot = |i: u64| ring.wrapping_add(usize::try_from(i).unwrap_or(0) % SLOTS);
  let producer = || {
    for i in 0..ITEMS {
      if slots.wait().is_err() {
        return 2;
      }
      // SAFETY: the slot is inside the ring, and the slots semaphore gave it to us.
      unsafe { slot(i).write_volatile(i * 3 + 1) };
      if items.post().is_err() {
        return 3;
      }
    }
    0
  };
  // SAFETY: the child only touches the region and the semaphores, then exits.
  let mut child = unsafe { fork(producer) }.unwrap();
  let (mut sum, mut in_order) = (0u64, true);
  for i in 0..ITEMS {
    assert!(
      items.wait_timeout(Duration::from_secs(60)).unwrap(),
      "item {i} never came"
    );
    // SAFETY: the items semaphore says slot `i % SLOTS` holds a finished item.
    let value = unsafe { slot(i).read_volatile() };
    in_order &= value == i * 3 + 1;
    sum += value;
    slots.post().unwrap();
  }
  assert!(child.wait_timeout(Duration::from_secs(60)).unwrap().success());
  assert!(in_order, "every item arrived once, in order");
  assert_eq!(sum, (0..ITEMS).map(|i| i * 3 + 1).sum::<u64>());
  assert!(!items.try_wait().unwrap(), "no extra items");
  assert_eq!(slots.value().unwrap(), u32::try_from(SLOTS).unwrap());
}

static HANDLED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_signal(_: libc::c_int) {
  HANDLED.fetch_add(1, Ordering::SeqCst);
}

/// Whether thread `tid` of this process sleeps in a futex (a semaphore wait).
#[cfg(target_os = "linux")]
fn in_futex_wait(tid: i32) -> bool {
  let task = format!("/proc/self/task/{tid}");
  let wchan = std::fs::read_to_string(format!("{task}/wchan")).unwrap_or_default();
  if wchan.contains("futex") {
    return true;
  }
  let syscall = std::fs::read_to_string(format!("{task}/syscall")).unwrap_or_default();
  syscall.split_whitespace().next() == Some(&libc::SYS_futex.to_string())
}

/// Interrupts a waiter three times with a signal whose handler runs, checking each time that
/// it went back to waiting; then posts. With glibc, `sem_wait` fails with `EINTR` when the
/// handler lacks `SA_RESTART` and `sem_timedwait` when it has it (the kernel restarts the
/// other cases itself), so both flag settings are tried: every path meets a real `EINTR`.
#[test]
#[cfg(target_os = "linux")]
fn signals_interrupt_waits_which_resume_and_return_when_posted() {
  use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
  use std::os::unix::thread::JoinHandleExt;

  let name = SemName::new();
  let sem = Arc::new(Semaphore::create(&name.0, 0).unwrap());
  let mut previous = None;
  for (flags, timed) in [
    (SaFlags::empty(), false),
    (SaFlags::empty(), true),
    (SaFlags::SA_RESTART, false),
    (SaFlags::SA_RESTART, true),
  ] {
    let handler = SigAction::new(SigHandler::Handler(count_signal), flags, SigSet::empty());
    // SAFETY: the handler only does an atomic add, which is async-signal-safe.
    let old = unsafe { sigaction(Signal::SIGUSR2, &handler) }.unwrap();
    previous.get_or_insert(old);
    HANDLED.store(0, Ordering::SeqCst);
    let tid = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let returned = Arc::new(AtomicBool::new(false));
    let waiter = {
      let (sem, tid, returned) = (sem.clone(), tid.clone(), returned.clone());
      std::thread::spawn(move || {
        tid.store(nix::unistd::gettid().as_raw(), Ordering::SeqCst);
        let result = if timed {
          sem
            .wait_timeout(Duration::from_secs(120))
            .map(|took| took.then_some(()))
        } else {
          sem.wait().map(Some)
        };
        returned.store(true, Ordering::SeqCst);
        result
      })
    };
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
      for _ in 0..12_000 {
        if ok() {
          return;
        }
        std::thread::sleep(Duration::from_millis(5));
      }
      panic!("timed out waiting for {what}");
    };
    wait_for("the thread id", &|| tid.load(Ordering::SeqCst) != 0);
    let tid = tid.load(Ordering::SeqCst);
    // std reports a u64; musl's pthread_t is a pointer.
    #[allow(clippy::unnecessary_cast, reason = "a no-op on glibc, a conversion on musl")]
    let thread = waiter.as_pthread_t() as libc::pthread_t;
    for round in 1..=3 {
      wait_for("the waiter to sleep in the futex", &|| in_futex_wait(tid));
      nix::sys::pthread::pthread_kill(thread, Signal::SIGUSR2).unwrap();
      wait_for("the handler", &|| HANDLED.load(Ordering::SeqCst) >= round);
      assert!(!returned.load(Ordering::SeqCst), "the wait returned after a signal");
    }
    wait_for("the waiter to sleep again", &|| in_futex_wait(tid));
    sem.post().unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), Some(()), "{flags:?}, timed = {timed}");
  }
  // SAFETY: restores the handler that was installed before this test.
  unsafe { sigaction(Signal::SIGUSR2, &previous.unwrap()) }.unwrap();
}
