//! One side of a two-way message exchange through a named segment, in the layout that
//! `docs/layout.md` describes. The Node.js peer (`__test__/fixtures/ring-peer.mjs`) speaks
//! the same protocol, so either language can play either role; the cross-language tests run
//! this program against it.
//!
//! ```text
//! peer create-send  SEGMENT COUNT named|region   creates everything, sends COUNT messages, checks the replies
//! peer open-respond SEGMENT COUNT named|region   opens everything, checks COUNT messages, replies to each
//! ```
//!
//! Layout of the segment (4096 bytes; every integer a little-endian `u32`):
//!
//! | bytes     | what                                                                          |
//! |-----------|-------------------------------------------------------------------------------|
//! | 0         | `region` only: semaphore `fwd_items`, initially 0 (messages waiting)          |
//! | 64        | `region` only: semaphore `fwd_free`, initially `SLOTS` (free forward slots)   |
//! | 128       | `region` only: semaphore `back_items`, initially 0 (replies waiting)          |
//! | 192       | `region` only: semaphore `back_free`, initially `SLOTS` (free back slots)     |
//! | 256..768  | forward ring: `SLOTS` = 64 slots of `[seq, value]`, message `i` in slot `i % 64` |
//! | 768..1280 | back ring: the same, for replies                                              |
//!
//! With `named`, the semaphores are instead `SEGMENT-fi`, `SEGMENT-ff`, `SEGMENT-bi` and
//! `SEGMENT-bf`, with the same initial values. Message `i` carries `value = mix(i)`; its
//! reply carries `mix(value ^ 0x5bd1e995)`, so a reply proves the message was read.
//!
//! The sender keeps at most `SLOTS` messages unanswered, so neither ring can overflow.
//!
//! Output, one line each on stdout: `ready` (the creator, once every object exists), then a
//! JSON summary with the counts and an FNV-1a checksum of the values sent and received in
//! order. The creator then waits for a line on stdin (or its end) and unlinks the names it
//! created (the segment, and with `named` the four semaphores), printing `unlinked`. The
//! responder never unlinks anything. Every wait gives up after 30 s (`PEER_PATIENCE_MS`
//! changes that); any mismatch or failure ends the program with an error on stderr and exit
//! code 1, after the creator has unlinked its names.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use shmkit::{unlink, Error, ObjectName, Region, Semaphore};

const SLOTS: u32 = 64;
const FORWARD_AT: usize = 256;
const BACK_AT: usize = 768;
const SIZE: usize = 4096;

/// How long any one wait may take: 30 s, or `PEER_PATIENCE_MS` from the environment.
fn patience() -> Duration {
  let ms = std::env::var("PEER_PATIENCE_MS").ok().and_then(|v| v.parse().ok());
  Duration::from_millis(ms.unwrap_or(30_000))
}

type Fallible<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// murmur3's 32-bit finaliser: a cheap bijection that scatters consecutive numbers.
fn mix(mut h: u32) -> u32 {
  h ^= h >> 16;
  h = h.wrapping_mul(0x85eb_ca6b);
  h ^= h >> 13;
  h = h.wrapping_mul(0xc2b2_ae35);
  h ^ (h >> 16)
}

fn reply(value: u32) -> u32 {
  mix(value ^ 0x5bd1_e995)
}

/// FNV-1a over a sequence of `u32`s (one step per value).
#[derive(Clone, Copy)]
struct Checksum(u32);

impl Checksum {
  fn new() -> Self {
    Self(0x811c_9dc5)
  }
  fn add(&mut self, value: u32) {
    self.0 = (self.0 ^ value).wrapping_mul(0x0100_0193);
  }
}

/// The four semaphores of the exchange, wherever they live.
struct Semaphores {
  fwd_items: Semaphore,
  fwd_free: Semaphore,
  back_items: Semaphore,
  back_free: Semaphore,
}

const SEMAPHORES: [(&str, usize, u32); 4] = [("fi", 0, 0), ("ff", 64, SLOTS), ("bi", 128, 0), ("bf", 192, SLOTS)];

fn semaphore_name(segment: &ObjectName, suffix: &str) -> shmkit::Result<ObjectName> {
  ObjectName::new(&format!("{segment}-{suffix}"))
}

impl Semaphores {
  fn from_vec(mut sems: Vec<Semaphore>) -> Self {
    let back_free = sems.pop().expect("four");
    let back_items = sems.pop().expect("four");
    let fwd_free = sems.pop().expect("four");
    let fwd_items = sems.pop().expect("four");
    Self {
      fwd_items,
      fwd_free,
      back_items,
      back_free,
    }
  }
}

/// Names this process created, unlinked when dropped (on success and on every failure).
struct Created {
  segment: Option<ObjectName>,
  semaphores: Vec<ObjectName>,
}

impl Drop for Created {
  fn drop(&mut self) {
    if let Some(segment) = &self.segment {
      let _ = unlink(segment);
    }
    for name in &self.semaphores {
      let _ = Semaphore::unlink(name);
    }
  }
}

fn main() {
  let args: Vec<String> = std::env::args().skip(1).collect();
  let result = match args.as_slice() {
    [role, segment, count, kind] if kind == "named" || kind == "region" => {
      let in_region = kind == "region";
      match (role.as_str(), ObjectName::new(segment), count.parse::<u32>()) {
        ("create-send", Ok(segment), Ok(count)) => create_send(&segment, count, in_region),
        ("open-respond", Ok(segment), Ok(count)) => open_respond(&segment, count, in_region),
        _ => Err("bad arguments".into()),
      }
    }
    _ => Err("usage: peer create-send|open-respond SEGMENT COUNT named|region".into()),
  };
  if let Err(e) = result {
    eprintln!("peer: {e}");
    std::process::exit(1);
  }
}

fn say(line: &str) -> Fallible {
  let mut out = std::io::stdout().lock();
  writeln!(out, "{line}")?;
  out.flush()?;
  Ok(())
}

fn take(sem: &Semaphore, what: &str, i: u32) -> Fallible {
  if sem.wait_timeout(patience())? {
    Ok(())
  } else {
    Err(format!("timed out waiting for {what} {i}").into())
  }
}

fn write_slot(region: &Region, ring: usize, seq: u32, value: u32) -> shmkit::Result<()> {
  let at = ring + (seq % SLOTS) as usize * 8;
  let mut bytes = [0u8; 8];
  bytes[..4].copy_from_slice(&seq.to_le_bytes());
  bytes[4..].copy_from_slice(&value.to_le_bytes());
  region.write_at(at, &bytes)
}

fn read_slot(region: &Region, ring: usize, seq: u32) -> shmkit::Result<(u32, u32)> {
  let at = ring + (seq % SLOTS) as usize * 8;
  let mut bytes = [0u8; 8];
  region.read_at(at, &mut bytes)?;
  let word = |range: std::ops::Range<usize>| u32::from_le_bytes(bytes[range].try_into().expect("4 bytes"));
  Ok((word(0..4), word(4..8)))
}

fn summary(role: &str, sent: u32, received: u32, sent_sum: Checksum, received_sum: Checksum) -> String {
  format!(
    r#"{{"role":"{role}","sent":{sent},"received":{received},"sentChecksum":{},"receivedChecksum":{}}}"#,
    sent_sum.0, received_sum.0
  )
}

fn create_send(segment: &ObjectName, count: u32, in_region: bool) -> Fallible {
  let mut created = Created {
    segment: None,
    semaphores: Vec::new(),
  };
  let region = Arc::new(Region::create(segment, SIZE)?);
  created.segment = Some(segment.clone());
  let mut sems = Vec::new();
  for (suffix, offset, initial) in SEMAPHORES {
    if in_region {
      sems.push(Semaphore::init_in(region.clone(), offset, initial)?);
    } else {
      let name = semaphore_name(segment, suffix)?;
      sems.push(Semaphore::create(&name, initial)?);
      created.semaphores.push(name);
    }
  }
  let sems = Semaphores::from_vec(sems);
  say("ready")?;

  let (mut sent, mut received) = (0u32, 0u32);
  let (mut sent_sum, mut received_sum) = (Checksum::new(), Checksum::new());
  while received < count {
    if sent < count && sent - received < SLOTS {
      take(&sems.fwd_free, "a free forward slot for message", sent)?;
      let value = mix(sent);
      write_slot(&region, FORWARD_AT, sent, value)?;
      sems.fwd_items.post()?;
      sent_sum.add(value);
      sent += 1;
    } else {
      take(&sems.back_items, "the reply to message", received)?;
      let (seq, value) = read_slot(&region, BACK_AT, received)?;
      sems.back_free.post()?;
      let expected = reply(mix(received));
      if seq != received || value != expected {
        return Err(
          format!("reply {received}: got seq {seq} value {value}, expected seq {received} value {expected}").into(),
        );
      }
      received_sum.add(value);
      received += 1;
    }
  }
  say(&summary("create-send", sent, received, sent_sum, received_sum))?;

  // Keep every name until told (or until stdin ends), so the other side can be checked for
  // having removed nothing; then remove exactly what this process created.
  let mut line = String::new();
  std::io::stdin().lock().read_line(&mut line)?;
  drop(sems);
  drop(created);
  say("unlinked")
}

fn open_respond(segment: &ObjectName, count: u32, in_region: bool) -> Fallible {
  let region = Arc::new(Region::open(segment)?);
  if region.len() < BACK_AT + SLOTS as usize * 8 {
    return Err(Error::new(shmkit::ErrorKind::InvalidSize, "segment too small for the exchange").into());
  }
  let mut sems = Vec::new();
  for (suffix, offset, _) in SEMAPHORES {
    if in_region {
      sems.push(Semaphore::at(region.clone(), offset)?);
    } else {
      sems.push(Semaphore::open(&semaphore_name(segment, suffix)?)?);
    }
  }
  let sems = Semaphores::from_vec(sems);

  let (mut sent_sum, mut received_sum) = (Checksum::new(), Checksum::new());
  for i in 0..count {
    take(&sems.fwd_items, "message", i)?;
    let (seq, value) = read_slot(&region, FORWARD_AT, i)?;
    sems.fwd_free.post()?;
    if seq != i || value != mix(i) {
      return Err(
        format!(
          "message {i}: got seq {seq} value {value}, expected seq {i} value {}",
          mix(i)
        )
        .into(),
      );
    }
    received_sum.add(value);
    take(&sems.back_free, "a free back slot for reply", i)?;
    let answer = reply(value);
    write_slot(&region, BACK_AT, i, answer)?;
    sems.back_items.post()?;
    sent_sum.add(answer);
  }
  say(&summary("open-respond", count, count, sent_sum, received_sum))
}
