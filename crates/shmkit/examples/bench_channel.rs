//! The native floor of the channel benchmarks in `bench/channel.mjs`: `PRODUCERS` forked
//! processes send `COUNT` messages of `SIZE` bytes in all through a `Channel` in an anonymous
//! region, and the parent receives them, copying each into its own buffer.
//!
//! ```text
//! cargo run --release -p shmkit --example bench_channel -- <size> <count> <producers>
//! ```
//!
//! Prints `RESULT\tchan.native.<P>to1.<64|4k|1m>\t<messages per second>\tmsg/s`, timed from the
//! end of the warm-up (a tenth of the messages) to the last message received, and for 1 MiB
//! messages also `..._gbps` (1e9 bytes/s).

use std::sync::Arc;
use std::time::Instant;

use shmkit::{fork, Channel, Recv, Region, SendStatus};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn label(size: usize) -> String {
  match size {
    s if s >= 1 << 20 && s.is_multiple_of(1 << 20) => format!("{}m", s >> 20),
    s if s >= 1024 && s.is_multiple_of(1024) => format!("{}k", s >> 10),
    s => s.to_string(),
  }
}

/// Slots: enough to keep producers busy, bounded to about 16 MiB of ring.
fn capacity(size: usize) -> u32 {
  let fit = (16 << 20) / (size + 64);
  u32::try_from(fit.clamp(4, 256)).unwrap_or(256).next_power_of_two() / 2
}

#[expect(clippy::cast_precision_loss, reason = "counts far below 2**52")]
fn main() -> Result<()> {
  let args: Vec<usize> = std::env::args()
    .skip(1)
    .map(|a| a.parse())
    .collect::<std::result::Result<_, _>>()?;
  let [size, count, producers] = args[..] else {
    return Err("usage: bench_channel <size> <count> <producers>".into());
  };
  let max = u32::try_from(size)?;
  let capacity = capacity(size).max(2);
  let region = Arc::new(Region::anonymous(Channel::size(capacity, max)?)?);
  let channel = Channel::init_in(region, 0, capacity, max)?;
  let payload = vec![7u8; size];
  let per_producer = count / producers;
  let mut children = Vec::new();
  for _ in 0..producers {
    // SAFETY: this program is single-threaded; the child sends and exits.
    children.push(unsafe {
      fork(|| {
        for _ in 0..per_producer {
          if channel.send(&payload, None) != Ok(SendStatus::Sent) {
            return 1;
          }
        }
        0
      })
    }?);
  }
  let total = per_producer * producers;
  let mut buf = vec![0u8; size];
  // Timed after a warm-up of a tenth of the messages, as bench/channel.mjs does.
  let warm = (total / 10).max(1);
  let mut start = None;
  for received in 1..=total {
    let Recv::Message(message) = channel.recv(None)? else {
      return Err("the stream ended early".into());
    };
    if received == warm {
      start = Some(Instant::now());
    }
    buf.truncate(message.len());
    message.copy_to(&mut buf);
  }
  let elapsed = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
  for mut child in children {
    if !child.wait()?.success() {
      return Err("a producer failed".into());
    }
  }
  let rate = (total - warm) as f64 / elapsed;
  let id = format!("chan.native.{producers}to1.{}", label(size));
  println!("RESULT\t{id}\t{rate:.3}\tmsg/s");
  if size >= 1 << 20 {
    println!("RESULT\t{id}_gbps\t{:.4}\tGB/s", rate * size as f64 / 1e9);
  }
  Ok(())
}
