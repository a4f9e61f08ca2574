//! One of several processes (Node, C, Rust) that add to a counter in a named segment, taking
//! turns through one of shmkit's primitives. The cross-language exactness test runs it.
//!
//! `cargo run -p shmkit --example word_counter -- SEGMENT ROUNDS MODE [SEMAPHORE]`
//!
//! Layout (as `__test__/interop/word_peer.c`): byte 0 the counter (`i32`), byte 64 a lock
//! word, byte 128 a start barrier (each process adds 1, then all wait until it reads 4), byte
//! 256 an in-region semaphore. `MODE` is `lock` (the three-state futex lock on
//! [`shmkit::futex`]: 0 free, 1 locked, 2 locked with waiters), `sem-region`, `sem-named`
//! (the named semaphore `SEMAPHORE`) or `none`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use shmkit::{futex, Region, Semaphore};

fn lock(word: &AtomicU32) -> shmkit::Result<()> {
  let Err(mut c) = word.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed) else {
    return Ok(());
  };
  if c != 2 {
    c = word.swap(2, Ordering::Acquire);
  }
  while c != 0 {
    futex::wait(word, 2, None)?;
    c = word.swap(2, Ordering::Acquire);
  }
  Ok(())
}

fn unlock(word: &AtomicU32) -> shmkit::Result<()> {
  if word.fetch_sub(1, Ordering::Release) != 1 {
    word.store(0, Ordering::Release);
    futex::wake(word, 1)?;
  }
  Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
  let args: Vec<String> = std::env::args().skip(1).collect();
  let [segment, rounds, mode, rest @ ..] = args.as_slice() else {
    return Err("usage: word_counter SEGMENT ROUNDS lock|sem-region|sem-named|none [SEMAPHORE]".into());
  };
  let rounds: u64 = rounds.parse()?;
  let region = Arc::new(Region::open(segment.as_str())?);
  let sem = match mode.as_str() {
    "sem-region" => Some(Semaphore::at(region.clone(), 256)?),
    "sem-named" => Some(Semaphore::open(
      rest.first().ok_or("sem-named needs a SEMAPHORE")?.as_str(),
    )?),
    _ => None,
  };
  let word = region.atomic_u32(64)?;
  let barrier = region.atomic_u32(128)?;
  barrier.fetch_add(1, Ordering::SeqCst);
  futex::wake_all(barrier)?;
  loop {
    let b = barrier.load(Ordering::SeqCst);
    if b >= 4 {
      break;
    }
    futex::wait(barrier, b, None)?;
  }
  #[expect(clippy::cast_ptr_alignment, reason = "byte 0 of a page-aligned mapping")]
  let counter = region.as_ptr().cast::<i32>();
  for _ in 0..rounds {
    match (mode.as_str(), &sem) {
      ("lock", _) => lock(word)?,
      (_, Some(sem)) => sem.wait()?,
      _ => {}
    }
    // SAFETY: bytes 0..4 of the live mapping; a plain read and write, so only the lock keeps
    // the count exact (volatile, so the rounds are not merged).
    unsafe { counter.write_volatile(counter.read_volatile().wrapping_add(1)) };
    match (mode.as_str(), &sem) {
      ("lock", _) => unlock(word)?,
      (_, Some(sem)) => sem.post()?,
      _ => {}
    }
  }
  println!("done");
  Ok(())
}
