//! One end of a `Channel` in a named segment, for the cross-language tests: the Node.js
//! fixture `__test__/fixtures/channel-peer.mjs` speaks the same protocol.
//!
//! ```text
//! channel_peer send SEGMENT COUNT   sends COUNT messages into the channel at byte 0, then closes it
//! channel_peer recv SEGMENT         receives until the end of the stream, checking every byte
//! ```
//!
//! Message `i` is `4 + mix(i) % 253` bytes: `i` as a little-endian u32, then byte `k`
//! (counting from the start) equal to `(i * 31 + k * 7) & 0xff`. The sender prints
//! `sent COUNT`; the receiver prints `received N` once the stream ends, after checking that
//! messages arrive complete and in order. Any failure exits with code 1 and a line on stderr.

use std::sync::Arc;
use std::time::Duration;

use shmkit::{Channel, ObjectName, Recv, Region, SendStatus};

const PATIENCE: Duration = Duration::from_secs(60);

fn mix(mut h: u32) -> u32 {
  h ^= h >> 16;
  h = h.wrapping_mul(0x85eb_ca6b);
  h ^= h >> 13;
  h = h.wrapping_mul(0xc2b2_ae35);
  h ^ (h >> 16)
}

fn message(i: u32, out: &mut Vec<u8>) {
  let len = 4 + (mix(i) % 253) as usize;
  out.clear();
  out.extend_from_slice(&i.to_le_bytes());
  #[expect(clippy::cast_possible_truncation, reason = "masked to a byte")]
  out.extend((4..len).map(|k| ((i as usize * 31 + k * 7) & 0xff) as u8));
}

fn run() -> Result<String, String> {
  let args: Vec<String> = std::env::args().skip(1).collect();
  let (mode, segment) = match args.as_slice() {
    [mode, segment, ..] => (mode.as_str(), segment.as_str()),
    _ => return Err("usage: channel_peer send SEGMENT COUNT | recv SEGMENT".into()),
  };
  let name = ObjectName::new(segment).map_err(|e| e.to_string())?;
  let region = Arc::new(Region::open(&name).map_err(|e| e.to_string())?);
  let channel = Channel::at(region, 0).map_err(|e| e.to_string())?;
  let mut buf = Vec::new();
  match mode {
    "send" => {
      let count: u32 = args.get(2).and_then(|c| c.parse().ok()).ok_or("COUNT missing")?;
      for i in 0..count {
        message(i, &mut buf);
        match channel.send(&buf, Some(PATIENCE)).map_err(|e| e.to_string())? {
          SendStatus::Sent => {}
          other => return Err(format!("message {i}: {other:?}")),
        }
      }
      channel.close();
      Ok(format!("sent {count}"))
    }
    "recv" => {
      let mut next = 0u32;
      loop {
        match channel.recv(Some(PATIENCE)).map_err(|e| e.to_string())? {
          Recv::Message(m) => {
            message(next, &mut buf);
            if m.to_vec() != buf {
              return Err(format!("message {next} differs"));
            }
            next += 1;
          }
          Recv::Closed => return Ok(format!("received {next}")),
          Recv::Empty => return Err(format!("nothing after message {next} for {PATIENCE:?}")),
        }
      }
    }
    _ => Err(format!("unknown mode {mode}")),
  }
}

fn main() {
  match run() {
    Ok(line) => println!("{line}"),
    Err(e) => {
      eprintln!("channel_peer: {e}");
      std::process::exit(1);
    }
  }
}
