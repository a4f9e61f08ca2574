//! The Rust process of the scribble test: waits, posts and wakes on a named segment's words
//! and semaphores while another process writes random bytes over them.
//!
//! `cargo run -p shmkit --example scribble_actor -- SEGMENT SEMAPHORE ROUNDS`
//!
//! Layout as `__test__/fixtures/scribble-actor.mjs`: 16 words at byte 0, in-region
//! semaphores at bytes 256, 288, 320 and 352, and the named semaphore `SEMAPHORE`. Prints
//! one JSON line: `{"rounds":…,"untyped":[…],"timed":…,"maxOverrun":…,"over50":…}`
//! (`untyped`: errors other than `EINVAL`/`EOVERFLOW`; overruns in ms past a wait's timeout).

use std::sync::Arc;
use std::time::{Duration, Instant};

use shmkit::{futex, Errno, Region, Semaphore};

const SEMS: [usize; 4] = [256, 288, 320, 352];

fn main() -> Result<(), Box<dyn std::error::Error>> {
  let args: Vec<String> = std::env::args().skip(1).collect();
  let [segment, sem_name, rounds] = args.as_slice() else {
    return Err("usage: scribble_actor SEGMENT SEMAPHORE ROUNDS".into());
  };
  let rounds: u32 = rounds.parse()?;
  let region = Arc::new(Region::open(segment.as_str())?);
  let named = Semaphore::open(sem_name.as_str())?;
  let mut seed = u64::from(std::process::id()) | 1;
  let mut below = |n: u64| {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    usize::try_from(seed % n).unwrap_or(0)
  };
  let mut untyped = Vec::new();
  let mut overruns = Vec::new();
  for _ in 0..rounds {
    let timeout = Duration::from_millis(u64::try_from(below(10)).unwrap_or(0));
    let word = region.atomic_u32(below(16) * 4)?;
    let attached;
    let sem = if below(5) == 4 {
      &named
    } else {
      match Semaphore::at(region.clone(), SEMS[below(4)]) {
        Ok(s) => {
          attached = s;
          &attached
        }
        Err(e) => {
          if e.errno() != Some(Errno::EINVAL) {
            untyped.push(e.to_string());
          }
          continue;
        }
      }
    };
    let start = Instant::now();
    let (result, timed) = match below(4) {
      0 => {
        let current = word.load(std::sync::atomic::Ordering::SeqCst);
        (futex::wait(word, current, Some(timeout)).map(drop), true)
      }
      1 => {
        word.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (futex::wake(word, 1).map(drop), false)
      }
      2 => (sem.wait_timeout(timeout).map(drop), true),
      _ => (sem.post(), false),
    };
    if timed {
      overruns.push(start.elapsed().saturating_sub(timeout).as_secs_f64() * 1000.0);
    }
    if let Err(e) = result {
      if !matches!(e.errno(), Some(Errno::EINVAL | Errno::EOVERFLOW)) {
        untyped.push(e.to_string());
      }
    }
  }
  let max = overruns.iter().copied().fold(0.0, f64::max);
  let over50 = overruns.iter().filter(|&&ms| ms > 50.0).count();
  let untyped: Vec<String> = untyped.iter().take(5).map(|e| format!("{e:?}")).collect();
  println!(
    "{{\"rounds\":{rounds},\"untyped\":[{}],\"codes\":{{}},\"timed\":{},\"maxOverrun\":{max},\"over50\":{over50}}}",
    untyped.join(","),
    overruns.len()
  );
  Ok(())
}
