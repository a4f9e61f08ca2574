//! Channel: exactly-once delivery and per-producer order across processes, producers and
//! consumers killed mid-message, random bytes over the control words, backpressure and end
//! of stream.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fork_lock;
use shmkit::{fork, Channel, Child, ErrorKind, Poll, Recv, Region, SendStatus, Signal};

/// Bytes before the payload of every test message: producer, sequence number, payload length,
/// and a marker.
const HEADER: usize = 16;
const MARKER: u32 = 0x5eed_f00d;
const MAX_PAYLOAD: usize = 64 * 1024;
const POOL: usize = 2 * MAX_PAYLOAD;
const LONG: Duration = Duration::from_secs(120);

/// A small deterministic generator (xorshift64*), so children need no shared state to agree.
struct Rng(u64);

impl Rng {
  fn new(seed: u64) -> Self {
    Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
  }

  fn next(&mut self) -> u64 {
    self.0 ^= self.0 >> 12;
    self.0 ^= self.0 << 25;
    self.0 ^= self.0 >> 27;
    self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
  }

  fn below(&mut self, n: u64) -> u64 {
    self.next() % n
  }
}

/// Random bytes every payload is a window of: the window's start and length follow from the
/// producer and sequence number, so a receiver can check every byte.
fn pool() -> Vec<u8> {
  let mut rng = Rng::new(42);
  (0..POOL).map(|_| rng.next().to_le_bytes()[0]).collect()
}

fn window(producer: u32, seq: u32, max_payload: usize) -> (usize, usize) {
  let mut rng = Rng::new((u64::from(producer) << 32) | u64::from(seq));
  let len = 1 + usize::try_from(rng.below(max_payload as u64)).unwrap();
  let start = usize::try_from(rng.below((POOL - max_payload) as u64)).unwrap();
  (start, len)
}

fn encode(buf: &mut Vec<u8>, pool: &[u8], producer: u32, seq: u32, max_payload: usize) {
  let (start, len) = window(producer, seq, max_payload);
  buf.clear();
  buf.extend_from_slice(&producer.to_le_bytes());
  buf.extend_from_slice(&seq.to_le_bytes());
  buf.extend_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
  buf.extend_from_slice(&MARKER.to_le_bytes());
  buf.extend_from_slice(&pool[start..start + len]);
}

fn field(bytes: &[u8], at: usize) -> u32 {
  u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Checks a received message byte for byte; returns (producer, seq) or `None` if it is torn.
fn decode(bytes: &[u8], pool: &[u8], max_payload: usize) -> Option<(u32, u32)> {
  if bytes.len() < HEADER || field(bytes, 12) != MARKER {
    return None;
  }
  let (producer, seq) = (field(bytes, 0), field(bytes, 4));
  let (start, len) = window(producer, seq, max_payload);
  (field(bytes, 8) as usize == len && bytes.len() == HEADER + len && bytes[HEADER..] == pool[start..start + len])
    .then_some((producer, seq))
}

/// Counters in shared memory, one u32 each, for children to report into.
struct Counters(Region);

impl Counters {
  fn new(n: usize) -> Self {
    Self(Region::anonymous(n * 4).unwrap())
  }

  fn at(&self, i: usize) -> &AtomicU32 {
    self.0.atomic_u32(i * 4).unwrap()
  }
}

fn channel(capacity: u32, max: usize) -> Channel {
  let max = u32::try_from(max).unwrap();
  let region = Arc::new(Region::anonymous(Channel::size(capacity, max).unwrap()).unwrap());
  Channel::init_in(region, 0, capacity, max).unwrap()
}

/// Waits for a child; on timeout kills it and fails, so a hang is a failure, not a stuck run.
fn reap(child: &mut Child, what: &str) -> shmkit::ExitStatus {
  match child.wait_timeout(LONG) {
    Ok(status) => status,
    Err(err) => {
      let _ = child.kill(Signal::SIGKILL);
      let _ = child.wait();
      panic!("{what} did not finish: {err}");
    }
  }
}

fn expect_success(child: &mut Child, what: &str) {
  let status = reap(child, what);
  assert!(status.success(), "{what} failed: {status:?}");
}

/// Exit codes of the checking children.
const TORN: i32 = 3;
const OUT_OF_ORDER: i32 = 4;
const TIMED_OUT: i32 = 5;
const SEND_FAILED: i32 = 6;

/// Receives until end of stream, checking every byte and the order per producer, and counts
/// each (producer, seq) in `seen`.
fn consume(ch: &Channel, pool: &[u8], max_payload: usize, seen: &Counters, per_producer: usize) -> i32 {
  let mut last = vec![-1i64; 256];
  loop {
    match ch.recv(Some(LONG)) {
      Ok(Recv::Message(message)) => {
        // SAFETY: the slot is held; no process writes it until this message drops.
        let Some((producer, seq)) = decode(unsafe { message.as_slice() }, pool, max_payload) else {
          return TORN;
        };
        let (p, s) = (producer as usize, i64::from(seq));
        if p >= last.len() || s <= last[p] {
          return OUT_OF_ORDER;
        }
        last[p] = s;
        if let Ok(counter) = seen.0.atomic_u32((p * per_producer + seq as usize) * 4) {
          counter.fetch_add(1, Ordering::SeqCst);
        }
      }
      Ok(Recv::Closed) => return 0,
      Ok(Recv::Empty) => return TIMED_OUT,
      Err(_) => return 1,
    }
  }
}

#[test]
fn four_producers_four_consumers_exactly_once_in_order() {
  const PRODUCERS: u32 = 4;
  const PER_PRODUCER: u32 = 25_000;
  let _fork = fork_lock();
  let pool = pool();
  let ch = channel(64, HEADER + MAX_PAYLOAD);
  let seen = Counters::new((PRODUCERS * PER_PRODUCER) as usize);
  let mut producers: Vec<Child> = (0..PRODUCERS)
    .map(|p| {
      let (ch, pool) = (&ch, &pool);
      // SAFETY: the child only uses memory it inherited and the channel, then exits.
      unsafe {
        fork(move || {
          let mut buf = Vec::with_capacity(HEADER + MAX_PAYLOAD);
          for seq in 0..PER_PRODUCER {
            encode(&mut buf, pool, p, seq, MAX_PAYLOAD);
            if ch.send(&buf, Some(LONG)) != Ok(SendStatus::Sent) {
              return SEND_FAILED;
            }
          }
          0
        })
      }
      .unwrap()
    })
    .collect();
  let mut consumers: Vec<Child> = (0..4)
    .map(|_| {
      let (ch, pool, seen) = (&ch, &pool, &seen);
      // SAFETY: as above.
      unsafe { fork(move || consume(ch, pool, MAX_PAYLOAD, seen, PER_PRODUCER as usize)) }.unwrap()
    })
    .collect();
  for child in &mut producers {
    expect_success(child, "producer");
  }
  ch.close();
  for child in &mut consumers {
    expect_success(child, "consumer (torn 3, out of order 4, timed out 5)");
  }
  let counts: Vec<u32> = (0..(PRODUCERS * PER_PRODUCER) as usize)
    .map(|i| seen.at(i).load(Ordering::SeqCst))
    .collect();
  let lost = counts.iter().filter(|&&c| c == 0).count();
  let duplicated = counts.iter().filter(|&&c| c > 1).count();
  assert_eq!((lost, duplicated), (0, 0), "every message exactly once");
  assert!(matches!(ch.try_recv(), Ok(Recv::Closed)));
}

/// Slots whose control word says "being written by `pid`" (bits 30 and 0-29; layout.md).
fn slots_written_by(ch: &Channel, pid: i32) -> usize {
  let stride = (16 + ch.max_message_size() as usize).next_multiple_of(64);
  (0..ch.capacity() as usize)
    .filter(|i| {
      let low = ch.region().atomic_u32(Channel::HEADER_SIZE + i * stride).unwrap();
      low.load(Ordering::SeqCst) == (1 << 30) | u32::try_from(pid).unwrap()
    })
    .count()
}

/// Receives until end of stream: producer 0's messages must come complete and in order (their
/// count goes to `flags[2]`), other producers' messages only complete (counted in `seen[0]`).
fn consume_healthy_and_victims(ch: &Channel, pool: &[u8], max: usize, flags: &Counters, seen: &Counters) -> i32 {
  let mut next = 0;
  loop {
    match ch.recv(Some(LONG)) {
      Ok(Recv::Message(message)) => {
        // SAFETY: the slot is held until the message drops.
        match decode(unsafe { message.as_slice() }, pool, max) {
          None => return TORN,
          Some((0, seq)) if seq != next => return OUT_OF_ORDER,
          Some((0, _)) => next += 1,
          Some(_) => {
            seen.at(0).fetch_add(1, Ordering::SeqCst);
          }
        }
        flags.at(2).store(next, Ordering::SeqCst);
      }
      Ok(Recv::Closed) => return 0,
      Ok(Recv::Empty) => return TIMED_OUT,
      Err(_) => return 1,
    }
  }
}

#[test]
fn producers_killed_mid_send_never_tear_or_stall() {
  const VICTIMS: u32 = 200;
  const MAX: usize = 4096;
  let _fork = fork_lock();
  let pool = pool();
  let ch = channel(8, HEADER + MAX);
  // 0: stop the healthy producer; 1: how many it sent; 2: how many of its the consumer got;
  // 3: victims that died inside their claimed slot.
  let flags = Counters::new(4);
  let seen = Counters::new(1);
  let (chr, poolr, flagsr) = (&ch, &pool, &flags);
  // SAFETY: the children only use inherited memory and the channel, then exit.
  let mut healthy = unsafe {
    fork(move || {
      let mut buf = Vec::with_capacity(HEADER + MAX);
      let mut seq = 0;
      while flagsr.at(0).load(Ordering::SeqCst) == 0 {
        encode(&mut buf, poolr, 0, seq, MAX);
        if chr.send(&buf, Some(LONG)) != Ok(SendStatus::Sent) {
          return SEND_FAILED;
        }
        seq += 1;
        flagsr.at(1).store(seq, Ordering::SeqCst);
      }
      0
    })
  }
  .unwrap();
  let seenr = &seen;
  let consumer_body = move || consume_healthy_and_victims(chr, poolr, MAX, flagsr, seenr);
  // SAFETY: as above.
  let mut consumer = unsafe { fork(consumer_body) }.unwrap();
  let mut rng = Rng::new(7);
  let mut caught_mid_send = 0;
  for victim in 1..=VICTIMS {
    let in_place = victim % 2 == 0;
    let delay = Duration::from_micros(rng.below(3000));
    let victim_body = move || {
      let mut buf = Vec::with_capacity(HEADER + MAX);
      for seq in 0.. {
        encode(&mut buf, poolr, victim, seq, MAX);
        if in_place {
          // Dies with half a message written into its slot.
          let deadline = Some(Instant::now() + LONG);
          // SAFETY: the slice is this process's claimed slot.
          let _ = unsafe {
            chr.send_with(buf.len(), deadline, |slot| {
              slot[..buf.len() / 2].copy_from_slice(&buf[..buf.len() / 2]);
              flagsr.at(3).fetch_add(1, Ordering::SeqCst);
              let _ = nix::sys::signal::raise(Signal::SIGKILL);
            })
          };
        } else if chr.send(&buf, Some(LONG)) != Ok(SendStatus::Sent) {
          return SEND_FAILED;
        }
      }
      0
    };
    // SAFETY: as above.
    let mut child = unsafe { fork(victim_body) }.unwrap();
    if !in_place {
      std::thread::sleep(delay);
      child.kill(Signal::SIGKILL).unwrap();
    }
    let status = reap(&mut child, "victim");
    assert_eq!(status.signal(), Some(Signal::SIGKILL));
    caught_mid_send += usize::from(slots_written_by(&ch, child.pid()) > 0);
  }
  flags.at(0).store(1, Ordering::SeqCst);
  expect_success(&mut healthy, "healthy producer");
  ch.close();
  expect_success(&mut consumer, "consumer (torn 3, out of order 4, timed out 5)");
  let sent = flags.at(1).load(Ordering::SeqCst);
  assert!(sent > 0);
  assert_eq!(
    flags.at(2).load(Ordering::SeqCst),
    sent,
    "every message of the healthy producer, in order"
  );
  assert_eq!(
    flags.at(3).load(Ordering::SeqCst),
    VICTIMS / 2,
    "half the victims died inside their slot, half a message written"
  );
  eprintln!(
    "{VICTIMS} producers killed ({} in their slot by themselves, {caught_mid_send} seen holding a slot right after), {sent} healthy messages and {} whole victim messages delivered",
    VICTIMS / 2,
    seen.at(0).load(Ordering::SeqCst)
  );
}

#[test]
fn consumers_killed_mid_receive_lose_nothing_else() {
  const VICTIMS: u32 = 200;
  const MAX: usize = 4096;
  const LIMIT: u32 = 2_000_000;
  let _fork = fork_lock();
  let pool = pool();
  let ch = channel(8, HEADER + MAX);
  // 0: stop the producer; 1: how many it sent.
  let flags = Counters::new(2);
  let seen = Counters::new(LIMIT as usize);
  let (chr, poolr, flagsr, seenr) = (&ch, &pool, &flags, &seen);
  // SAFETY: the children only use inherited memory and the channel, then exit.
  let mut producer = unsafe {
    fork(move || {
      let mut buf = Vec::with_capacity(HEADER + MAX);
      let mut seq = 0;
      while flagsr.at(0).load(Ordering::SeqCst) == 0 && seq < LIMIT {
        encode(&mut buf, poolr, 0, seq, MAX);
        if chr.send(&buf, Some(LONG)) != Ok(SendStatus::Sent) {
          return SEND_FAILED;
        }
        seq += 1;
        flagsr.at(1).store(seq, Ordering::SeqCst);
      }
      0
    })
  }
  .unwrap();
  // SAFETY: as above.
  let mut healthy = unsafe { fork(move || consume(chr, poolr, MAX, seenr, 0)) }.unwrap();
  let mut rng = Rng::new(11);
  for victim in 0..VICTIMS {
    let in_place = victim % 2 == 0;
    let delay = Duration::from_micros(rng.below(3000));
    let victim_body = move || loop {
      match chr.recv(Some(LONG)) {
        Ok(Recv::Message(message)) => {
          // SAFETY: the slot is held until the message drops.
          let Some((_, seq)) = decode(unsafe { message.as_slice() }, poolr, MAX) else {
            return TORN;
          };
          seenr.at(seq as usize).fetch_add(1, Ordering::SeqCst);
          if in_place {
            // Dies holding the message: its slot must come back to the producers.
            let _ = nix::sys::signal::raise(Signal::SIGKILL);
          }
        }
        _ => return TIMED_OUT,
      }
    };
    // SAFETY: as above.
    let mut child = unsafe { fork(victim_body) }.unwrap();
    if !in_place {
      std::thread::sleep(delay);
      child.kill(Signal::SIGKILL).unwrap();
    }
    let status = reap(&mut child, "victim");
    assert_eq!(status.signal(), Some(Signal::SIGKILL), "victim {victim}: {status:?}");
  }
  flags.at(0).store(1, Ordering::SeqCst);
  expect_success(&mut producer, "producer");
  ch.close();
  expect_success(&mut healthy, "healthy consumer (torn 3, out of order 4, timed out 5)");
  let sent = flags.at(1).load(Ordering::SeqCst) as usize;
  let counts: Vec<u32> = (0..sent).map(|i| seen.at(i).load(Ordering::SeqCst)).collect();
  let lost = counts.iter().filter(|&&c| c == 0).count();
  assert!(counts.iter().all(|&c| c <= 1), "no message delivered twice");
  assert!(
    lost <= (VICTIMS / 2) as usize,
    "only messages in the hands of a randomly killed consumer are lost ({lost})"
  );
  eprintln!("{VICTIMS} consumers killed; {sent} messages sent, {lost} lost in dead hands");
}

#[test]
fn random_bytes_over_control_words_give_typed_errors() {
  let region = Arc::new(Region::anonymous(Channel::size(4, 64).unwrap()).unwrap());
  let mut rng = Rng::new(99);
  let words: Vec<usize> = (0..Channel::HEADER_SIZE / 4)
    .chain((0..4).flat_map(|i| {
      let slot = (Channel::HEADER_SIZE + i * 128) / 4;
      slot..slot + 4
    }))
    .collect();
  let (mut errors, mut oks) = (0, 0);
  for round in 0..3000 {
    let ch = Channel::init_in(region.clone(), 0, 4, 64).unwrap();
    for i in 0..rng.below(7) {
      let _ = ch.try_send(&[u8::try_from(i).unwrap(); 10]).unwrap();
    }
    for _ in 0..rng.below(3) {
      let _ = ch.try_recv().unwrap();
    }
    for _ in 0..=rng.below(4) {
      let word = words[usize::try_from(rng.below(words.len() as u64)).unwrap()];
      let value = match rng.below(4) {
        0 => u32::try_from(rng.below(16)).unwrap(),
        1 => 1 << 30 | u32::try_from(rng.below(1 << 22)).unwrap(),
        2 => 1 << 31 | std::process::id(),
        _ => rng.next().to_le_bytes()[..4]
          .try_into()
          .map(u32::from_le_bytes)
          .unwrap(),
      };
      region.atomic_u32(word * 4).unwrap().store(value, Ordering::SeqCst);
    }
    let attached = Channel::at(region.clone(), 0);
    let mut results = vec![
      ch.try_send(b"x").map(|_| ()),
      ch.send(b"y", Some(Duration::from_millis(2))).map(|_| ()),
      ch.try_recv().map(|_| ()),
      ch.recv(Some(Duration::from_millis(2))).map(|_| ()),
      attached.as_ref().map(|_| ()).map_err(Clone::clone),
    ];
    if let Ok(other) = &attached {
      results.push(other.try_recv().map(|_| ()));
      results.push(other.try_send(b"z").map(|_| ()));
    }
    for result in results {
      match result {
        Ok(()) => oks += 1,
        Err(err) => {
          assert!(
            matches!(err.kind(), ErrorKind::InvalidArgument | ErrorKind::InvalidSize),
            "round {round}: untyped error {err}"
          );
          errors += 1;
        }
      }
    }
  }
  assert!(errors > 0 && oks > 0, "{errors} typed errors, {oks} calls that went on");
}

fn rss_kib(pid: i32) -> u64 {
  let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
  status
    .lines()
    .find_map(|l| l.strip_prefix("VmRSS:"))
    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    .unwrap_or(0)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
  let start = Instant::now();
  while !cond() {
    assert!(start.elapsed() < LONG, "timed out waiting for {what}");
    std::thread::sleep(Duration::from_millis(5));
  }
}

#[test]
fn a_stopped_consumer_makes_producers_wait_with_flat_memory() {
  const MESSAGES: u32 = 2000;
  const CAPACITY: u32 = 8;
  let _fork = fork_lock();
  let pool = pool();
  let ch = channel(CAPACITY, HEADER + MAX_PAYLOAD);
  let sent = Counters::new(1);
  let (chr, poolr, sentr) = (&ch, &pool, &sent);
  // SAFETY: the child only uses inherited memory and the channel, then exits.
  let mut producer = unsafe {
    fork(move || {
      let mut buf = Vec::with_capacity(HEADER + MAX_PAYLOAD);
      for seq in 0..MESSAGES {
        encode(&mut buf, poolr, 0, seq, MAX_PAYLOAD);
        if chr.send(&buf, Some(LONG)) != Ok(SendStatus::Sent) {
          return SEND_FAILED;
        }
        sentr.at(0).store(seq + 1, Ordering::SeqCst);
      }
      0
    })
  }
  .unwrap();
  // Nobody receives: the producer fills the ring and waits.
  wait_for("a full ring", || sent.at(0).load(Ordering::SeqCst) == CAPACITY);
  let before = rss_kib(producer.pid());
  std::thread::sleep(Duration::from_millis(300));
  let after = rss_kib(producer.pid());
  assert_eq!(sent.at(0).load(Ordering::SeqCst), CAPACITY, "the producer waits");
  assert_eq!(ch.try_send(b"more").unwrap(), SendStatus::Full);
  #[cfg(target_os = "linux")]
  assert!(
    after <= before + 256,
    "producer RSS flat while blocked: {before} -> {after} KiB"
  );
  for seq in 0..MESSAGES {
    let Recv::Message(message) = ch.recv(Some(LONG)).unwrap() else {
      panic!("message {seq} missing");
    };
    assert_eq!(decode(&message.to_vec(), &pool, MAX_PAYLOAD), Some((0, seq)));
  }
  expect_success(&mut producer, "producer");
  eprintln!("blocked producer RSS: {before} KiB, then {after} KiB");
}

#[test]
fn close_ends_the_stream_after_the_backlog_in_every_consumer() {
  let _fork = fork_lock();
  let ch = channel(4, 8);
  for i in 0..3u8 {
    assert_eq!(ch.try_send(&[i; 8]).unwrap(), SendStatus::Sent);
  }
  let ended = Counters::new(1);
  let (chr, endedr) = (&ch, &ended);
  // Three consumers that sleep in recv until the close wakes them.
  let mut sleepers: Vec<Child> = (0..3)
    .map(|_| {
      // SAFETY: the child only uses the channel and a counter, then exits.
      unsafe {
        fork(move || {
          let mut got = 0;
          loop {
            match chr.recv(None) {
              Ok(Recv::Message(_)) => got += 1,
              Ok(Recv::Closed) => {
                endedr.at(0).fetch_add(got, Ordering::SeqCst);
                return 0;
              }
              _ => return 1,
            }
          }
        })
      }
      .unwrap()
    })
    .collect();
  std::thread::sleep(Duration::from_millis(50));
  ch.close();
  assert_eq!(ch.try_send(b"late").unwrap(), SendStatus::Closed);
  for child in &mut sleepers {
    expect_success(child, "consumer");
  }
  assert_eq!(ended.at(0).load(Ordering::SeqCst), 3, "the backlog, then the end");
  assert!(matches!(ch.recv(None).unwrap(), Recv::Closed));
}

#[test]
fn arguments_and_attach_are_checked() {
  assert_eq!(Channel::size(3, 8).unwrap_err().kind(), ErrorKind::InvalidArgument);
  assert_eq!(Channel::size(1, 8).unwrap_err().kind(), ErrorKind::InvalidArgument);
  assert_eq!(Channel::size(4, 0).unwrap_err().kind(), ErrorKind::InvalidArgument);
  assert_eq!(Channel::size(4, 1).unwrap(), 512 + 4 * 64);
  let region = Arc::new(Region::anonymous(4096).unwrap());
  let err = Channel::at(region.clone(), 0).unwrap_err();
  assert_eq!(err.kind(), ErrorKind::InvalidArgument, "zeros are not a channel");
  assert_eq!(
    Channel::init_in(region.clone(), 32, 2, 8).unwrap_err().kind(),
    ErrorKind::InvalidArgument
  );
  assert_eq!(
    Channel::init_in(region.clone(), 0, 64, 64).unwrap_err().kind(),
    ErrorKind::InvalidSize
  );
  let ch = Channel::init_in(region.clone(), 64, 2, 100).unwrap();
  assert_eq!(ch.try_send(&[0; 101]).unwrap_err().kind(), ErrorKind::InvalidSize);
  let other = Channel::at(region, 64).unwrap();
  assert_eq!((other.capacity(), other.max_message_size()), (2, 100));
  // Counters at their maximum: typed errors or plain answers, never an overflow panic.
  for off in [64 + 128, 64 + 132, 64 + 192, 64 + 196] {
    ch.region().atomic_u32(off).unwrap().store(u32::MAX, Ordering::SeqCst);
  }
  for result in [ch.try_send(b"x").map(|_| ()), ch.try_recv().map(|_| ())] {
    assert!(result.is_ok() || result.unwrap_err().kind() == ErrorKind::InvalidArgument);
  }
  let ch = Channel::init_in(ch.region().clone(), 64, 2, 100).unwrap();
  // Round the ring many times with capacity 2, empty messages included.
  for i in 0..1000u32 {
    let msg = i.to_le_bytes();
    let msg = &msg[..(i % 5) as usize];
    assert_eq!(ch.try_send(msg).unwrap(), SendStatus::Sent);
    assert_eq!(ch.try_send(msg).unwrap(), SendStatus::Sent);
    assert_eq!(ch.try_send(msg).unwrap(), SendStatus::Full);
    for _ in 0..2 {
      let Recv::Message(m) = other.try_recv().unwrap() else {
        panic!("a message")
      };
      assert_eq!(m.to_vec(), msg);
    }
    assert!(matches!(other.try_recv().unwrap(), Recv::Empty));
  }
}

/// The byte layout docs/layout.md promises other languages.
#[test]
fn layout_matches_the_contract() {
  let region = Arc::new(Region::anonymous(Channel::size(4, 100).unwrap()).unwrap());
  let ch = Channel::init_in(region.clone(), 0, 4, 100).unwrap();
  let u32_at = |off: usize| region.atomic_u32(off).unwrap().load(Ordering::SeqCst);
  let u64_at = |off: usize| u64::from(u32_at(off)) | u64::from(u32_at(off + 4)) << 32;
  let mut magic = [0u8; 4];
  region.read_at(0, &mut magic).unwrap();
  assert_eq!(&magic, b"SHMC");
  assert_eq!((u32_at(4), u32_at(8), u32_at(12), u32_at(16)), (2, 4, 100, 128));
  assert_eq!(Channel::size(4, 100).unwrap(), 512 + 4 * 128);
  for i in 0..4usize {
    assert_eq!(
      u64_at(512 + 128 * i),
      (i as u64) << 32 | i as u64,
      "slot {i} starts free for position {i} (owner half: the sequence number's low 30 bits)"
    );
  }
  assert_eq!(ch.try_send(b"hello").unwrap(), SendStatus::Sent);
  assert_eq!(u64_at(128), 1, "enqueue counter");
  assert_eq!(u64_at(512), 1 << 32 | 1, "a message for position 0");
  assert_eq!(u32_at(520), 5, "its length");
  let mut payload = [0u8; 5];
  region.read_at(528, &mut payload).unwrap();
  assert_eq!(&payload, b"hello");
  let Recv::Message(message) = ch.try_recv().unwrap() else {
    panic!("a message")
  };
  assert_eq!(u64_at(192), 1, "dequeue counter");
  assert_eq!(
    u64_at(512),
    1 << 32 | 1 << 31 | u64::from(std::process::id()),
    "held by this pid"
  );
  drop(message);
  assert_eq!(u64_at(512), 4 << 32 | 4, "free for position 4");
  assert_eq!(u32_at(64), 0);
  ch.close();
  assert_ne!(u32_at(64), 0, "closed flag");
}

/// The event-loop form: a planned wait counts as a waiter, so a send from another process
/// wakes it; the plan ends with `end_wait`.
#[test]
fn poll_plans_a_wait_that_a_send_from_another_process_ends() {
  let _fork = fork_lock();
  let ch = channel(2, 16);
  let waiting = |off: usize| ch.region().atomic_u32(off).unwrap().load(Ordering::SeqCst);
  let Poll::Wait(plan) = ch.poll_recv().unwrap() else {
    panic!("an empty channel plans a wait")
  };
  assert_eq!(plan.offset, 256, "the not-empty word");
  assert_eq!(waiting(260), 1, "counted as a waiting consumer");
  let chr = &ch;
  // SAFETY: the child only sends on the channel, then exits.
  let mut child = unsafe {
    fork(move || {
      std::thread::sleep(Duration::from_millis(20));
      i32::from(chr.send(b"hi", Some(LONG)) != Ok(SendStatus::Sent))
    })
  }
  .unwrap();
  let word = ch.region().atomic_u32(plan.offset).unwrap();
  let _ = shmkit::futex::wait_until(word, plan.expected, Some(plan.until)).unwrap();
  ch.end_wait(plan).unwrap();
  assert_eq!(waiting(260), 0);
  expect_success(&mut child, "sender");
  let Poll::Ready(Recv::Message(message)) = ch.poll_recv().unwrap() else {
    panic!("the message is there")
  };
  assert_eq!(message.to_vec(), b"hi");
  drop(message);

  assert!(matches!(ch.poll_send(b"1").unwrap(), Poll::Ready(SendStatus::Sent)));
  assert!(matches!(ch.poll_send(b"2").unwrap(), Poll::Ready(SendStatus::Sent)));
  let Poll::Wait(plan) = ch.poll_send(b"3").unwrap() else {
    panic!("a full channel plans a wait")
  };
  assert_eq!(
    (plan.offset, waiting(324)),
    (320, 1),
    "the not-full word, one waiting producer"
  );
  let before = word.load(Ordering::SeqCst);
  drop(ch.try_recv().unwrap());
  assert_ne!(
    ch.region().atomic_u32(320).unwrap().load(Ordering::SeqCst),
    plan.expected,
    "freeing a slot bumped the word the producer waits on"
  );
  assert_eq!(word.load(Ordering::SeqCst), before);
  ch.end_wait(plan).unwrap();
  assert!(matches!(ch.poll_send(b"3").unwrap(), Poll::Ready(SendStatus::Sent)));
  ch.close();
  assert!(matches!(ch.poll_send(b"4").unwrap(), Poll::Ready(SendStatus::Closed)));
}

/// A producer or consumer that dies between the two stores of a publication or a release (the
/// JavaScript path makes them so) leaves its pid in the owner half: while it lives the others
/// wait, never calling it corrupted; once it is dead they finish the hand-over for it.
#[test]
fn hand_overs_cut_short_are_awaited_then_finished() {
  let region = Arc::new(Region::anonymous(Channel::size(2, 64).unwrap()).unwrap());
  let ch = Channel::init_in(region.clone(), 0, 2, 64).unwrap();
  let owner = |slot: usize| region.atomic_u32(Channel::HEADER_SIZE + slot * 128).unwrap();
  let mut child = std::process::Command::new("true").spawn().unwrap();
  let dead = child.id();
  child.wait().unwrap();
  let me = std::process::id();
  let received = |ch: &Channel| match ch.recv(Some(Duration::from_secs(5))).unwrap() {
    Recv::Message(message) => message.to_vec(),
    other => panic!("expected a message, got {other:?}"),
  };

  // Position 0 published as far as its sequence number: `(1, WRITING | pid)`.
  assert_eq!(ch.try_send(b"one").unwrap(), SendStatus::Sent);
  owner(0).store(1 << 30 | me, Ordering::SeqCst);
  assert!(
    matches!(ch.try_recv().unwrap(), Recv::Empty),
    "a living publisher is awaited"
  );
  owner(0).store(1 << 30 | dead, Ordering::SeqCst);
  assert_eq!(
    received(&ch),
    b"one",
    "the message is whole: a dead publisher's is delivered"
  );

  // Position 0 released as far as its sequence number: `(2, READING | pid)`.
  owner(0).store(1 << 31 | me, Ordering::SeqCst);
  assert_eq!(ch.try_send(b"two").unwrap(), SendStatus::Sent, "slot 1 is free");
  assert_eq!(
    ch.try_send(b"three").unwrap(),
    SendStatus::Full,
    "a living releaser is awaited"
  );
  owner(0).store(1 << 31 | dead, Ordering::SeqCst);
  assert_eq!(
    ch.send(b"three", Some(Duration::from_secs(5))).unwrap(),
    SendStatus::Sent
  );
  assert_eq!(received(&ch), b"two");
  assert_eq!(received(&ch), b"three");

  // A free owner half that does not repeat the sequence number is corruption (position 3
  // is next, in slot 1).
  owner(1).store(7, Ordering::SeqCst);
  assert_eq!(ch.try_send(b"four").unwrap_err().kind(), ErrorKind::InvalidArgument);
}
