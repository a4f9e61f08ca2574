//! Producer/consumer between two unrelated processes, by name: a ring of slots in a named
//! shared-memory segment, guarded by two named semaphores. `items` counts filled slots,
//! `slots` counts free ones, so neither process ever reads a slot the other is writing.
//!
//! `cargo run -p shmkit --example producer_consumer [count]`
//!
//! The producer (this process) creates the segment `/pcNNN` and the semaphores `/pcNNN-items`
//! (value 0) and `/pcNNN-slots` (value `SLOTS`), starts the consumer (this program again, as
//! `producer_consumer consumer /pcNNN COUNT`), fills the ring, checks the consumer's report,
//! and unlinks the three names: it made them, so it removes them, even when something fails.
//! The consumer only opens, so it never unlinks. Works the same on Linux and macOS.
//!
//! Layout of the segment: `SLOTS` little-endian `u64` slots from byte 0; item `i` is
//! `i * 7 + 3`, in slot `i % SLOTS`.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmkit::{unlink, Error, ObjectName, Region, Semaphore};

const SLOTS: u64 = 16;
/// Every wait is bounded: a stuck peer shows up as an error, never as a hang.
const PATIENCE: Duration = Duration::from_secs(60);

type Fallible<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn item(i: u64) -> u64 {
  i * 7 + 3
}

fn slot_at(i: u64) -> usize {
  usize::try_from(i % SLOTS).expect("small") * 8
}

/// The semaphore names that go with segment `name`.
fn semaphore_names(name: &ObjectName) -> Fallible<(ObjectName, ObjectName)> {
  Ok((
    ObjectName::new(&format!("{name}-items"))?,
    ObjectName::new(&format!("{name}-slots"))?,
  ))
}

fn main() -> Fallible {
  let args: Vec<String> = std::env::args().skip(1).collect();
  match args.as_slice() {
    [mode, name, count] if mode == "consumer" => consumer(&ObjectName::new(name)?, count.parse()?),
    [] => producer(100_000),
    [count] => producer(count.parse()?),
    _ => Err("usage: producer_consumer [count] | producer_consumer consumer NAME COUNT".into()),
  }
}

/// Removes the names this process created when dropped, whatever happened meanwhile.
struct Created {
  segment: ObjectName,
  semaphores: Vec<ObjectName>,
}

impl Drop for Created {
  fn drop(&mut self) {
    let _ = unlink(&self.segment);
    for name in &self.semaphores {
      let _ = Semaphore::unlink(name);
    }
  }
}

fn producer(count: u64) -> Fallible {
  let name = ObjectName::new(&format!("pc{}", std::process::id()))?;
  let (items_name, slots_name) = semaphore_names(&name)?;
  let region = Region::create(&name, 4096)?;
  let mut created = Created {
    segment: name.clone(),
    semaphores: Vec::new(),
  };
  let items = Semaphore::create(&items_name, 0)?;
  created.semaphores.push(items_name);
  let slots = Semaphore::create(&slots_name, u32::try_from(SLOTS)?)?;
  created.semaphores.push(slots_name);

  let mut consumer = Command::new(std::env::current_exe()?)
    .args(["consumer", name.as_str(), &count.to_string()])
    .stdout(Stdio::piped())
    .spawn()?;
  let produced = (|| -> Fallible {
    for i in 0..count {
      take(&slots, &mut consumer)?;
      region.write_at(slot_at(i), &item(i).to_le_bytes())?;
      items.post()?;
    }
    Ok(())
  })();
  if let Err(e) = produced {
    let _ = consumer.kill();
    let _ = consumer.wait();
    return Err(e);
  }

  let mut report = String::new();
  consumer.stdout.take().expect("piped").read_to_string(&mut report)?;
  let status = consumer.wait()?;
  let expected_sum: u64 = (0..count).map(item).sum();
  let expected = format!("received {count} sum {expected_sum} wrong 0");
  let ok = status.success() && report.trim() == expected;
  println!(
    "{}: {count} items passed from producer {} to consumer {} ({})",
    if ok { "ok" } else { "FAILED" },
    std::process::id(),
    consumer.id(),
    report.trim()
  );
  drop(created); // unlinks the segment and both semaphores
  if ok {
    Ok(())
  } else {
    Err(format!("expected '{expected}', consumer {status}").into())
  }
}

/// Waits for `sem`, giving up when the consumer has exited or after `PATIENCE`.
fn take(sem: &Semaphore, consumer: &mut Child) -> Fallible {
  let deadline = Instant::now() + PATIENCE;
  loop {
    if sem.wait_timeout(Duration::from_millis(100))? {
      return Ok(());
    }
    if let Some(status) = consumer.try_wait()? {
      return Err(format!("the consumer exited early ({status})").into());
    }
    if Instant::now() >= deadline {
      return Err(Error::timed_out("sem_timedwait").into());
    }
  }
}

fn consumer(name: &ObjectName, count: u64) -> Fallible {
  let region = Region::open(name)?;
  let (items_name, slots_name) = semaphore_names(name)?;
  let items = Semaphore::open(&items_name)?;
  let slots = Semaphore::open(&slots_name)?;
  let mut sum = 0u64;
  let mut wrong = 0u64;
  for i in 0..count {
    if !items.wait_timeout(PATIENCE)? {
      return Err(Error::timed_out("sem_timedwait").into());
    }
    let mut bytes = [0u8; 8];
    region.read_at(slot_at(i), &mut bytes)?;
    let value = u64::from_le_bytes(bytes);
    if value != item(i) {
      wrong += 1;
    }
    sum += value;
    slots.post()?;
  }
  println!("received {count} sum {sum} wrong {wrong}");
  Ok(())
}
