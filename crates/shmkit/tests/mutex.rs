//! Robust process-shared mutexes: a holder that dies is reported to the next locker, handles
//! never unlock, and no bytes in the mutex can crash, abort or hang a locker.
#![cfg(any(target_os = "linux", target_os = "macos"))]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fork_lock;
use shmkit::{fork, Errno, ErrorKind, Lock, Region, RobustMutex};

fn shared_mutex() -> RobustMutex {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  RobustMutex::init_in(region, 64).unwrap()
}

fn word(mutex: &RobustMutex, at: usize) -> &AtomicU32 {
  mutex.region().atomic_u32(mutex.offset() + at).unwrap()
}

/// Forks a child that takes `mutex` and sleeps until killed; returns once it holds the lock.
fn forked_holder(mutex: &RobustMutex) -> shmkit::Child {
  let ready = Region::anonymous(4096).unwrap();
  let body = || {
    mutex.lock().unwrap();
    ready.write_at(0, &[1]).unwrap();
    loop {
      // SAFETY: pause is async-signal-safe and takes no arguments.
      unsafe { libc::pause() };
    }
  };
  // SAFETY: the child locks, flags it and sleeps until killed.
  let child = unsafe { fork(body) }.unwrap();
  while common::byte_at(&ready, 0) == 0 {
    std::thread::sleep(Duration::from_millis(1));
  }
  child
}

#[test]
fn a_dead_holder_is_reported_and_the_state_can_be_repaired() {
  let _lock = fork_lock();
  let mutex = shared_mutex();
  // SAFETY: the child only locks and exits without unlocking (as if it crashed).
  let mut child = unsafe { fork(|| i32::from(mutex.lock() != Ok(Lock::Acquired))) }.unwrap();
  assert_eq!(child.wait().unwrap().code(), Some(0));

  assert_eq!(mutex.lock().unwrap(), Lock::OwnerDied);
  mutex.make_consistent().unwrap();
  mutex.unlock().unwrap();
  assert_eq!(mutex.lock().unwrap(), Lock::Acquired, "back to normal after repair");
  mutex.unlock().unwrap();
}

#[test]
fn a_holder_killed_by_sigkill_is_reported_to_a_blocked_waiter() {
  let _lock = fork_lock();
  let mutex = shared_mutex();
  let mut child = forked_holder(&mutex);
  assert_eq!(mutex.try_lock().unwrap(), None, "held by the child");
  let killed_at = std::thread::scope(|scope| {
    let killer = scope.spawn(|| {
      std::thread::sleep(Duration::from_millis(100));
      let at = Instant::now();
      child.kill(shmkit::Signal::SIGKILL).unwrap();
      at
    });
    assert_eq!(mutex.lock_timeout(Duration::from_secs(30)).unwrap(), Lock::OwnerDied);
    let detected = Instant::now();
    let killed_at = killer.join().unwrap();
    println!(
      "owner death (SIGKILL) seen after {:.1} ms",
      detected.duration_since(killed_at).as_secs_f64() * 1e3
    );
    killed_at
  });
  let _ = killed_at;
  assert_eq!(child.wait().unwrap().signal(), Some(shmkit::Signal::SIGKILL));
  mutex.make_consistent().unwrap();
  mutex.unlock().unwrap();
}

#[test]
fn a_rust_thread_that_exits_holding_is_reported_at_once() {
  let mutex = Arc::new(shared_mutex());
  let exited = Arc::new(std::sync::Mutex::new(None::<Instant>));
  let holder = {
    let mutex = mutex.clone();
    let exited = exited.clone();
    std::thread::spawn(move || {
      assert_eq!(mutex.lock().unwrap(), Lock::Acquired);
      std::thread::sleep(Duration::from_millis(100));
      *exited.lock().unwrap() = Some(Instant::now());
      // Returns holding the lock; the handle is dropped here too.
    })
  };
  while word(&mutex, 0).load(Ordering::SeqCst) == 0 {
    std::thread::yield_now();
  }
  assert_eq!(mutex.lock_timeout(Duration::from_secs(30)).unwrap(), Lock::OwnerDied);
  let detected = Instant::now();
  holder.join().unwrap();
  let exited = exited.lock().unwrap().unwrap();
  println!(
    "owner death (Rust thread exit) seen after {:.1} ms",
    detected.duration_since(exited).as_secs_f64() * 1e3
  );
  mutex.make_consistent().unwrap();
  mutex.unlock().unwrap();
}

#[test]
fn a_thread_that_panics_holding_is_reported() {
  let mutex = Arc::new(shared_mutex());
  let holder = mutex.clone();
  let ended = std::thread::spawn(move || {
    holder.lock().unwrap();
    panic!("mid-update"); // unwinds past the handle, which must not unlock
  })
  .join();
  assert!(ended.is_err());
  assert_eq!(mutex.try_lock().unwrap(), Some(Lock::OwnerDied));
  mutex.make_consistent().unwrap();
  mutex.unlock().unwrap();
}

#[test]
fn abandoning_a_threads_locks_reports_them_as_owner_died() {
  let mutex = Arc::new(shared_mutex());
  mutex.lock().unwrap();
  RobustMutex::abandon_thread_locks();
  assert!(!mutex.is_held());
  let other = mutex.clone();
  let got = std::thread::spawn(move || {
    let got = other.try_lock().unwrap();
    other.make_consistent().unwrap();
    other.unlock().unwrap();
    got
  })
  .join()
  .unwrap();
  assert_eq!(got, Some(Lock::OwnerDied));
  assert_eq!(mutex.lock().unwrap(), Lock::Acquired, "the thread goes on locking");
  mutex.unlock().unwrap();
}

#[test]
fn a_forked_child_holds_nothing_of_its_parent() {
  let _lock = fork_lock();
  let mutex = shared_mutex();
  mutex.lock().unwrap();
  // SAFETY: the child only queries and tries the lock.
  let mut child = unsafe {
    fork(|| {
      let fine =
        !mutex.is_held() && mutex.try_lock() == Ok(None) && mutex.unlock().unwrap_err().errno() == Some(Errno::EPERM);
      i32::from(!fine)
    })
  }
  .unwrap();
  assert_eq!(child.wait().unwrap().code(), Some(0));
  assert!(mutex.is_held());
  mutex.unlock().unwrap();
}

#[test]
fn dropping_handles_never_unlocks() {
  let _lock = fork_lock();
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let mutex = RobustMutex::init_in(region.clone(), 0).unwrap();
  mutex.lock().unwrap();
  drop(RobustMutex::at(region.clone(), 0).unwrap());
  drop(mutex);
  // SAFETY: the child only tries the lock.
  let mut child = unsafe {
    fork(|| {
      let mutex = RobustMutex::at(region.clone(), 0).unwrap();
      i32::from(mutex.try_lock() != Ok(None))
    })
  }
  .unwrap();
  assert_eq!(child.wait().unwrap().code(), Some(0), "still held for another process");
  let again = RobustMutex::at(region, 0).unwrap();
  assert!(again.is_held());
  again.unlock().unwrap();
}

#[test]
fn unlocking_without_repair_makes_it_unrecoverable() {
  let _lock = fork_lock();
  let mutex = shared_mutex();
  // SAFETY: the child only locks and exits.
  let mut child = unsafe { fork(|| i32::from(mutex.lock().is_err())) }.unwrap();
  child.wait().unwrap();
  assert_eq!(mutex.lock().unwrap(), Lock::OwnerDied);
  mutex.unlock().unwrap();
  assert_eq!(mutex.lock().unwrap_err().errno(), Some(Errno::ENOTRECOVERABLE));
  assert_eq!(mutex.try_lock().unwrap_err().errno(), Some(Errno::ENOTRECOVERABLE));
}

#[test]
fn misuse_is_an_error_not_a_hang() {
  let mutex = Arc::new(shared_mutex());
  assert_eq!(mutex.unlock().unwrap_err().errno(), Some(Errno::EPERM));
  assert_eq!(mutex.make_consistent().unwrap_err().errno(), Some(Errno::EPERM));
  mutex.lock().unwrap();
  assert_eq!(mutex.lock().unwrap_err().errno(), Some(Errno::EDEADLK));
  assert_eq!(mutex.try_lock().unwrap_err().errno(), Some(Errno::EDEADLK));
  assert_eq!(mutex.make_consistent().unwrap_err().errno(), Some(Errno::EINVAL));
  let other = mutex.clone();
  std::thread::spawn(move || {
    assert_eq!(other.unlock().unwrap_err().errno(), Some(Errno::EPERM));
    assert_eq!(other.try_lock().unwrap(), None);
    let err = other.lock_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
  })
  .join()
  .unwrap();
  mutex.unlock().unwrap();
}

#[test]
fn lock_timeout_times_out_while_another_process_holds_it() {
  let _lock = fork_lock();
  let mutex = shared_mutex();
  let mut child = forked_holder(&mutex);
  let start = Instant::now();
  let err = mutex.lock_timeout(Duration::from_millis(50)).unwrap_err();
  assert_eq!(err.kind(), ErrorKind::TimedOut);
  assert!(start.elapsed() >= Duration::from_millis(50));
  child.kill(shmkit::Signal::SIGKILL).unwrap();
  child.wait().unwrap();
}

#[test]
fn threads_take_turns_exactly() {
  let mutex = Arc::new(shared_mutex());
  let counter = Arc::new(AtomicU32::new(0));
  let threads: Vec<_> = (0..4)
    .map(|_| {
      let mutex = mutex.clone();
      let counter = counter.clone();
      std::thread::spawn(move || {
        for _ in 0..20_000 {
          mutex.lock().unwrap();
          // A non-atomic read-modify-write: only the lock keeps it exact.
          let v = counter.load(Ordering::Relaxed);
          std::hint::spin_loop();
          counter.store(v + 1, Ordering::Relaxed);
          mutex.unlock().unwrap();
        }
      })
    })
    .collect();
  for t in threads {
    t.join().unwrap();
  }
  assert_eq!(counter.load(Ordering::SeqCst), 80_000);
}

/// Every bit pattern of the 32 bytes ends in a lock, `None`, a typed error or a timeout, and
/// the wait never outlives its timeout by much.
#[test]
fn any_bytes_give_a_typed_answer() {
  let mutex = shared_mutex();
  let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
  let mut next = || {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    seed
  };
  let mut worst = Duration::ZERO;
  for round in 0..3000 {
    for at in (0..32).step_by(4) {
      #[expect(clippy::cast_possible_truncation, reason = "random bits")]
      let value = match next() % 4 {
        0 => 0,
        1 => next() as u32 & 0x7fff_ffff, // a random owner, maybe flags
        2 => (next() as u32 & 0xe000_0000) | std::process::id(),
        _ => next() as u32,
      };
      word(&mutex, at).store(value, Ordering::SeqCst);
    }
    let timeout = Duration::from_millis(next() % 3);
    let start = Instant::now();
    let got = if round % 2 == 0 {
      mutex.lock_timeout(timeout).map(Some)
    } else {
      mutex.try_lock()
    };
    worst = worst.max(start.elapsed().saturating_sub(timeout));
    match got {
      Ok(Some(_)) => {
        let _ = mutex.make_consistent();
        mutex.unlock().unwrap();
      }
      Ok(None) => {}
      Err(e) => assert!(
        e.kind() == ErrorKind::TimedOut || matches!(e.errno(), Some(Errno::ENOTRECOVERABLE | Errno::EDEADLK)),
        "{e:?}"
      ),
    }
  }
  println!(
    "3000 scribbled states: worst overshoot {:.1} ms",
    worst.as_secs_f64() * 1e3
  );
}

#[test]
fn a_lock_word_naming_a_missing_thread_is_a_dead_owner() {
  let mutex = shared_mutex();
  // Owner field 0x1fff_fffe with its record complete but naming nobody.
  word(&mutex, 0).store((1 << 29) | 0x1fff_fffe, Ordering::SeqCst);
  assert_eq!(mutex.try_lock().unwrap(), Some(Lock::OwnerDied));
  mutex.make_consistent().unwrap();
  mutex.unlock().unwrap();
  // Owner field naming a thread id that does not exist, record incomplete.
  word(&mutex, 0).store(0x1fff_fffe, Ordering::SeqCst);
  assert_eq!(mutex.lock_timeout(Duration::from_secs(5)).unwrap(), Lock::OwnerDied);
  mutex.make_consistent().unwrap();
  mutex.unlock().unwrap();
}

#[test]
fn placement_is_checked() {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  assert_eq!(
    RobustMutex::init_in(region.clone(), 4096 - RobustMutex::SIZE + 8)
      .unwrap_err()
      .kind(),
    ErrorKind::InvalidSize
  );
  assert_eq!(
    RobustMutex::init_in(region.clone(), 4).unwrap_err().kind(),
    ErrorKind::InvalidSize
  );
  assert_eq!(
    RobustMutex::at(region, usize::MAX).unwrap_err().kind(),
    ErrorKind::InvalidSize
  );
}

/// shmkit never touches the C library's robust list: its head is the same before and after,
/// and a robust pthread mutex this thread holds stays on it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_glibc_robust_list_is_untouched() {
  fn head() -> usize {
    let mut head: *mut libc::c_void = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: pid 0 means this thread; both out-pointers are valid.
    let rc = unsafe { libc::syscall(libc::SYS_get_robust_list, 0, &raw mut head, &raw mut len) };
    assert_eq!(rc, 0);
    // SAFETY: the head is this thread's live robust_list_head; its first word is the list.
    unsafe { (head as *const usize).read_volatile() }
  }
  std::thread::spawn(|| {
    // A robust pthread mutex of "other code" on this thread, held throughout.
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    let mut theirs = Box::new(std::mem::MaybeUninit::<libc::pthread_mutex_t>::uninit());
    // SAFETY: standard initialisation of a robust mutex in heap storage that outlives it.
    unsafe {
      libc::pthread_mutexattr_init(attr.as_mut_ptr());
      libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST);
      libc::pthread_mutex_init(theirs.as_mut_ptr(), attr.as_ptr());
      assert_eq!(libc::pthread_mutex_lock(theirs.as_mut_ptr()), 0);
    }
    let before = head();
    let mutex = shared_mutex();
    for _ in 0..3 {
      mutex.lock().unwrap();
      assert_eq!(head(), before, "while held");
      mutex.unlock().unwrap();
    }
    assert_eq!(mutex.try_lock().unwrap(), Some(Lock::Acquired));
    drop(mutex);
    assert_eq!(head(), before, "after lock, unlock and drop");
    println!("glibc robust list head {before:#x} before and after");
    // SAFETY: this thread locked it above.
    unsafe {
      assert_eq!(libc::pthread_mutex_unlock(theirs.as_mut_ptr()), 0);
      libc::pthread_mutex_destroy(theirs.as_mut_ptr());
    }
  })
  .join()
  .unwrap();
}
