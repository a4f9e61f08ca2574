//! `fork`, `wait`, `try_wait`, `wait_timeout` and `kill`.

mod common;

use std::time::Duration;

use common::fork_lock;
use shmkit::{fork, ErrorKind, Region, Signal};

#[test]
fn exit_code_is_reported() {
  let _lock = fork_lock();
  // SAFETY: the child returns a code at once.
  let mut child = unsafe { fork(|| 42) }.unwrap();
  assert!(child.pid() > 0);
  let status = child.wait().unwrap();
  assert_eq!(status.code(), Some(42));
  assert_eq!(status.signal(), None);
  assert_eq!(
    child.wait().unwrap(),
    status,
    "a second wait returns the recorded status"
  );
}

#[test]
fn a_panicking_child_exits_101() {
  let _lock = fork_lock();
  // SAFETY: the child panics; the hook prints (it may allocate; this binary's other threads
  // hold no locks the child needs while the fork lock is held).
  let mut child = unsafe { fork(|| panic!("boom in child")) }.unwrap();
  assert_eq!(child.wait().unwrap().code(), Some(101));
}

#[test]
fn killed_child_reports_the_signal() {
  let _lock = fork_lock();
  let sleep_forever = || loop {
    // SAFETY: pause is async-signal-safe and takes no arguments.
    unsafe { nix::libc::pause() };
  };
  // SAFETY: the child only sleeps.
  let mut child = unsafe { fork(sleep_forever) }.unwrap();
  assert_eq!(child.try_wait().unwrap(), None, "still running");
  child.kill(Signal::SIGKILL).unwrap();
  let status = child.wait().unwrap();
  assert_eq!(status.signal(), Some(Signal::SIGKILL));
  assert_eq!(status.code(), None);
}

#[test]
fn wait_timeout_times_out_then_succeeds_after_kill() {
  let _lock = fork_lock();
  let sleep_forever = || loop {
    // SAFETY: pause is async-signal-safe and takes no arguments.
    unsafe { nix::libc::pause() };
  };
  // SAFETY: the child only sleeps.
  let mut child = unsafe { fork(sleep_forever) }.unwrap();
  let err = child.wait_timeout(Duration::from_millis(50)).unwrap_err();
  assert_eq!(err.kind(), ErrorKind::TimedOut);
  assert_eq!(err.errno(), Some(shmkit::Errno::ETIMEDOUT));
  child.kill(Signal::SIGTERM).unwrap();
  let status = child.wait_timeout(Duration::from_secs(30)).unwrap();
  assert_eq!(status.signal(), Some(Signal::SIGTERM));
}

#[test]
fn wait_timeout_returns_the_exit_of_a_quick_child() {
  let _lock = fork_lock();
  // SAFETY: the child returns at once.
  let mut child = unsafe { fork(|| 3) }.unwrap();
  assert_eq!(child.wait_timeout(Duration::from_secs(30)).unwrap().code(), Some(3));
}

#[test]
fn many_forks_leave_no_zombies() {
  let _lock = fork_lock();
  let region = Region::anonymous(4096).unwrap();
  for i in 0..200u8 {
    // SAFETY: the child writes one byte and returns.
    let mut child = unsafe {
      fork(|| {
        region.write_at(0, &[i]).unwrap();
        0
      })
    }
    .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(common::byte_at(&region, 0), i);
  }
  // No child of ours is left to reap.
  assert_eq!(
    nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).unwrap_err(),
    nix::errno::Errno::ECHILD
  );
}

#[test]
fn kill_after_reaping_sends_nothing() {
  let _lock = fork_lock();
  // SAFETY: the child returns at once.
  let mut child = unsafe { fork(|| 0) }.unwrap();
  child.wait().unwrap();
  assert!(
    !child.kill(Signal::SIGKILL).unwrap(),
    "a reaped pid may belong to someone else"
  );
}

#[test]
fn exit_waiter_blocks_another_thread_until_the_end_without_reaping() {
  let _lock = fork_lock();
  let sleep_forever = || loop {
    // SAFETY: pause is async-signal-safe and takes no arguments.
    unsafe { nix::libc::pause() };
  };
  // SAFETY: the child only sleeps.
  let mut child = unsafe { fork(sleep_forever) }.unwrap();
  let waiter = child.exit_waiter();
  let (tx, rx) = std::sync::mpsc::channel();
  let thread = std::thread::spawn(move || tx.send(waiter.wait()).unwrap());
  assert!(
    rx.recv_timeout(Duration::from_millis(100)).is_err(),
    "still blocked while the child runs"
  );
  assert!(child.kill(Signal::SIGKILL).unwrap());
  rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
  thread.join().unwrap();
  // The waiter did not reap: the status is still there for the owner.
  assert_eq!(child.try_wait().unwrap().unwrap().signal(), Some(Signal::SIGKILL));
  // And a waiter made after reaping returns at once.
  child.exit_waiter().wait().unwrap();
}

#[test]
fn a_child_value_inherited_by_another_process_cannot_wait_or_kill() {
  let _lock = fork_lock();
  let sleep_forever = || loop {
    // SAFETY: pause is async-signal-safe and takes no arguments.
    unsafe { nix::libc::pause() };
  };
  // SAFETY: the child only sleeps.
  let mut sibling = unsafe { fork(sleep_forever) }.unwrap();
  let body = || {
    let kill = sibling.kill(Signal::SIGKILL).map_err(|e| e.errno());
    i32::from(kill == Err(Some(shmkit::Errno::EPERM)))
  };
  // SAFETY: the child makes two syscalls.
  let mut child = unsafe { fork(body) }.unwrap();
  assert_eq!(child.wait_timeout(Duration::from_secs(30)).unwrap().code(), Some(1));
  assert_eq!(sibling.try_wait().unwrap(), None, "the sibling was not killed");
  sibling.kill(Signal::SIGKILL).unwrap();
  assert_eq!(sibling.wait().unwrap().signal(), Some(Signal::SIGKILL));
}
