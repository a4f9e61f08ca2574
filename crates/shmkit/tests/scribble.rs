//! The Rust side of the scribble test: while forked children write random bytes over
//! semaphores and futex words at random moments, this process and a forked peer wait, post
//! and wake on them. Nothing may panic or crash, every error is `EINVAL` or `EOVERFLOW`, and
//! no wait lasts far past its timeout.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fork_lock;
use shmkit::{fork, futex, Errno, Region, Semaphore};

const ROUNDS: u32 = 2000;
const SEMS: [usize; 4] = [256, 288, 320, 352];

/// A small xorshift generator; `seed` must not be 0.
struct Rng(u64);

impl Rng {
  fn below(&mut self, n: u64) -> u64 {
    self.0 ^= self.0 << 13;
    self.0 ^= self.0 >> 7;
    self.0 ^= self.0 << 17;
    self.0 % n
  }
}

/// Runs ROUNDS random operations; returns (longest overrun of a timed wait, untyped errors).
fn act(region: &Arc<Region>, seed: u64) -> (Duration, u32) {
  let mut rng = Rng(seed);
  let mut worst = Duration::ZERO;
  let mut untyped = 0;
  let mut check = |result: shmkit::Result<()>| {
    if let Err(e) = result {
      if !matches!(e.errno(), Some(Errno::EINVAL | Errno::EOVERFLOW)) {
        untyped += 1;
      }
    }
  };
  for _ in 0..ROUNDS {
    let timeout = Duration::from_millis(rng.below(10));
    let offset = SEMS[usize::try_from(rng.below(4)).unwrap()];
    let word: &AtomicU32 = region.atomic_u32(usize::try_from(rng.below(16)).unwrap() * 4).unwrap();
    let start = Instant::now();
    match rng.below(5) {
      0 => {
        let current = word.load(Ordering::SeqCst);
        check(futex::wait(word, current, Some(timeout)).map(drop));
      }
      1 => {
        word.fetch_add(1, Ordering::SeqCst);
        check(futex::wake(word, 1).map(drop));
      }
      2 => check(
        Semaphore::at(region.clone(), offset)
          .and_then(|s| s.wait_timeout(timeout))
          .map(drop),
      ),
      3 => check(Semaphore::at(region.clone(), offset).and_then(|s| s.post())),
      _ => check(
        Semaphore::at(region.clone(), offset)
          .and_then(|s| s.try_wait())
          .map(drop),
      ),
    }
    worst = worst.max(start.elapsed().saturating_sub(timeout));
  }
  (worst, untyped)
}

#[test]
fn random_bytes_over_semaphores_and_words_never_crash_or_hang() {
  let _lock = fork_lock();
  let region = Arc::new(Region::anonymous(4096).unwrap());
  for offset in SEMS {
    Semaphore::init_in(region.clone(), offset, 1).unwrap();
  }
  let stop = region.atomic_u32(1024).unwrap();
  let scribble = || {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    while stop.load(Ordering::SeqCst) == 0 {
      let at = usize::try_from(rng.below(384)).unwrap();
      let len = usize::try_from(rng.below(16) + 1).unwrap().min(384 - at);
      let bytes: Vec<u8> = (0..len).map(|_| u8::try_from(rng.below(256)).unwrap()).collect();
      if region.write_at(at, &bytes).is_err() {
        return 2;
      }
      if rng.below(3) == 0 {
        // A valid semaphore now and then, so that waits and posts keep happening.
        let mut valid = [0u8; 16];
        valid[0] = u8::try_from(rng.below(3)).unwrap();
        valid[8] = 128;
        let _ = region.write_at(SEMS[usize::try_from(rng.below(4)).unwrap()], &valid);
      }
      std::thread::sleep(Duration::from_micros(rng.below(2000)));
    }
    0
  };
  // SAFETY: the children only touch the region (and the allocator, which is fine: this test
  // file is single-threaded while it forks) and exit.
  let mut scribbler = unsafe { fork(scribble) }.unwrap();
  let peer_region = region.clone();
  // SAFETY: as above.
  let mut peer = unsafe {
    fork(move || {
      let (worst, untyped) = act(&peer_region, 0x1234_5678);
      i32::from(untyped > 0) * 2 + i32::from(worst > Duration::from_secs(1))
    })
  }
  .unwrap();
  let (worst, untyped) = act(&region, 0xDEAD_BEEF);
  let peer_status = peer.wait_timeout(Duration::from_secs(120)).unwrap();
  stop.store(1, Ordering::SeqCst);
  let scribbler_status = scribbler.wait_timeout(Duration::from_secs(60)).unwrap();
  assert!(peer_status.success(), "the forked peer: {peer_status:?}");
  assert!(scribbler_status.success(), "{scribbler_status:?}");
  assert_eq!(untyped, 0, "every error is EINVAL or EOVERFLOW");
  eprintln!("longest wait past its timeout: {worst:?}");
  // Generous: the measurement is printed above.
  assert!(worst < Duration::from_secs(1), "{worst:?}");
}
