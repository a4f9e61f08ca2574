//! A counter in anonymous shared memory, incremented by forked children that take turns
//! through a semaphore in the same memory.
//!
//! `cargo run -p shmkit --example fork_counter [children] [increments]`
//!
//! Layout of the 4096-byte region: the semaphore (`sem_init(pshared = 1)`, value 1, used as a
//! lock) at byte 0, the `u64` counter at byte 64. Each child does read-add-write on the counter,
//! which would lose updates without the lock; the parent checks that none were lost.
//!
//! macOS has no semaphores inside memory (`sem_init`); there the lock is a named semaphore,
//! which children inherit across `fork` just the same, and is unlinked at the end.

use std::sync::Arc;
use std::time::Duration;

use shmkit::{fork, unique_name, Error, ErrorKind, ObjectName, Region, Semaphore, Signal};

const LOCK_AT: usize = 0;
const COUNTER_AT: usize = 64;
/// Every wait is bounded: a bug shows up as an error, never as a hang.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() -> Result<(), Box<dyn std::error::Error>> {
  let mut args = std::env::args().skip(1);
  let children: u64 = args.next().map_or(Ok(4), |a| a.parse())?;
  let increments: u64 = args.next().map_or(Ok(10_000), |a| a.parse())?;

  let region = Arc::new(Region::anonymous(4096)?);
  let (lock, named) = lock_in(&region)?;
  let outcome = run(&region, &lock, children, increments);
  drop(lock);
  if let Some(name) = named {
    Semaphore::unlink(&name)?;
  }
  let counter = outcome?;
  let expected = children * increments;
  println!(
    "{}: {children} children x {increments} increments = {counter} (expected {expected})",
    if counter == expected { "ok" } else { "FAILED" }
  );
  if counter != expected {
    std::process::exit(1);
  }
  Ok(())
}

/// The lock: in the region where the platform allows it, else a fresh named semaphore (whose
/// name is returned so that it can be unlinked).
fn lock_in(region: &Arc<Region>) -> shmkit::Result<(Semaphore, Option<ObjectName>)> {
  match Semaphore::init_in(region.clone(), LOCK_AT, 1) {
    Ok(sem) => Ok((sem, None)),
    Err(e) if e.kind() == ErrorKind::Unsupported => {
      let name = unique_name("ctr");
      Ok((Semaphore::create(&name, 1)?, Some(name)))
    }
    Err(e) => Err(e),
  }
}

fn run(region: &Region, lock: &Semaphore, children: u64, increments: u64) -> Result<u64, Box<dyn std::error::Error>> {
  let mut forked = Vec::new();
  for _ in 0..children {
    // SAFETY: this program is single-threaded, so the child may use the allocator and
    // everything else; it only touches the region and the semaphore, and returns.
    let child = unsafe { fork(|| i32::from(increment(region, lock, increments).is_err())) }?;
    forked.push(child);
  }
  for mut child in forked {
    let status = match child.wait_timeout(PATIENCE) {
      Ok(status) => status,
      Err(e) => {
        child.kill(Signal::SIGKILL)?;
        child.wait()?;
        return Err(e.into());
      }
    };
    if !status.success() {
      return Err(format!("child {} ended with {status:?}", child.pid()).into());
    }
  }
  Ok(read_counter(region)?)
}

/// The child's work: `increments` times, take the lock, add one, release it.
fn increment(region: &Region, lock: &Semaphore, increments: u64) -> shmkit::Result<()> {
  for _ in 0..increments {
    if !lock.wait_timeout(PATIENCE)? {
      return Err(Error::timed_out("sem_timedwait"));
    }
    let value = read_counter(region)?;
    region.write_at(COUNTER_AT, &(value + 1).to_ne_bytes())?;
    lock.post()?;
  }
  Ok(())
}

fn read_counter(region: &Region) -> shmkit::Result<u64> {
  let mut bytes = [0u8; 8];
  region.read_at(COUNTER_AT, &mut bytes)?;
  Ok(u64::from_ne_bytes(bytes))
}
