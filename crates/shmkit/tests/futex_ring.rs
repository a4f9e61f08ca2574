//! `shmkit::futex_ring`: futex waits on an `io_uring`, completed through its eventfd, woken
//! from another process.
#![cfg(target_os = "linux")]

mod common;

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::fork_lock;
use shmkit::futex_ring::FutexRing;
use shmkit::{fork, futex, Region, WaitOutcome};

/// Whether this kernel has `IORING_OP_FUTEX_WAIT` (6.7) and lets this process use `io_uring`
/// (qemu-user implements no `io_uring` at all: there the refusal is what is checked).
fn kernel_has_futex_wait() -> bool {
  if common::under_user_mode_emulation() {
    return false;
  }
  let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
  let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
  let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
  let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").is_ok_and(|s| s.trim() != "0");
  version >= (6, 7) && !disabled
}

/// The ring; on a kernel without `io_uring` futex waits, the refusal is checked instead.
fn ring_or_refusal() -> Option<FutexRing> {
  match FutexRing::new() {
    Ok(ring) => {
      assert!(
        kernel_has_futex_wait(),
        "a ring on a kernel that cannot wait on futexes"
      );
      Some(ring)
    }
    Err(e) => {
      assert!(
        !kernel_has_futex_wait(),
        "this kernel has io_uring futex waits, yet: {e}"
      );
      assert!(e.errno().is_some(), "an OS error: {e}");
      None
    }
  }
}

/// Waits up to 10 s for the eventfd, then takes every completion.
fn reap_after_signal(ring: &FutexRing) -> Vec<(u64, shmkit::Result<WaitOutcome>)> {
  let deadline = Instant::now() + Duration::from_secs(10);
  loop {
    let mut fds = [libc::pollfd {
      fd: ring.eventfd().as_raw_fd(),
      events: libc::POLLIN,
      revents: 0,
    }];
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) };
    let done = ring.reap();
    if !done.is_empty() || Instant::now() > deadline {
      return done;
    }
  }
}

#[test]
fn a_wake_from_another_process_completes_the_wait_through_the_eventfd() {
  let Some(ring) = ring_or_refusal() else { return };
  let region = Region::anonymous(4096).unwrap();
  let word = region.atomic_u32(0).unwrap();
  ring.arm(word, 0, 1, None).unwrap();
  assert!(ring.reap().is_empty(), "nothing completes before the wake");
  let _lock = fork_lock();
  let wake = || {
    std::thread::sleep(Duration::from_millis(50));
    word.store(1, Ordering::SeqCst);
    futex::wake_all(word).map_or(1, |_| 0)
  };
  // SAFETY: the child only stores to the shared word and makes a futex call.
  let mut child = unsafe { fork(wake) }.unwrap();
  let done = reap_after_signal(&ring);
  assert_eq!(child.wait().unwrap().code(), Some(0));
  assert_eq!(done.len(), 1, "one completion: {done:?}");
  assert_eq!(done[0].0, 1);
  assert_eq!(done[0].1.as_ref().ok(), Some(&WaitOutcome::Woken));
}

#[test]
fn a_word_that_moved_on_answers_not_equal_and_a_deadline_times_out() {
  let Some(ring) = ring_or_refusal() else { return };
  let region = Region::anonymous(4096).unwrap();
  let word = region.atomic_u32(0).unwrap();
  word.store(5, Ordering::SeqCst);
  ring.arm(word, 4, 1, None).unwrap();
  let done = reap_after_signal(&ring);
  assert_eq!(done.len(), 1);
  assert_eq!(done[0].1.as_ref().ok(), Some(&WaitOutcome::NotEqual));

  let started = Instant::now();
  ring.arm(word, 5, 2, Some(started + Duration::from_millis(30))).unwrap();
  let done = reap_after_signal(&ring);
  assert_eq!(done.len(), 1, "one outcome for the timed wait: {done:?}");
  assert_eq!(done[0].0, 2);
  assert_eq!(done[0].1.as_ref().ok(), Some(&WaitOutcome::TimedOut));
  assert!(
    started.elapsed() >= Duration::from_millis(30),
    "not before its deadline"
  );
}

#[test]
fn a_cancelled_wait_never_completes() {
  let Some(ring) = ring_or_refusal() else { return };
  let region = Region::anonymous(4096).unwrap();
  let word = region.atomic_u32(0).unwrap();
  ring
    .arm(word, 0, 1, Some(Instant::now() + Duration::from_secs(60)))
    .unwrap();
  ring.cancel(1);
  ring.arm(word, 0, 2, None).unwrap();
  word.store(1, Ordering::SeqCst);
  futex::wake_all(word).unwrap();
  let done = reap_after_signal(&ring);
  let ids: Vec<u64> = done.iter().map(|(id, _)| *id).collect();
  assert_eq!(ids, [2], "only the wait still armed completes");
}
