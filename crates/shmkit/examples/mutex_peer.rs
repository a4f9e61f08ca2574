//! The Rust process of the mutex tests (`__test__/mutex-processes.spec.ts`), beside Node.js
//! and C processes that use the same `RobustMutex` in a named segment.
//!
//! ```text
//! mutex_peer count NAME MUTEX_OFFSET COUNTER_OFFSET ROUNDS lock|nolock
//!     adds 1 to the u32 at COUNTER_OFFSET, ROUNDS times, as a plain read and write, under
//!     the mutex (or, as the control, without it); prints "done". Start barrier: adds 1 to
//!     the u32 at COUNTER_OFFSET + 64, then waits for the one at + 128 to be non-zero
//! mutex_peer churn NAME MUTEX_OFFSET STOP_OFFSET
//!     locks and unlocks with random timeouts until the u32 at STOP_OFFSET is non-zero, while
//!     another process scribbles over the mutex; prints a JSON report of what it saw
//! ```
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmkit::{ErrorKind, Lock, ObjectName, Region, RobustMutex};

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
  args
    .get(i)
    .and_then(|a| a.parse().ok())
    .unwrap_or_else(|| panic!("argument {i} missing or malformed; see the file's docs"))
}

fn main() -> shmkit::Result<()> {
  let args: Vec<String> = std::env::args().skip(1).collect();
  let name = ObjectName::new(args.get(1).map_or("", String::as_str))?;
  let region = Arc::new(Region::open(&name)?);
  let mutex = RobustMutex::at(region.clone(), arg(&args, 2))?;
  match args[0].as_str() {
    "count" => {
      let at: usize = arg(&args, 3);
      let counter = region.atomic_u32(at)?;
      let rounds: u32 = arg(&args, 4);
      region.atomic_u32(at + 64)?.fetch_add(1, Ordering::SeqCst);
      let go = region.atomic_u32(at + 128)?;
      while go.load(Ordering::SeqCst) == 0 {
        std::hint::spin_loop();
      }
      let locked = args.get(5).map(String::as_str) != Some("nolock");
      for _ in 0..rounds {
        if locked {
          mutex.lock()?;
        }
        // A plain read-modify-write with a short pause inside: only the lock keeps it exact.
        let value = counter.load(Ordering::Relaxed);
        for _ in 0..200 {
          std::hint::spin_loop();
        }
        counter.store(value.wrapping_add(1), Ordering::Relaxed);
        if locked {
          mutex.unlock()?;
        }
      }
      println!("done");
    }
    "churn" => churn(&mutex, region.atomic_u32(arg(&args, 3))?),
    other => panic!("unknown mode {other}"),
  }
  Ok(())
}

fn churn(mutex: &RobustMutex, stop: &std::sync::atomic::AtomicU32) {
  let mut seed = (u64::from(std::process::id()) * 0x9E37_79B9_7F4A_7C15) | 1;
  let mut random = move |below: u64| {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    seed % below
  };
  let mut codes: BTreeMap<String, u32> = BTreeMap::new();
  let (mut ops, mut locked, mut owner_died, mut timed_out, mut over_50ms) = (0u32, 0u32, 0u32, 0u32, 0u32);
  let mut worst = Duration::ZERO;
  while stop.load(Ordering::SeqCst) == 0 {
    ops += 1;
    let timeout = Duration::from_millis(random(20));
    let start = Instant::now();
    let got = if random(4) == 0 {
      mutex.try_lock()
    } else {
      mutex.lock_timeout(timeout).map(Some)
    };
    match got {
      Ok(Some(lock)) => {
        locked += 1;
        if lock == Lock::OwnerDied {
          owner_died += 1;
          if random(2) == 0 {
            let _ = mutex.make_consistent();
          }
        }
        std::thread::sleep(Duration::from_micros(random(300)));
        if let Err(e) = mutex.unlock() {
          *codes.entry(e.code().unwrap_or_else(|| "UNTYPED".into())).or_default() += 1;
        }
      }
      Ok(None) => {}
      Err(e) => {
        if e.kind() == ErrorKind::TimedOut {
          let overshoot = start.elapsed().saturating_sub(timeout);
          timed_out += 1;
          over_50ms += u32::from(overshoot > Duration::from_millis(50));
          worst = worst.max(overshoot);
        }
        *codes.entry(e.code().unwrap_or_else(|| "UNTYPED".into())).or_default() += 1;
        if e.errno() == Some(shmkit::Errno::ENOTRECOVERABLE) {
          std::thread::sleep(Duration::from_millis(1));
        }
      }
    }
  }
  let codes: Vec<String> = codes.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
  println!(
    "{{\"ops\":{ops},\"locked\":{locked},\"ownerDied\":{owner_died},\"timedOut\":{timed_out},\"over50ms\":{over_50ms},\"maxOvershootMs\":{:.3},\"codes\":{{{}}}}}",
    worst.as_secs_f64() * 1e3,
    codes.join(",")
  );
}
