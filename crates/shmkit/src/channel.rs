//! `Channel`: a bounded many-producer, many-consumer message queue inside a region. The
//! design and the guarantees are on [`Channel`]; the byte layout and protocol in
//! `docs/layout.md` ("Channel").

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::futex;
use crate::region::Region;

/// "SHMC" read as a little-endian u32.
const MAGIC: u32 = u32::from_le_bytes(*b"SHMC");
const VERSION: u32 = 2;

/// Header fields, as byte offsets from the start of the channel.
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 4;
const OFF_CAPACITY: usize = 8;
const OFF_MAX_MESSAGE: usize = 12;
const OFF_STRIDE: usize = 16;
const OFF_CLOSED: usize = 64;
const OFF_ENQUEUE: usize = 128;
const OFF_DEQUEUE: usize = 192;
const OFF_NOT_EMPTY: usize = 256;
const OFF_CONSUMERS_WAITING: usize = 260;
const OFF_NOT_FULL: usize = 320;
const OFF_PRODUCERS_WAITING: usize = 324;

/// Slot fields: the control word, then the message length, then the payload.
const SLOT_CTL: usize = 0;
const SLOT_LEN: usize = 8;
const SLOT_PAYLOAD: usize = 16;

/// Owner bits of a control word: bit 30 a producer writing, bit 31 a consumer reading, bits
/// 0-29 the claimant's pid. Neither bit: nobody holds the slot, and the low half is the
/// sequence number's low 30 bits (see [`unowned`]).
const WRITING: u32 = 1 << 30;
const READING: u32 = 1 << 31;
const PID_MASK: u32 = WRITING - 1;

/// How long a waiter sleeps before it checks again whether the process holding the slot it
/// waits for lives; and, when nobody held it, whether somebody claimed it and died since (a
/// claim wakes nobody).
const LIVENESS_SLICE: Duration = Duration::from_millis(20);
const IDLE_SLICE: Duration = Duration::from_millis(250);
const CLOSED_SLICE: Duration = Duration::from_millis(1);
/// Retries before a blocking call goes to sleep.
const SPINS: u32 = 64;

/// The largest capacity (slots) and message size a channel accepts.
pub const CHANNEL_MAX_CAPACITY: u32 = 1 << 20;
/// The largest `max_message_size`: 1 GiB.
pub const CHANNEL_MAX_MESSAGE_SIZE: u32 = 1 << 30;

/// How a send ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum SendStatus {
  /// The message is in the channel.
  Sent,
  /// No slot came free (at once for `try_send`, or before the timeout).
  Full,
  /// The channel is closed; the message was not sent.
  Closed,
}

/// How a receive ended.
#[derive(Debug)]
#[must_use]
pub enum Recv<'a> {
  /// A message, held in its slot until the [`Message`] drops.
  Message(Message<'a>),
  /// Nothing arrived (at once for `try_recv`, or before the timeout).
  Empty,
  /// The channel is closed and every message sent before the close has been received.
  Closed,
}

/// The outcome of [`Channel::poll_send`] or [`Channel::poll_recv`].
#[derive(Debug)]
#[must_use]
pub enum Poll<T> {
  /// Done, as the blocking call would have ended.
  Ready(T),
  /// Nothing to do yet: arm this wait, then call [`Channel::end_wait`] and poll again.
  Wait(WaitPlan),
}

/// A wait on one of the channel's futex words, for callers that wait in their own event
/// loop (Linux `futex(FUTEX_WAIT)` without the private flag, or [`crate::futex::wait_until`]).
/// While a plan exists the channel counts one more waiter, so wakers do wake it: end each
/// plan with [`Channel::end_wait`].
#[derive(Debug)]
#[must_use = "a plan counts as a waiter until it is passed to Channel::end_wait"]
pub struct WaitPlan {
  /// The futex word's offset in the region (not in the channel).
  pub offset: usize,
  /// Wait while the word holds this value.
  pub expected: u32,
  /// Poll again by this instant at the latest, even without a wake: that is how a process
  /// that died holding a slot is noticed.
  pub until: Instant,
  waiting: usize,
}

/// A message held in its slot of the ring: read it in place, then drop it to free the slot.
/// While it is held, no producer can reuse the slot.
#[derive(Debug)]
pub struct Message<'a> {
  channel: &'a Channel,
  held: Held,
}

/// A message taken out of the ring but not yet released, without a borrow of the channel
/// (for bindings that keep it across calls). Give it back with [`Channel::release`].
#[derive(Debug)]
#[must_use = "a held message blocks its slot until it is released"]
pub struct Held {
  pos: u64,
  len: usize,
}

impl Held {
  /// The message length in bytes.
  #[must_use]
  pub fn len(&self) -> usize {
    self.len
  }

  /// Ends this value but not the hold: the message's position, whose slot stays taken until
  /// [`Channel::release_claim`]. For bindings that keep the hold by position (next to
  /// slots they claim through their own mapping).
  #[must_use = "the slot stays taken until `release_claim` is called with this position"]
  pub fn into_position(self) -> u64 {
    self.pos
  }

  /// Whether the message is empty.
  #[must_use]
  pub fn is_empty(&self) -> bool {
    self.len == 0
  }
}

impl Message<'_> {
  /// The message length in bytes.
  #[must_use]
  pub fn len(&self) -> usize {
    self.held.len
  }

  /// Whether the message has no bytes.
  #[must_use]
  pub fn is_empty(&self) -> bool {
    self.held.len == 0
  }

  /// The first byte of the message in this process's mapping.
  #[must_use]
  pub fn as_ptr(&self) -> *const u8 {
    self.channel.payload_ptr(&self.held)
  }

  /// The message in place, without a copy.
  ///
  /// # Safety
  /// No other process may write to the slot while the slice lives. The protocol guarantees
  /// that (a held slot is reused only after its holder dies); only a process that ignores the
  /// protocol, or writes over the region, breaks it.
  #[must_use]
  pub unsafe fn as_slice(&self) -> &[u8] {
    // SAFETY: the payload is `len` bytes inside the live mapping (checked when it was taken);
    // the caller promises nobody writes it while the slice lives.
    unsafe { std::slice::from_raw_parts(self.as_ptr(), self.held.len) }
  }

  /// Copies the message into `buf`, which must be exactly [`Message::len`] bytes.
  ///
  /// # Panics
  /// If `buf.len()` differs from the message length.
  pub fn copy_to(&self, buf: &mut [u8]) {
    assert_eq!(buf.len(), self.held.len, "buffer length");
    // SAFETY: source: `len` bytes of the held slot's payload (bounds checked at take);
    // destination: `buf`, private to this process, so the two never overlap.
    unsafe { std::ptr::copy_nonoverlapping(self.as_ptr(), buf.as_mut_ptr(), buf.len()) };
  }

  /// The message as a new vector.
  #[must_use]
  pub fn to_vec(&self) -> Vec<u8> {
    let mut out = vec![0; self.held.len];
    self.copy_to(&mut out);
    out
  }

  /// Keeps the message past this borrow; see [`Held`].
  pub fn into_held(self) -> Held {
    let me = std::mem::ManuallyDrop::new(self);
    Held {
      pos: me.held.pos,
      len: me.held.len,
    }
  }
}

impl Drop for Message<'_> {
  fn drop(&mut self) {
    self.channel.release_at(self.held.pos);
  }
}

/// A bounded message queue inside a region: many producers, many consumers, every message
/// delivered once, variable sizes up to a fixed maximum, processes that die mid-message
/// recovered. The byte layout and the protocol are in `docs/layout.md` ("Channel"), so C or
/// Python processes can take part.
///
/// The design is Dmitry Vyukov's bounded MPMC queue of fixed-size slots, with one change that
/// makes it survive `SIGKILL`: a slot is claimed by a compare-and-swap on its own 64-bit
/// control word, which holds the slot's sequence number *and* the claimant's pid, so no
/// instant exists at which a slot is taken by nobody known. The shared enqueue and dequeue
/// counters only say where to look; anyone who finds a slot taken moves them on.
///
/// - **Fast path:** a few atomics and one `memcpy`, no system call. Sleeping and waking use
///   [`crate::futex`] words, and a side wakes the other only when its waiter count says
///   someone sleeps.
/// - **A producer killed mid-message** leaves its slot claimed by a dead pid. The consumer
///   that waits for it (or a producer that laps it) sees the pid is gone and turns the slot
///   into a hole that everyone skips: the torn bytes are never delivered.
/// - **A consumer killed holding a message** loses that one message (it had been handed
///   out); the producer that needs the slot sees the pid is gone and frees it.
/// - **Waiters notice deaths** within 20 ms when the slot they wait for has a claimant, and
///   within 250 ms when it had none when they went to sleep (a claim wakes nobody).
/// - **End of stream:** [`Channel::close`], by anyone, refuses new messages; consumers still
///   get every message sent before it, then [`Recv::Closed`].
///
/// Every bit pattern in the shared words is handled: unexpected states are
/// [`ErrorKind::InvalidArgument`] ("channel corrupted"), lengths read from the ring are
/// checked against the maximum, and the header is read once, at attach, and validated.
/// Liveness is `kill(pid, 0)` (plus `/proc/PID/stat` on Linux, so an unreaped zombie counts as
/// dead): every process using a channel must see the others' pids (one pid namespace).
///
/// ```
/// use std::sync::Arc;
/// use shmkit::{Channel, Recv, Region, SendStatus};
///
/// let size = Channel::size(8, 1024)?;
/// let region = Arc::new(Region::anonymous(size)?);
/// let channel = Channel::init_in(region.clone(), 0, 8, 1024)?;
/// assert_eq!(channel.try_send(b"hello")?, SendStatus::Sent);
/// channel.close();
/// let other = Channel::at(region, 0)?; // as another process would
/// match other.try_recv()? {
///   Recv::Message(message) => assert_eq!(message.to_vec(), b"hello"),
///   other => panic!("expected a message, got {other:?}"),
/// }
/// assert!(matches!(other.try_recv()?, Recv::Closed));
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct Channel {
  region: Arc<Region>,
  offset: usize,
  capacity: u32,
  max_message_size: u32,
  stride: usize,
}

/// Which end of the queue an operation works at.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
  /// Producers: the enqueue counter, `WRITING` claims, sleeping on `not_full`.
  Send,
  /// Consumers: the dequeue counter, `READING` claims, sleeping on `not_empty`.
  Recv,
}

impl Side {
  fn counter(self) -> usize {
    match self {
      Side::Send => OFF_ENQUEUE,
      Side::Recv => OFF_DEQUEUE,
    }
  }

  fn claim_bit(self) -> u32 {
    match self {
      Side::Send => WRITING,
      Side::Recv => READING,
    }
  }

  /// The futex word this side sleeps on.
  fn sleep_word(self) -> usize {
    match self {
      Side::Send => OFF_NOT_FULL,
      Side::Recv => OFF_NOT_EMPTY,
    }
  }

  /// The sequence number a slot holds when this side can claim it for position `pos`:
  /// `pos` for a producer (free), `pos + 1` for a consumer (a message).
  fn ready_seq(self, pos: u64) -> u32 {
    match self {
      Side::Send => low(pos),
      Side::Recv => low(pos.wrapping_add(1)),
    }
  }

  /// Whether a slot `d` sequence numbers past `ready_seq` (with a valid `owner` half) shows
  /// the position already taken by someone else, so the counter should move on. Send: being
  /// written, written (being published, ready, being read), or done; receive: being read,
  /// skipped, or already a lap ahead.
  fn moves_on(self, d: i64, cap: i64, owner: u32) -> bool {
    match self {
      Side::Send => (d == 0 && owner & WRITING != 0) || d == 1 || d == cap,
      Side::Recv => (d == 0 && owner & READING != 0) || d == cap - 1 || d == cap,
    }
  }

  /// Whether the slot is not ready yet (full for a producer, empty for a consumer): it
  /// holds the lap before, or the one before that and is still owned, or it is in the middle
  /// of the two-step hand-over of docs/layout.md (a release for a producer, a publication for
  /// a consumer).
  fn must_wait(self, d: i64, cap: i64, owner: u32) -> bool {
    match self {
      Side::Send => d == 1 - cap || (d == -cap && owner & WRITING != 0) || (d == 0 && owner & READING != 0),
      Side::Recv => d == -1 || (d == -cap && is_owned(owner)) || (d == 0 && owner & WRITING != 0),
    }
  }
}

/// One attempt to claim a slot.
enum Step {
  Claimed(u64),
  /// The slot at the counter's position is not ready (full, or empty); `ctl` is its word.
  NotReady {
    pos: u64,
    ctl: u64,
  },
  Closed,
}

fn corrupted(what: &str) -> Error {
  Error::new(ErrorKind::InvalidArgument, format!("channel corrupted: {what}"))
}

fn split(ctl: u64) -> (u32, u32) {
  #[expect(clippy::cast_possible_truncation, reason = "the two halves of the word")]
  let halves = ((ctl >> 32) as u32, ctl as u32);
  halves
}

fn join(seq: u32, owner: u32) -> u64 {
  (u64::from(seq) << 32) | u64::from(owner)
}

/// A control word nobody holds: the sequence number, and its low 30 bits as the owner half,
/// so a claim can compare-and-swap the owner half alone (32 bits) without mistaking another
/// lap's free slot for this one.
fn unowned(seq: u32) -> u64 {
  join(seq, seq & PID_MASK)
}

/// Whether an owner half names a claimant (a writer or a reader).
fn is_owned(owner: u32) -> bool {
  owner & !PID_MASK != 0
}

/// The low 32 bits of a position: what a slot's sequence number is compared with.
fn low(pos: u64) -> u32 {
  #[expect(clippy::cast_possible_truncation, reason = "sequence numbers wrap at 2^32")]
  let low = pos as u32;
  low
}

/// Checks the owner half of a slot's word: nobody (then it repeats the sequence number's
/// low 30 bits) or a writer or a reader with a pid. Either claimant may appear in either
/// phase: a writer publishing and a reader releasing change the sequence number first.
fn check_owner(seq: u32, owner: u32) -> Result<()> {
  let ok = match owner & !PID_MASK {
    0 => owner == seq & PID_MASK,
    WRITING | READING => owner & PID_MASK != 0,
    _ => false,
  };
  if ok {
    Ok(())
  } else {
    Err(corrupted("slot owner"))
  }
}

/// `a - b` as a signed distance between sequence numbers.
fn distance(a: u32, b: u32) -> i64 {
  #[expect(clippy::cast_possible_wrap, reason = "a wrapping difference read as signed")]
  let d = a.wrapping_sub(b) as i32;
  i64::from(d)
}

impl Channel {
  /// Bytes a channel of `capacity` slots for messages of up to `max_message_size` bytes
  /// occupies in a region: a 512-byte header, then `capacity` slots of
  /// `16 + max_message_size` bytes rounded up to 64.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidArgument`] if `capacity` is not a power of two in
  /// `2..=`[`CHANNEL_MAX_CAPACITY`] or `max_message_size` is not in
  /// `1..=`[`CHANNEL_MAX_MESSAGE_SIZE`]; [`ErrorKind::InvalidSize`] if the total overflows.
  pub fn size(capacity: u32, max_message_size: u32) -> Result<usize> {
    if !(2..=CHANNEL_MAX_CAPACITY).contains(&capacity) || !capacity.is_power_of_two() {
      return Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("capacity {capacity} is not a power of two from 2 to {CHANNEL_MAX_CAPACITY}"),
      ));
    }
    if !(1..=CHANNEL_MAX_MESSAGE_SIZE).contains(&max_message_size) {
      return Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("maxMessageSize {max_message_size} is not from 1 to {CHANNEL_MAX_MESSAGE_SIZE}"),
      ));
    }
    let stride = Self::stride(max_message_size);
    usize::try_from(capacity)
      .ok()
      .and_then(|c| c.checked_mul(stride))
      .and_then(|s| s.checked_add(Self::HEADER_SIZE))
      .ok_or_else(|| Error::new(ErrorKind::InvalidSize, "channel size overflows"))
  }

  /// Bytes of the header, before the first slot.
  pub const HEADER_SIZE: usize = 512;
  /// A channel's offset in its region must be a multiple of this.
  pub const ALIGN: usize = 64;

  fn stride(max_message_size: u32) -> usize {
    (SLOT_PAYLOAD + max_message_size as usize).next_multiple_of(64)
  }

  fn check_placement(region: &Region, offset: usize, size: usize) -> Result<()> {
    if region.is_private() || !region.is_writable() {
      return Err(Error::new(
        ErrorKind::InvalidArgument,
        "a channel needs a shared, writable region",
      ));
    }
    if !offset.is_multiple_of(Self::ALIGN) {
      return Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("offset {offset} is not a multiple of {}", Self::ALIGN),
      ));
    }
    match offset.checked_add(size) {
      Some(end) if end <= region.len() => Ok(()),
      _ => Err(Error::new(
        ErrorKind::InvalidSize,
        format!(
          "a channel of {size} bytes at offset {offset} does not fit in a region of {} bytes",
          region.len()
        ),
      )),
    }
  }

  /// Creates an empty, open channel at `offset` (a multiple of [`Channel::ALIGN`]) of
  /// `region`, overwriting whatever was there. Do it once, before other processes attach
  /// with [`Channel::at`].
  ///
  /// # Errors
  /// As [`Channel::size`]; [`ErrorKind::InvalidSize`] if it does not fit;
  /// [`ErrorKind::InvalidArgument`] for a misaligned offset or a private or read-only region.
  pub fn init_in(region: Arc<Region>, offset: usize, capacity: u32, max_message_size: u32) -> Result<Self> {
    let size = Self::size(capacity, max_message_size)?;
    Self::check_placement(&region, offset, size)?;
    let channel = Self {
      region,
      offset,
      capacity,
      max_message_size,
      stride: Self::stride(max_message_size),
    };
    channel.word(OFF_MAGIC).store(0, SeqCst);
    channel.word(OFF_VERSION).store(VERSION, SeqCst);
    channel.word(OFF_CAPACITY).store(capacity, SeqCst);
    channel.word(OFF_MAX_MESSAGE).store(max_message_size, SeqCst);
    #[expect(clippy::cast_possible_truncation, reason = "at most 2^30 + 64")]
    channel.word(OFF_STRIDE).store(channel.stride as u32, SeqCst);
    for off in [
      OFF_CLOSED,
      OFF_NOT_EMPTY,
      OFF_CONSUMERS_WAITING,
      OFF_NOT_FULL,
      OFF_PRODUCERS_WAITING,
    ] {
      channel.word(off).store(0, SeqCst);
    }
    channel.word64(OFF_ENQUEUE).store(0, SeqCst);
    channel.word64(OFF_DEQUEUE).store(0, SeqCst);
    for index in 0..capacity {
      channel.ctl(u64::from(index)).store(unowned(index), SeqCst);
      channel.len_word(u64::from(index)).store(0, SeqCst);
    }
    channel.word(OFF_MAGIC).store(MAGIC, SeqCst);
    Ok(channel)
  }

  /// Attaches to the channel some process created at `offset` of `region`, reading its
  /// capacity and maximum message size from the header.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidArgument`] if the bytes there are not a channel of this version (or
  /// not yet initialised), or for a misaligned offset or a private or read-only region;
  /// [`ErrorKind::InvalidSize`] if the channel the header describes does not fit.
  pub fn at(region: Arc<Region>, offset: usize) -> Result<Self> {
    Self::check_placement(&region, offset, Self::HEADER_SIZE)?;
    let header = Self {
      region,
      offset,
      capacity: 0,
      max_message_size: 0,
      stride: 0,
    };
    if header.word(OFF_MAGIC).load(SeqCst) != MAGIC {
      return Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("no channel at offset {offset} (magic number missing)"),
      ));
    }
    let version = header.word(OFF_VERSION).load(SeqCst);
    if version != VERSION {
      return Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("channel version {version} is not {VERSION}"),
      ));
    }
    let capacity = header.word(OFF_CAPACITY).load(SeqCst);
    let max_message_size = header.word(OFF_MAX_MESSAGE).load(SeqCst);
    let size = Self::size(capacity, max_message_size).map_err(|_| corrupted("header"))?;
    if header.word(OFF_STRIDE).load(SeqCst) as usize != Self::stride(max_message_size) {
      return Err(corrupted("slot size"));
    }
    Self::check_placement(&header.region, offset, size)?;
    Ok(Self {
      capacity,
      max_message_size,
      stride: Self::stride(max_message_size),
      ..header
    })
  }

  /// Slots in the ring: messages that can wait unreceived.
  #[must_use]
  pub fn capacity(&self) -> u32 {
    self.capacity
  }

  /// The largest message, in bytes.
  #[must_use]
  pub fn max_message_size(&self) -> u32 {
    self.max_message_size
  }

  /// The region the channel lives in.
  #[must_use]
  pub fn region(&self) -> &Arc<Region> {
    &self.region
  }

  /// Its offset inside the region.
  #[must_use]
  pub fn offset(&self) -> usize {
    self.offset
  }

  fn ptr(&self, off: usize) -> *mut u8 {
    // SAFETY: every caller passes an offset inside the channel, which `check_placement`
    // proved lies inside the live mapping.
    unsafe { self.region.as_ptr().add(self.offset + off) }
  }

  fn word(&self, off: usize) -> &AtomicU32 {
    // SAFETY: `off` is a header or slot field inside the channel (see `ptr`), 4-aligned
    // because the channel is 64-aligned in a page-aligned mapping; all shmkit accesses to it
    // are atomic, and `&self` keeps the region mapped.
    unsafe { AtomicU32::from_ptr(self.ptr(off).cast()) }
  }

  fn word64(&self, off: usize) -> &AtomicU64 {
    // SAFETY: as in `word`, and every 64-bit field sits at a multiple of 8.
    unsafe { AtomicU64::from_ptr(self.ptr(off).cast()) }
  }

  fn slot_offset(&self, pos: u64) -> usize {
    // The mask keeps the index below `capacity`, which `check_placement` covered.
    #[expect(clippy::cast_possible_truncation, reason = "masked below capacity (u32)")]
    let index = (pos & u64::from(self.capacity - 1)) as usize;
    Self::HEADER_SIZE + index * self.stride
  }

  fn ctl(&self, pos: u64) -> &AtomicU64 {
    self.word64(self.slot_offset(pos) + SLOT_CTL)
  }

  fn len_word(&self, pos: u64) -> &AtomicU32 {
    self.word(self.slot_offset(pos) + SLOT_LEN)
  }

  fn payload_ptr(&self, held: &Held) -> *mut u8 {
    self.ptr(self.slot_offset(held.pos) + SLOT_PAYLOAD)
  }

  /// Whether `seq` is in the producers' phase for the slot of `pos` (congruent to the slot
  /// index: free, being written, or being released), not the consumers' (one more: being
  /// published, a message, or being read).
  fn producers_phase(&self, pos: u64, seq: u32) -> bool {
    (seq.wrapping_sub(low(pos)) & (self.capacity - 1)) == 0
  }

  /// Whether the channel was closed.
  #[must_use]
  pub fn is_closed(&self) -> bool {
    self.word(OFF_CLOSED).load(SeqCst) != 0
  }

  /// Closes the channel: sends fail with [`SendStatus::Closed`] from now on, and receivers
  /// get [`Recv::Closed`] once every message sent before is received. Anyone may close;
  /// with several producers, close when the last one is done. Idempotent.
  pub fn close(&self) {
    self.word(OFF_CLOSED).store(1, SeqCst);
    self.wake(OFF_NOT_EMPTY, true);
    self.wake(OFF_NOT_FULL, true);
  }

  /// Bumps a futex word and wakes its sleepers, if any (all of them when `always`).
  fn wake(&self, word: usize, always: bool) {
    let waiting = if word == OFF_NOT_EMPTY {
      OFF_CONSUMERS_WAITING
    } else {
      OFF_PRODUCERS_WAITING
    };
    if always || self.word(waiting).load(SeqCst) != 0 {
      let word = self.word(word);
      word.fetch_add(1, SeqCst);
      // A failed wake changes nothing: sleepers re-check after their time slice.
      let _ = futex::wake_all(word);
    }
  }

  /// A bound on retries within one attempt: each retry means another process moved a
  /// counter on; more than this means the words are not a channel.
  fn retry_limit(&self) -> u32 {
    self.capacity.saturating_mul(4).saturating_add(1024)
  }

  /// Claims the slot at the counter's position for `side`, moving the counter past slots
  /// others took; stops at a slot that is not ready, or at the end.
  fn try_claim(&self, side: Side) -> Result<Step> {
    let me = side.claim_bit() | my_pid();
    let cap = i64::from(self.capacity);
    let counter = self.word64(side.counter());
    for _ in 0..self.retry_limit() {
      let pos = counter.load(SeqCst);
      let slot = self.ctl(pos);
      let ctl = slot.load(SeqCst);
      let (seq, owner) = split(ctl);
      check_owner(seq, owner)?;
      let d = distance(seq, side.ready_seq(pos));
      if d == 0 && !is_owned(owner) {
        if side == Side::Send && self.is_closed() {
          return Ok(Step::Closed);
        }
        if slot.compare_exchange(ctl, join(seq, me), SeqCst, SeqCst).is_ok() {
          let _ = counter.compare_exchange(pos, pos.wrapping_add(1), SeqCst, SeqCst);
          // Checked again after the claim, so a receiver that saw the close and an
          // unmoved enqueue counter never misses this message: it is withdrawn instead.
          if side == Side::Send && self.is_closed() {
            self.skip(pos, join(seq, me));
            return Ok(Step::Closed);
          }
          return Ok(Step::Claimed(pos));
        }
      } else if side.moves_on(d, cap, owner) {
        let _ = counter.compare_exchange(pos, pos.wrapping_add(1), SeqCst, SeqCst);
      } else if side.must_wait(d, cap, owner) {
        let ended = match side {
          Side::Send => self.is_closed(),
          // Drained: closed, nothing claimed past this position, and the slot unchanged.
          Side::Recv => {
            !is_owned(owner)
              && d == -1
              && self.is_closed()
              && self.word64(OFF_ENQUEUE).load(SeqCst) == pos
              && slot.load(SeqCst) == ctl
          }
        };
        return Ok(if ended {
          Step::Closed
        } else {
          Step::NotReady { pos, ctl }
        });
      } else if counter.load(SeqCst) == pos {
        return Err(corrupted("slot sequence"));
      }
    }
    Err(corrupted(match side {
      Side::Send => "enqueue counter",
      Side::Recv => "dequeue counter",
    }))
  }

  /// The one claim loop: claims a slot for `side`, waiting up to `deadline` when `wait`
  /// (spinning briefly, recovering slots of dead owners, then sleeping). `Ok(None)`: the
  /// slot did not become ready in time.
  fn claim(&self, side: Side, wait: bool, deadline: Option<Instant>) -> Result<Option<Step>> {
    let mut spins = 0;
    loop {
      let (pos, ctl) = match self.try_claim(side)? {
        Step::NotReady { pos, ctl } => (pos, ctl),
        done => return Ok(Some(done)),
      };
      if wait && spins < SPINS {
        spins += 1;
        spin(spins);
        continue;
      }
      if self.recover(pos, ctl) {
        continue;
      }
      if !wait || !self.sleep(side.sleep_word(), pos, ctl, deadline)? {
        return Ok(None);
      }
    }
  }

  /// The claim step of an event loop: a claim or the end (`Ready`), or a wait to arm.
  fn poll_claim(&self, side: Side) -> Result<Poll<Step>> {
    loop {
      let (pos, ctl) = match self.try_claim(side)? {
        Step::NotReady { pos, ctl } => (pos, ctl),
        done => return Ok(Poll::Ready(done)),
      };
      if self.recover(pos, ctl) {
        continue;
      }
      if let Some(plan) = self.plan_wait(side.sleep_word(), pos, ctl) {
        return Ok(Poll::Wait(plan));
      }
    }
  }

  /// Turns a claimed-for-writing slot into a hole that receivers skip.
  fn skip(&self, pos: u64, ctl: u64) {
    let (seq, _) = split(ctl);
    let freed = unowned(seq.wrapping_add(self.capacity));
    if self.ctl(pos).compare_exchange(ctl, freed, SeqCst, SeqCst).is_ok() {
      self.wake(OFF_NOT_EMPTY, false);
      self.wake(OFF_NOT_FULL, false);
    }
  }

  /// If the slot at `pos` still holds `ctl` and its claimant is dead, frees it: a half
  /// written message becomes a hole, a message being read is dropped, and a hand-over cut
  /// short (a message being published, a slot being released) is finished. Returns whether
  /// the caller should look again at once.
  fn recover(&self, pos: u64, ctl: u64) -> bool {
    let (seq, owner) = split(ctl);
    if !is_owned(owner) || process_alive(owner & PID_MASK) {
      return false;
    }
    let writer = owner & WRITING != 0;
    let freed = match (writer, self.producers_phase(pos, seq)) {
      (true, true) => {
        self.skip(pos, ctl);
        return true;
      }
      // Being read: that message is gone with its reader.
      (false, false) => unowned(seq.wrapping_sub(1).wrapping_add(self.capacity)),
      // Being published (the message is whole) or released: only the owner half was left.
      (true, false) | (false, true) => unowned(seq),
    };
    if self.ctl(pos).compare_exchange(ctl, freed, SeqCst, SeqCst).is_ok() {
      self.wake(OFF_NOT_EMPTY, false);
      self.wake(OFF_NOT_FULL, false);
    }
    true
  }

  /// Lets `fill` write the payload of the slot this process claimed at `pos`, then
  /// publishes it. If `fill` panics, the slot becomes a hole instead.
  fn fill_and_publish(&self, pos: u64, len: usize, fill: impl FnOnce(*mut u8)) {
    struct Unpublished<'a>(&'a Channel, u64);
    impl Drop for Unpublished<'_> {
      fn drop(&mut self) {
        let claimed = join(low(self.1), WRITING | my_pid());
        self.0.skip(self.1, claimed);
      }
    }
    let slot = self.slot_offset(pos);
    let guard = Unpublished(self, pos);
    fill(self.ptr(slot + SLOT_PAYLOAD));
    std::mem::forget(guard);
    #[expect(clippy::cast_possible_truncation, reason = "checked against max_message_size")]
    self.word(slot + SLOT_LEN).store(len as u32, Relaxed);
    // Only the claimant moves a claimed slot on, so a plain store publishes.
    self.ctl(pos).store(unowned(low(pos.wrapping_add(1))), SeqCst);
    self.wake(OFF_NOT_EMPTY, false);
  }

  fn check_len(&self, len: usize) -> Result<()> {
    if len > self.max_message_size as usize {
      return Err(Error::new(
        ErrorKind::InvalidSize,
        format!(
          "a message of {len} bytes exceeds the channel's maximum of {}",
          self.max_message_size
        ),
      ));
    }
    Ok(())
  }

  /// The one send loop: claim a slot (waiting up to `deadline` when `wait`), fill, publish.
  fn send_filled(
    &self,
    len: usize,
    wait: bool,
    deadline: Option<Instant>,
    fill: impl FnOnce(*mut u8),
  ) -> Result<SendStatus> {
    self.check_len(len)?;
    Ok(match self.claim(Side::Send, wait, deadline)? {
      Some(Step::Claimed(pos)) => {
        self.fill_and_publish(pos, len, fill);
        SendStatus::Sent
      }
      Some(Step::Closed) => SendStatus::Closed,
      Some(Step::NotReady { .. }) | None => SendStatus::Full,
    })
  }

  fn copy_from(msg: &[u8]) -> impl FnOnce(*mut u8) + '_ {
    move |payload| {
      // SAFETY: `payload` is the claimed slot's payload, at least `msg.len()` bytes inside
      // the mapping (length checked against the maximum); only this process writes a
      // claimed slot. `msg` may itself lie in a mapping of the region (a JS view of it, say),
      // so the copy allows overlap.
      unsafe { std::ptr::copy(msg.as_ptr(), payload, msg.len()) };
    }
  }

  /// Sends `msg` if a slot is free now.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidSize`] if `msg` is longer than [`Channel::max_message_size`];
  /// [`ErrorKind::InvalidArgument`] if the channel's words are corrupted.
  pub fn try_send(&self, msg: &[u8]) -> Result<SendStatus> {
    self.send_filled(msg.len(), false, None, Self::copy_from(msg))
  }

  /// Sends `msg`, waiting while the channel is full, at most `timeout` (`None`: no limit).
  ///
  /// # Errors
  /// As [`Channel::try_send`]; an OS error of the futex wait.
  pub fn send(&self, msg: &[u8], timeout: Option<Duration>) -> Result<SendStatus> {
    self.send_until(msg, timeout.and_then(|t| Instant::now().checked_add(t)))
  }

  /// [`Channel::send`] with an absolute deadline.
  ///
  /// # Errors
  /// As [`Channel::send`].
  pub fn send_until(&self, msg: &[u8], deadline: Option<Instant>) -> Result<SendStatus> {
    self.send_filled(msg.len(), true, deadline, Self::copy_from(msg))
  }

  /// Sends a message of `len` bytes that `fill` writes straight into its slot, without a
  /// copy, waiting up to `deadline` for a free slot. The slice starts zeroed only the first
  /// time round the ring: `fill` should write all of it. If `fill` panics, nothing is sent.
  ///
  /// # Safety
  /// `fill` gets a slice of shared memory. The protocol makes this process the only writer
  /// of the slot until it publishes; only a process that ignores the protocol, or writes over
  /// the region, could change the bytes under the slice.
  ///
  /// # Errors
  /// As [`Channel::send`].
  pub unsafe fn send_with(
    &self,
    len: usize,
    deadline: Option<Instant>,
    fill: impl FnOnce(&mut [u8]),
  ) -> Result<SendStatus> {
    self.send_filled(len, true, deadline, |payload| {
      // SAFETY: `len` bytes of the claimed slot's payload, inside the mapping (checked
      // against the maximum); exclusive by the protocol, as the caller promised.
      fill(unsafe { std::slice::from_raw_parts_mut(payload, len) });
    })
  }

  /// Registers as a waiter on `word` for the slot at `pos`, which held `ctl`: `None` if the
  /// slot moved on meanwhile, so the caller should look again at once.
  fn plan_wait(&self, word: usize, pos: u64, ctl: u64) -> Option<WaitPlan> {
    let waiting = if word == OFF_NOT_EMPTY {
      OFF_CONSUMERS_WAITING
    } else {
      OFF_PRODUCERS_WAITING
    };
    let expected = self.word(word).load(SeqCst);
    self.word(waiting).fetch_add(1, SeqCst);
    if self.ctl(pos).load(SeqCst) != ctl {
      self.word(waiting).fetch_sub(1, SeqCst);
      return None;
    }
    let holder = split(ctl).1;
    let slice = if is_owned(holder) {
      LIVENESS_SLICE
    } else if self.is_closed() {
      // Closed after the caller looked: its next look ends the wait. (A channel that stays
      // closed but never drains has corrupted counters; it is polled, not spun on.)
      CLOSED_SLICE
    } else {
      IDLE_SLICE
    };
    Some(WaitPlan {
      offset: self.offset + word,
      expected,
      until: Instant::now() + slice,
      waiting,
    })
  }

  /// Ends a wait that [`Channel::poll_send`] or [`Channel::poll_recv`] planned (however it
  /// ended: woken, timed out, or abandoned). Call it exactly once per plan, then poll again.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidArgument`] if the channel's header was overwritten meanwhile.
  #[expect(
    clippy::needless_pass_by_value,
    reason = "taking it by value ends the plan, so it cannot be ended twice"
  )]
  pub fn end_wait(&self, plan: WaitPlan) -> Result<()> {
    let WaitPlan { waiting, .. } = plan;
    self.word(waiting).fetch_sub(1, SeqCst);
    if self.word(OFF_MAGIC).load(Relaxed) != MAGIC {
      return Err(corrupted("magic number"));
    }
    Ok(())
  }

  /// Sleeps on a futex word until the slot at `pos` may have moved on from `ctl`, the
  /// channel closed, or a time slice passed (when the slot has a claimant whose death we
  /// must notice). Returns `false` once `deadline` has passed.
  fn sleep(&self, word: usize, pos: u64, ctl: u64, deadline: Option<Instant>) -> Result<bool> {
    if deadline.is_some_and(|at| Instant::now() >= at) {
      return Ok(false);
    }
    let Some(plan) = self.plan_wait(word, pos, ctl) else {
      return Ok(true);
    };
    let until = deadline.map_or(plan.until, |at| at.min(plan.until));
    let outcome = futex::wait_until(self.word(word), plan.expected, Some(until));
    self.end_wait(plan)?;
    outcome?;
    Ok(true)
  }

  /// A send for an event loop: sends `msg` if a slot is free, else plans a wait for the
  /// caller to arm (a futex wait on [`WaitPlan::offset`] while it holds
  /// [`WaitPlan::expected`], until [`WaitPlan::until`] at the latest), after which it calls
  /// [`Channel::end_wait`] and polls again.
  ///
  /// # Errors
  /// As [`Channel::try_send`].
  pub fn poll_send(&self, msg: &[u8]) -> Result<Poll<SendStatus>> {
    self.check_len(msg.len())?;
    Ok(match self.poll_claim(Side::Send)? {
      Poll::Ready(Step::Claimed(pos)) => {
        self.fill_and_publish(pos, msg.len(), Self::copy_from(msg));
        Poll::Ready(SendStatus::Sent)
      }
      Poll::Ready(Step::Closed) => Poll::Ready(SendStatus::Closed),
      Poll::Ready(Step::NotReady { .. }) => Poll::Ready(SendStatus::Full),
      Poll::Wait(plan) => Poll::Wait(plan),
    })
  }

  /// A receive for an event loop: the next message (or the end) if there is one, else a
  /// wait to arm, as in [`Channel::poll_send`].
  ///
  /// # Errors
  /// As [`Channel::try_recv`].
  pub fn poll_recv(&self) -> Result<Poll<Recv<'_>>> {
    Ok(match self.poll_claim(Side::Recv)? {
      Poll::Ready(step) => Poll::Ready(self.received(Some(&step))?),
      Poll::Wait(plan) => Poll::Wait(plan),
    })
  }

  fn take(&self, pos: u64) -> Result<Held> {
    let len = self.len_word(pos).load(Relaxed);
    if len > self.max_message_size {
      self.release_at(pos);
      return Err(corrupted("message length"));
    }
    Ok(Held { pos, len: len as usize })
  }

  /// What a receive's claim step comes to.
  fn received(&self, step: Option<&Step>) -> Result<Recv<'_>> {
    Ok(match step {
      Some(&Step::Claimed(pos)) => Recv::Message(Message {
        channel: self,
        held: self.take(pos)?,
      }),
      Some(Step::Closed) => Recv::Closed,
      Some(Step::NotReady { .. }) | None => Recv::Empty,
    })
  }

  /// The one receive: claim the next message, waiting up to `deadline` when `wait`.
  fn recv_inner(&self, wait: bool, deadline: Option<Instant>) -> Result<Recv<'_>> {
    let step = self.claim(Side::Recv, wait, deadline)?;
    self.received(step.as_ref())
  }

  /// Takes the next message if one is ready now.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidArgument`] if the channel's words are corrupted.
  pub fn try_recv(&self) -> Result<Recv<'_>> {
    self.recv_inner(false, None)
  }

  /// Takes the next message, waiting at most `timeout` (`None`: no limit) for one.
  ///
  /// # Errors
  /// As [`Channel::try_recv`]; an OS error of the futex wait.
  pub fn recv(&self, timeout: Option<Duration>) -> Result<Recv<'_>> {
    self.recv_until(timeout.and_then(|t| Instant::now().checked_add(t)))
  }

  /// [`Channel::recv`] with an absolute deadline.
  ///
  /// # Errors
  /// As [`Channel::recv`].
  pub fn recv_until(&self, deadline: Option<Instant>) -> Result<Recv<'_>> {
    self.recv_inner(true, deadline)
  }

  /// The payload of a held message, in this process's mapping: valid until
  /// [`Channel::release`].
  #[must_use]
  pub fn held_ptr(&self, held: &Held) -> *mut u8 {
    self.payload_ptr(held)
  }

  /// Frees the slot of a held message.
  #[expect(
    clippy::needless_pass_by_value,
    reason = "taking it by value ends the hold, so it cannot be released twice"
  )]
  pub fn release(&self, held: Held) {
    let Held { pos, .. } = held;
    self.release_at(pos);
  }

  /// Frees the slot this process holds for reading at position `pos` (only its low 32 bits
  /// matter), as [`Channel::release`] does for a [`Held`]: for bindings that claim slots
  /// through their own mapping of the same memory and keep the message across calls. Does
  /// nothing if this process does not hold that slot.
  pub fn release_claim(&self, pos: u64) {
    self.release_at(pos);
  }

  fn release_at(&self, pos: u64) {
    let seq = low(pos.wrapping_add(1));
    let held = join(seq, READING | my_pid());
    let freed = unowned(low(pos.wrapping_add(u64::from(self.capacity))));
    // Fails only if the words were overwritten meanwhile; then there is nothing to free.
    if self.ctl(pos).compare_exchange(held, freed, SeqCst, SeqCst).is_ok() {
      self.wake(OFF_NOT_FULL, false);
    }
  }
}

/// Backs off between retries: a pause instruction at first, then yields to other threads.
fn spin(round: u32) {
  if round < SPINS / 2 {
    std::hint::spin_loop();
  } else {
    std::thread::yield_now();
  }
}

static PID: AtomicU32 = AtomicU32::new(0);

extern "C" fn forget_pid() {
  PID.store(0, Relaxed);
}

/// This process's pid, cached (a fork forgets it): the claim on the fast path costs no
/// system call.
fn my_pid() -> u32 {
  static AT_FORK: Once = Once::new();
  let pid = PID.load(Relaxed);
  if pid != 0 {
    return pid;
  }
  AT_FORK.call_once(|| {
    // SAFETY: registers a child handler that only stores to an atomic (async-signal-safe).
    unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
  });
  let pid = std::process::id() & PID_MASK;
  PID.store(pid, Relaxed);
  pid
}

/// Whether `pid` is a running process: `kill(pid, 0)` finds it (or is refused it, which means
/// it exists), and on Linux it is not a zombie waiting to be reaped.
fn process_alive(pid: u32) -> bool {
  let Ok(raw) = i32::try_from(pid) else {
    return false;
  };
  if raw <= 0 {
    return false;
  }
  if pid == my_pid() {
    return true;
  }
  // Any answer but "no such process" (success, or EPERM) means it exists.
  if let Err(nix::errno::Errno::ESRCH) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
    return false;
  }
  #[cfg(target_os = "linux")]
  if let Ok(stat) = std::fs::read_to_string(format!("/proc/{raw}/stat")) {
    // The state follows the last ')' (the command name may contain anything).
    if let Some(state) = stat
      .rsplit_once(')')
      .and_then(|(_, rest)| rest.trim_start().chars().next())
    {
      return !matches!(state, 'Z' | 'X' | 'x');
    }
  }
  true
}
