//! Asynchronous futex waits through `io_uring` (Linux ≥ 6.7), for an event loop.
//!
//! A [`FutexRing`] arms `IORING_OP_FUTEX_WAIT` requests (futex2, 32-bit, shared: no private
//! flag, so wakes from other processes count), each with an absolute `CLOCK_MONOTONIC`
//! timer beside it, and signals its eventfd when completions are ready: an event loop
//! watches that one descriptor and calls [`FutexRing::reap`] when it is readable. A ring
//! belongs to the thread that made it (it is neither `Send` nor `Sync`).
//!
//! ```no_run
//! # fn main() -> shmkit::Result<()> {
//! use std::sync::atomic::AtomicU32;
//! let word = AtomicU32::new(0);
//! let ring = shmkit::futex_ring::FutexRing::new()?;
//! ring.arm(&word, 0, 7, None)?; // wait 7: while `word` holds 0
//! // ... when ring.eventfd() is readable:
//! for (id, outcome) in ring.reap() {
//!   println!("wait {id}: {outcome:?}");
//! }
//! # Ok(())
//! # }
//! ```
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::futex::WaitOutcome;
use crate::Errno;

const SETUP_CQSIZE: u32 = 1 << 3;
const SETUP_SINGLE_ISSUER: u32 = 1 << 12;
const SETUP_DEFER_TASKRUN: u32 = 1 << 13;
const FEAT_SINGLE_MMAP: u32 = 1;
const ENTER_GETEVENTS: u32 = 1;
const REGISTER_EVENTFD: u32 = 4;
const REGISTER_PROBE: u32 = 8;
const OFF_SQES: i64 = 0x1000_0000;
const OP_TIMEOUT: u8 = 11;
const OP_TIMEOUT_REMOVE: u8 = 12;
const OP_ASYNC_CANCEL: u8 = 14;
const OP_FUTEX_WAIT: u8 = 51;
const TIMEOUT_ABS: u32 = 1;
/// The futex2 flags of a wait, in the field of the entry that carries them.
const FUTEX2_FLAGS: i32 = crate::futex::sys::FUTEX2_SIZE_U32.cast_signed();
const SQ_ENTRIES: u32 = 256;
const CQ_ENTRIES: u32 = 4096;
/// The low two bits of `user_data` say which request a completion is for.
const TAG_WAIT: u64 = 0;
const TAG_TIMEOUT: u64 = 1;
const TAG_CANCEL: u64 = 2;

#[repr(C)]
#[derive(Default)]
struct SqringOffsets {
  head: u32,
  tail: u32,
  ring_mask: u32,
  ring_entries: u32,
  flags: u32,
  dropped: u32,
  array: u32,
  resv1: u32,
  user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqringOffsets {
  head: u32,
  tail: u32,
  ring_mask: u32,
  ring_entries: u32,
  overflow: u32,
  cqes: u32,
  flags: u32,
  resv1: u32,
  user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct Params {
  sq_entries: u32,
  cq_entries: u32,
  flags: u32,
  sq_thread_cpu: u32,
  sq_thread_idle: u32,
  features: u32,
  wq_fd: u32,
  resv: [u32; 3],
  sq_off: SqringOffsets,
  cq_off: CqringOffsets,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Sqe {
  opcode: u8,
  flags: u8,
  ioprio: u16,
  fd: i32,
  off: u64,
  addr: u64,
  len: u32,
  op_flags: u32,
  user_data: u64,
  buf_index: u16,
  personality: u16,
  splice_fd_in: i32,
  addr3: u64,
  pad: u64,
}

#[repr(C)]
struct Cqe {
  user_data: u64,
  res: i32,
  flags: u32,
}

#[repr(C)]
struct KernelTimespec {
  sec: i64,
  nsec: i64,
}

/// An `io_uring` for futex waits, owned by the thread that made it.
pub struct FutexRing {
  fd: OwnedFd,
  eventfd: OwnedFd,
  _sq: Mapping,
  sqes: Mapping,
  sq_head: *const AtomicU32,
  sq_tail: *const AtomicU32,
  sq_mask: u32,
  sq_entries: u32,
  cq_head: *const AtomicU32,
  cq_tail: *const AtomicU32,
  cq_mask: u32,
  cqes: *const Cqe,
  /// Entries filled but not yet handed to the kernel.
  unsubmitted: Cell<u32>,
  /// Waits with a deadline: each has a timeout request beside its futex wait, whose
  /// timespec lives here (boxed, so it stays put) until the timeout is done with.
  timed: RefCell<HashMap<u64, Box<KernelTimespec>>>,
  defer: bool,
  pid: u32,
}

struct Mapping {
  ptr: *mut c_void,
  len: usize,
}

impl Drop for Mapping {
  fn drop(&mut self) {
    // SAFETY: a mapping this ring made, unmapped once.
    unsafe { libc::munmap(self.ptr, self.len) };
  }
}

fn setup(flags: u32) -> std::result::Result<(OwnedFd, Params), Errno> {
  let mut params = Params {
    flags: flags | SETUP_CQSIZE,
    cq_entries: CQ_ENTRIES,
    ..Params::default()
  };
  // SAFETY: `params` is a valid io_uring_params the kernel fills in.
  let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, SQ_ENTRIES, &raw mut params) };
  if fd < 0 {
    return Err(Errno::last());
  }
  // SAFETY: a new fd that nothing else owns.
  Ok((
    unsafe { OwnedFd::from_raw_fd(c_int::try_from(fd).map_err(|_| Errno::EBADF)?) },
    params,
  ))
}

fn map(fd: &OwnedFd, len: usize, offset: i64) -> std::result::Result<Mapping, Errno> {
  // SAFETY: maps the ring's shared area; the Mapping unmaps it once.
  let ptr = unsafe {
    libc::mmap(
      ptr::null_mut(),
      len,
      libc::PROT_READ | libc::PROT_WRITE,
      libc::MAP_SHARED | libc::MAP_POPULATE,
      fd.as_raw_fd(),
      offset,
    )
  };
  if ptr == libc::MAP_FAILED {
    return Err(Errno::last());
  }
  Ok(Mapping { ptr, len })
}

fn enter(fd: &OwnedFd, to_submit: u32, flags: u32) -> std::result::Result<u32, Errno> {
  // SAFETY: io_uring_enter on our ring, no signal mask.
  let rc = unsafe {
    libc::syscall(
      libc::SYS_io_uring_enter,
      fd.as_raw_fd(),
      to_submit,
      0,
      flags,
      ptr::null::<c_void>(),
      0,
    )
  };
  if rc < 0 {
    Err(Errno::last())
  } else {
    Ok(u32::try_from(rc).unwrap_or(0))
  }
}

/// Whether the kernel knows `IORING_OP_FUTEX_WAIT`.
fn supports_futex_wait(fd: &OwnedFd) -> bool {
  // struct io_uring_probe: 16 bytes of header, then 8 bytes per op.
  let mut probe = vec![0u64; 2 + 256];
  // SAFETY: a zeroed buffer large enough for 256 ops.
  let rc = unsafe {
    libc::syscall(
      libc::SYS_io_uring_register,
      fd.as_raw_fd(),
      REGISTER_PROBE,
      probe.as_mut_ptr(),
      256,
    )
  };
  if rc < 0 {
    return false;
  }
  let bytes: &[u8] = bytemuck_bytes(&probe);
  let last_op = bytes[0];
  let op = usize::from(OP_FUTEX_WAIT);
  // io_uring_probe_op { u8 op; u8 resv; u16 flags; u32 resv2; }, IO_URING_OP_SUPPORTED = 1.
  last_op >= OP_FUTEX_WAIT && bytes[16 + op * 8 + 2] & 1 == 1
}

fn bytemuck_bytes(words: &[u64]) -> &[u8] {
  // SAFETY: any u64 slice is valid as bytes, with the same lifetime.
  unsafe { std::slice::from_raw_parts(words.as_ptr().cast(), words.len() * 8) }
}

impl FutexRing {
  /// A ring whose futex waits work here: `Err` (`ENOSYS`, `EPERM`, …) when the kernel is
  /// older than 6.7, `io_uring` is disabled (`kernel.io_uring_disabled`, seccomp), or a
  /// probe wait does not answer as it must.
  ///
  /// # Errors
  /// The failing call's errno as an OS error of `io_uring_setup`.
  pub fn new() -> Result<Self> {
    let ring = Self::create().map_err(|e| Error::os(e, "io_uring_setup"))?;
    if !ring.probe_wait() {
      return Err(Error::os(Errno::ENOSYS, "io_uring_enter"));
    }
    Ok(ring)
  }

  /// The eventfd the ring signals when completions may be ready (nonblocking, level:
  /// [`FutexRing::reap`] leaves it signalled while work remains).
  #[must_use]
  pub fn eventfd(&self) -> BorrowedFd<'_> {
    self.eventfd.as_fd()
  }

  fn create() -> std::result::Result<FutexRing, Errno> {
    let (fd, params) = match setup(SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN) {
      Err(Errno::EINVAL) => setup(0)?,
      other => other?,
    };
    if params.features & FEAT_SINGLE_MMAP == 0 {
      return Err(Errno::ENOSYS);
    }
    let sq_len = (params.sq_off.array as usize + params.sq_entries as usize * 4)
      .max(params.cq_off.cqes as usize + params.cq_entries as usize * size_of::<Cqe>());
    let sq = map(&fd, sq_len, 0)?;
    let sqes = map(&fd, params.sq_entries as usize * size_of::<Sqe>(), OFF_SQES)?;
    let base = sq.ptr.cast::<u8>();
    // SAFETY: every offset comes from the kernel and lies inside the ring mapping.
    let at = |off: u32| unsafe { base.add(off as usize) };
    #[expect(clippy::cast_ptr_alignment, reason = "the kernel aligns the ring's fields")]
    let ring = {
      // SAFETY: the kernel's ring-mask fields, read once.
      let sq_mask = unsafe { *at(params.sq_off.ring_mask).cast::<u32>() };
      // SAFETY: as above.
      let cq_mask = unsafe { *at(params.cq_off.ring_mask).cast::<u32>() };
      let array = at(params.sq_off.array).cast::<u32>();
      for i in 0..params.sq_entries {
        // SAFETY: the SQ index array has sq_entries slots; identity map them.
        let slot = unsafe { array.add(i as usize) };
        // SAFETY: as above.
        unsafe { slot.write(i) };
      }
      // SAFETY: a fresh eventfd that nothing else owns.
      let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
      if efd < 0 {
        return Err(Errno::last());
      }
      // SAFETY: as above.
      let eventfd = unsafe { OwnedFd::from_raw_fd(efd) };
      FutexRing {
        sq_head: at(params.sq_off.head).cast(),
        sq_tail: at(params.sq_off.tail).cast(),
        sq_mask,
        sq_entries: params.sq_entries,
        cq_head: at(params.cq_off.head).cast(),
        cq_tail: at(params.cq_off.tail).cast(),
        cq_mask,
        cqes: at(params.cq_off.cqes).cast(),
        unsubmitted: Cell::new(0),
        timed: RefCell::default(),
        defer: params.flags & SETUP_DEFER_TASKRUN != 0,
        pid: std::process::id(),
        eventfd,
        _sq: sq,
        sqes,
        fd,
      }
    };
    if !supports_futex_wait(&ring.fd) {
      return Err(Errno::ENOSYS);
    }
    let efd: c_int = ring.eventfd.as_raw_fd();
    // SAFETY: registers our eventfd with our ring.
    let rc = unsafe {
      libc::syscall(
        libc::SYS_io_uring_register,
        ring.fd.as_raw_fd(),
        REGISTER_EVENTFD,
        &raw const efd,
        1,
      )
    };
    if rc < 0 {
      return Err(Errno::last());
    }
    Ok(ring)
  }

  /// The last probe: a futex wait on a word that does not hold the value must complete at
  /// once with `-EAGAIN` (a seccomp filter or an old kernel answers otherwise).
  fn probe_wait(&self) -> bool {
    let word = AtomicU32::new(1);
    let mut sqe = Sqe {
      opcode: OP_FUTEX_WAIT,
      fd: FUTEX2_FLAGS,
      addr: word.as_ptr() as u64,
      off: 0,
      addr3: u64::from(u32::MAX),
      user_data: u64::MAX,
      ..Sqe::default()
    };
    if self.push(&mut sqe).is_err() || self.submit(ENTER_GETEVENTS).is_err() {
      return false;
    }
    let deadline = Instant::now() + std::time::Duration::from_millis(500);
    let mut answer = None;
    while answer.is_none() && Instant::now() < deadline {
      let _ = enter(&self.fd, 0, ENTER_GETEVENTS);
      self.drain(|user_data, res| {
        if user_data == u64::MAX {
          answer = Some(res);
        }
      });
    }
    let mut count = [0u8; 8];
    // SAFETY: a nonblocking read of our eventfd into an 8-byte buffer.
    unsafe { libc::read(self.eventfd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
    answer == Some(-libc::EAGAIN)
  }

  /// Queues one entry, submitting what is queued first if the ring is full.
  fn push(&self, sqe: &mut Sqe) -> std::result::Result<(), Errno> {
    loop {
      // SAFETY: the kernel's SQ head, read atomically.
      let head = unsafe { &*self.sq_head }.load(Ordering::Acquire);
      // SAFETY: our SQ tail (only this thread writes it).
      let tail = unsafe { &*self.sq_tail }.load(Ordering::Relaxed);
      let local = tail.wrapping_add(self.unsubmitted.get());
      if local.wrapping_sub(head) < self.sq_entries {
        let slot = (local & self.sq_mask) as usize;
        // SAFETY: slot < sq_entries, inside the SQE array, which the kernel does not read
        // until the tail moves past it.
        let entry = unsafe { self.sqes.ptr.cast::<Sqe>().add(slot) };
        // SAFETY: as above.
        unsafe { entry.write(*sqe) };
        self.unsubmitted.set(self.unsubmitted.get() + 1);
        return Ok(());
      }
      self.submit(0)?;
    }
  }

  fn submit(&self, flags: u32) -> std::result::Result<(), Errno> {
    let n = self.unsubmitted.get();
    // SAFETY: our SQ tail; the release store publishes the entries written before it.
    let tail = unsafe { &*self.sq_tail };
    tail.store(tail.load(Ordering::Relaxed).wrapping_add(n), Ordering::Release);
    self.unsubmitted.set(0);
    let mut left = n;
    for _ in 0..64 {
      match enter(&self.fd, left, flags) {
        Ok(done) if done >= left => return Ok(()),
        Ok(done) => left -= done,
        // The completion queue is backed up: take completions in, then go on.
        Err(Errno::EBUSY | Errno::EAGAIN | Errno::EINTR) => {
          let _ = enter(&self.fd, 0, ENTER_GETEVENTS);
        }
        Err(e) => return Err(e),
      }
    }
    Err(Errno::EBUSY)
  }

  /// Arms wait `id` (any number the caller keeps unique among its pending waits, below
  /// 2^62): while `word` holds `expected`, until a wake or `deadline`. Its outcome comes from
  /// [`FutexRing::reap`]: `Woken` (re-check the condition: spurious wake-ups are allowed),
  /// `NotEqual`, `TimedOut`, or an OS error. Keep `word` mapped until then; the kernel only
  /// reads it at submission, and a word unmapped early yields an error or a wait that
  /// never ends, never a fault.
  ///
  /// # Errors
  /// `EEXIST` in a forked child (the ring is the parent's); the submission's errno.
  pub fn arm(&self, word: &AtomicU32, expected: u32, id: u64, deadline: Option<Instant>) -> Result<()> {
    self
      .arm_raw(word, expected, id, deadline)
      .map_err(|e| Error::os(e, "io_uring_enter"))
  }

  fn arm_raw(
    &self,
    word: &AtomicU32,
    expected: u32,
    id: u64,
    deadline: Option<Instant>,
  ) -> std::result::Result<(), Errno> {
    if std::process::id() != self.pid {
      // A forked child: the ring is the parent's.
      return Err(Errno::EEXIST);
    }
    let mut wait = Sqe {
      opcode: OP_FUTEX_WAIT,
      fd: FUTEX2_FLAGS,
      addr: word.as_ptr() as u64,
      off: u64::from(expected),
      addr3: u64::from(u32::MAX),
      user_data: id << 2 | TAG_WAIT,
      ..Sqe::default()
    };
    self.push(&mut wait)?;
    // A timer beside the wait (a linked timeout does not cancel a futex wait): when it
    // fires first, the wait is cancelled. Its timespec stays in `timed` until the timer is
    // done, in case the submission is only completed by a later `io_uring_enter`.
    if let Some(deadline) = deadline {
      let ts = Box::new(monotonic(deadline));
      let mut timeout = Sqe {
        opcode: OP_TIMEOUT,
        fd: -1,
        addr: ptr::from_ref(&*ts) as u64,
        len: 1,
        op_flags: TIMEOUT_ABS,
        user_data: id << 2 | TAG_TIMEOUT,
        ..Sqe::default()
      };
      self.timed.borrow_mut().insert(id, ts);
      self.push(&mut timeout)?;
    }
    self.submit(0)
  }

  /// Withdraws wait `id`: its outcome never comes (a completion already posted for it is
  /// reaped as usual, so callers drop outcomes of waits they cancelled).
  pub fn cancel(&self, id: u64) {
    if std::process::id() != self.pid {
      return;
    }
    self.forget(id, true);
    let _ = self.submit(0);
  }

  /// Queues the requests that end what is left of wait `id`: its futex wait (`wait`) and
  /// its timer. Failures leave a request armed; its completion then finds no pending wait
  /// and is ignored.
  fn forget(&self, id: u64, wait: bool) {
    // Cancels the request of wait `id` tagged `tag` with `opcode`.
    let cancel = |opcode, tag| {
      let mut sqe = Sqe {
        opcode,
        fd: -1,
        addr: id << 2 | tag,
        user_data: id << 2 | TAG_CANCEL,
        ..Sqe::default()
      };
      let _ = self.push(&mut sqe);
    };
    if wait {
      cancel(OP_ASYNC_CANCEL, TAG_WAIT);
    }
    if let Some(ts) = self.timed.borrow_mut().remove(&id) {
      // The kernel read the timespec when it took the timeout request in.
      drop(ts);
      cancel(OP_TIMEOUT_REMOVE, TAG_TIMEOUT);
    }
  }

  /// Takes every posted completion.
  fn drain(&self, mut f: impl FnMut(u64, i32)) {
    // SAFETY: our CQ head (only this thread writes it).
    let head_ref = unsafe { &*self.cq_head };
    let mut head = head_ref.load(Ordering::Relaxed);
    // SAFETY: the kernel's CQ tail, read atomically.
    let tail = unsafe { &*self.cq_tail }.load(Ordering::Acquire);
    while head != tail {
      // SAFETY: head & mask is a slot of the CQE array the kernel has posted.
      let cqe = unsafe { self.cqes.add((head & self.cq_mask) as usize) };
      // SAFETY: as above; the kernel wrote the entry before moving the tail.
      let cqe = unsafe { &*cqe };
      f(cqe.user_data, cqe.res);
      head = head.wrapping_add(1);
    }
    head_ref.store(head, Ordering::Release);
  }

  /// Every completion ready now, as (wait id, outcome).
  ///
  /// The eventfd is read **first**, then deferred task work is run (`GETEVENTS`, which
  /// posts the completions), then the queue drained; again until a round posts nothing
  /// (the kernel runs deferred work in bounded batches, and every request here posts a
  /// completion, so an empty round means none was left). The eventfd is never cleared
  /// without a `GETEVENTS` after it, so work queued later leaves it signalled and the
  /// level-triggered poll of it fires again: no wake is lost between the steps.
  pub fn reap(&self) -> Vec<(u64, Result<WaitOutcome>)> {
    let mut out = Vec::new();
    loop {
      let mut count = [0u8; 8];
      // SAFETY: a nonblocking read of our eventfd into an 8-byte buffer.
      unsafe { libc::read(self.eventfd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
      if self.defer {
        let _ = enter(&self.fd, 0, ENTER_GETEVENTS);
      }
      let mut cqes = Vec::new();
      self.drain(|user_data, res| cqes.push((user_data, res)));
      let again = !cqes.is_empty();
      for (user_data, res) in cqes {
        let id = user_data >> 2;
        let outcome = match (user_data & 3, res) {
          (TAG_WAIT, 0) => Ok(WaitOutcome::Woken),
          (TAG_WAIT, r) if r == -libc::EAGAIN => Ok(WaitOutcome::NotEqual),
          // Cancelled: by its timer (handled there) or by `cancel` (no longer pending).
          (TAG_WAIT, r) if r == -libc::ECANCELED => continue,
          (TAG_WAIT, r) if r == -libc::EINTR => Ok(WaitOutcome::Woken),
          (TAG_WAIT, r) => Err(Error::os(Errno::from_raw(-r), "io_uring_enter")),
          (TAG_TIMEOUT, r) if r == -libc::ETIME => {
            self.timed.borrow_mut().remove(&id);
            self.forget(id, true);
            out.push((id, Ok(WaitOutcome::TimedOut)));
            continue;
          }
          _ => continue,
        };
        self.forget(id, false);
        out.push((id, outcome));
      }
      if !again {
        break;
      }
    }
    if self.unsubmitted.get() > 0 {
      let _ = self.submit(0);
    }
    out
  }
}

/// `deadline` as an absolute `CLOCK_MONOTONIC` time, in the kernel's 64-bit layout.
fn monotonic(deadline: Instant) -> KernelTimespec {
  let ts = crate::futex::sys::monotonic_timespec(deadline);
  KernelTimespec {
    sec: ts.tv_sec,
    nsec: ts.tv_nsec,
  }
}
