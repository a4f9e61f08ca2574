//! Robust process-shared mutexes: a holder that dies is reported to the next locker.
#![cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::fork_lock;
use shmkit::{fork, mutex_size, Errno, ErrorKind, Lock, Region, RobustMutex};

fn shared_mutex() -> RobustMutex {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  RobustMutex::init_in(region, 64).unwrap()
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
fn a_holder_killed_by_sigkill_is_reported() {
  let _lock = fork_lock();
  let mutex = shared_mutex();
  let mut child = forked_holder(&mutex);
  assert_eq!(mutex.try_lock().unwrap(), None, "held by the child");
  child.kill(shmkit::Signal::SIGKILL).unwrap();
  assert_eq!(child.wait().unwrap().signal(), Some(shmkit::Signal::SIGKILL));
  assert_eq!(mutex.lock_timeout(Duration::from_secs(30)).unwrap(), Lock::OwnerDied);
  mutex.make_consistent().unwrap();
  mutex.unlock().unwrap();
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
}

#[test]
fn misuse_is_an_error_not_a_hang() {
  let mutex = shared_mutex();
  assert_eq!(mutex.unlock().unwrap_err().errno(), Some(Errno::EPERM));
  mutex.lock().unwrap();
  assert_eq!(mutex.lock().unwrap_err().errno(), Some(Errno::EDEADLK));
  mutex.unlock().unwrap();
}

#[test]
fn lock_timeout_times_out_while_another_process_holds_it() {
  let _lock = fork_lock();
  let mutex = shared_mutex();
  let mut child = forked_holder(&mutex);
  let err = mutex.lock_timeout(Duration::from_millis(20)).unwrap_err();
  assert_eq!(err.kind(), ErrorKind::TimedOut);
  child.kill(shmkit::Signal::SIGKILL).unwrap();
  child.wait().unwrap();
}

#[test]
fn placement_is_checked() {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  assert_eq!(
    RobustMutex::init_in(region.clone(), 4096 - mutex_size() + 8)
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
