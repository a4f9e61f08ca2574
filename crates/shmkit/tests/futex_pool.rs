//! `shmkit::futex_pool`: waits settled by the shared waiter threads, woken from another
//! process. Where there is no `futex_waitv` (macOS, user-mode emulators) the pool polls,
//! and every test must pass the same.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fork_lock;
use shmkit::futex_pool::{self, Deliver, WaitWord, MAX_THREADS, SLOTS};
use shmkit::{fork, futex, Region, WaitOutcome};

/// Word `index` of a shared region (the region stays mapped while the pool holds it).
struct RegionWord(Arc<Region>, usize);

impl WaitWord for RegionWord {
  fn word(&self) -> &AtomicU32 {
    self.0.atomic_u32(self.1 * 4).unwrap()
  }
}

fn word(region: &Arc<Region>, index: usize) -> Arc<dyn WaitWord> {
  Arc::new(RegionWord(region.clone(), index))
}

/// A delivery is one batch: each settled wait with the value its word held when delivered.
type Batch = Vec<(u64, WaitOutcome, u32)>;

/// A destination that sends each batch to the returned receiver.
fn destination(region: &Arc<Region>, index: usize) -> (Arc<dyn Deliver>, Receiver<Batch>) {
  let (tx, rx) = mpsc::channel();
  let region = region.clone();
  let dest: Arc<dyn Deliver> = Arc::new(move |done: Vec<(u64, WaitOutcome)>| {
    let value = region.atomic_u32(index * 4).unwrap().load(Ordering::SeqCst);
    let _ = tx.send(done.into_iter().map(|(id, outcome)| (id, outcome, value)).collect());
  });
  (dest, rx)
}

/// Settled waits from `rx`, until `count` have arrived or 10 s pass.
fn collect(rx: &Receiver<Batch>, count: usize) -> Vec<(u64, WaitOutcome, u32)> {
  let deadline = Instant::now() + Duration::from_secs(10);
  let mut all = Vec::new();
  while all.len() < count {
    let Ok(batch) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
      break;
    };
    all.extend(batch);
  }
  all.sort_by_key(|(id, _, _)| *id);
  all
}

/// Forks a child that, after 50 ms, stores 1 in each of `words` and wakes it.
fn wake_from_child(region: &Arc<Region>, words: std::ops::Range<usize>) -> shmkit::Child {
  let region = region.clone();
  let wake = move || {
    std::thread::sleep(Duration::from_millis(50));
    let mut failed = 0;
    for i in words.clone() {
      let word = region.atomic_u32(i * 4).unwrap();
      word.store(1, Ordering::SeqCst);
      failed |= i32::from(futex::wake_all(word).is_err());
    }
    failed
  };
  // SAFETY: the child only stores to shared words and makes futex calls.
  unsafe { fork(wake) }.unwrap()
}

#[test]
fn a_wake_from_another_process_settles_the_wait_as_woken() {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let (dest, rx) = destination(&region, 0);
  futex_pool::add(word(&region, 0), 0, &dest, 1, None).unwrap();
  let _lock = fork_lock();
  let mut child = wake_from_child(&region, 0..1);
  let done = collect(&rx, 1);
  assert_eq!(child.wait().unwrap().code(), Some(0));
  assert_eq!(done, [(1, WaitOutcome::Woken, 1)], "settled after the child's store");
}

#[test]
fn a_deadline_settles_the_wait_as_timed_out() {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let (dest, rx) = destination(&region, 0);
  let started = Instant::now();
  let deadline = started + Duration::from_millis(30);
  futex_pool::add(word(&region, 0), 0, &dest, 1, Some(deadline)).unwrap();
  let done = collect(&rx, 1);
  assert_eq!(done, [(1, WaitOutcome::TimedOut, 0)]);
  assert!(Instant::now() >= deadline, "not before its deadline");
}

#[test]
fn waits_on_one_word_and_value_all_settle_on_one_wake_and_another_value_at_once() {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let (first, first_rx) = destination(&region, 0);
  let (second, second_rx) = destination(&region, 0);
  for id in 1..=3 {
    futex_pool::add(word(&region, 0), 0, &first, id, None).unwrap();
  }
  futex_pool::add(word(&region, 0), 0, &second, 4, None).unwrap();
  // The word holds 0, not 7: this wait settles at once, the others keep waiting.
  futex_pool::add(word(&region, 0), 7, &second, 5, None).unwrap();
  assert_eq!(collect(&second_rx, 1), [(5, WaitOutcome::Woken, 0)]);

  let _lock = fork_lock();
  let mut child = wake_from_child(&region, 0..1);
  let batch = first_rx.recv_timeout(Duration::from_secs(10)).unwrap();
  let second_done = collect(&second_rx, 1);
  assert_eq!(child.wait().unwrap().code(), Some(0));
  let mut ids: Vec<u64> = batch.iter().map(|(id, _, _)| *id).collect();
  ids.sort_unstable();
  assert_eq!(ids, [1, 2, 3], "one batch for the destination's three waits: {batch:?}");
  assert!(batch
    .iter()
    .all(|&(_, outcome, value)| outcome == WaitOutcome::Woken && value == 1));
  assert_eq!(second_done, [(4, WaitOutcome::Woken, 1)]);
}

#[test]
fn words_beyond_the_threads_capacity_are_polled() {
  let watched = MAX_THREADS * SLOTS;
  let words = watched + 100;
  let region = Arc::new(Region::anonymous(words * 4).unwrap());
  let (dest, rx) = destination(&region, 0);
  for i in 0..words {
    futex_pool::add(word(&region, i), 0, &dest, i as u64, None).unwrap();
  }
  // Only the words added last, which no `futex_waitv` watches, change: nothing watched
  // wakes a thread, so only polling can see them.
  let _lock = fork_lock();
  let mut child = wake_from_child(&region, watched..words);
  let done = collect(&rx, words - watched);
  assert_eq!(child.wait().unwrap().code(), Some(0));
  futex_pool::forget(&dest);
  let expected: Vec<(u64, WaitOutcome)> = (watched..words).map(|i| (i as u64, WaitOutcome::Woken)).collect();
  let settled: Vec<(u64, WaitOutcome)> = done.iter().map(|&(id, outcome, _)| (id, outcome)).collect();
  assert_eq!(settled, expected, "exactly the changed words settled");
}

#[test]
fn a_removed_wait_is_never_delivered() {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let (dest, rx) = destination(&region, 0);
  futex_pool::add(word(&region, 0), 0, &dest, 1, None).unwrap();
  futex_pool::add(word(&region, 0), 0, &dest, 2, None).unwrap();
  futex_pool::remove(&dest, 1);
  let _lock = fork_lock();
  let mut child = wake_from_child(&region, 0..1);
  // Both shared one word and value, so they would have settled in the same batch.
  let batch = rx.recv_timeout(Duration::from_secs(10)).unwrap();
  assert_eq!(child.wait().unwrap().code(), Some(0));
  assert_eq!(batch, [(2, WaitOutcome::Woken, 1)]);
}

#[test]
fn a_forgotten_destination_gets_nothing() {
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let (gone, gone_rx) = destination(&region, 0);
  let (kept, kept_rx) = destination(&region, 0);
  // Far enough off that the waits are surely still pending when `forget` runs, even under
  // an emulator.
  let deadline = Instant::now() + Duration::from_millis(300);
  futex_pool::add(word(&region, 0), 0, &gone, 1, Some(deadline)).unwrap();
  futex_pool::add(word(&region, 1), 0, &gone, 2, None).unwrap();
  futex_pool::add(word(&region, 0), 0, &kept, 3, Some(deadline)).unwrap();
  futex_pool::forget(&gone);
  assert_eq!(collect(&kept_rx, 1), [(3, WaitOutcome::TimedOut, 0)]);
  let _lock = fork_lock();
  let mut child = wake_from_child(&region, 0..2);
  assert_eq!(child.wait().unwrap().code(), Some(0));
  // Give the threads time to (wrongly) deliver after the wake and past the deadline.
  std::thread::sleep(Duration::from_millis(100));
  let delivered = gone_rx.try_recv();
  assert!(delivered.is_err(), "nothing for a forgotten destination: {delivered:?}");
}
