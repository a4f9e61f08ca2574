//! Asynchronous futex waits served by a few threads shared by the whole process, for event
//! loops that cannot watch a futex themselves (no `io_uring`, other systems).
//!
//! [`add`] starts a wait on a shared 32-bit word and returns at once; its outcome reaches a
//! [`Deliver`] destination later, from a waiter thread, in a batch with the other waits of
//! that destination settled at the same moment: [`WaitOutcome::Woken`] after a wake on the
//! word or once it no longer holds `expected` (callers re-check their condition: spurious
//! wake-ups are allowed), [`WaitOutcome::TimedOut`] once its deadline has passed. A wait
//! that [`remove`] or [`forget`] took away while still pending is never delivered (one
//! already settled may still be on its way: destinations ignore ids they no longer know).
//!
//! At most [`MAX_THREADS`] threads per process, each watching up to [`SLOTS`] distinct
//! (word, value) pairs with one `futex_waitv` (Linux ≥ 5.16) plus its own control word, with
//! the earliest deadline as the timeout. Waits on the same word and value share a slot;
//! words beyond the threads' capacity (and every word where there is no `futex_waitv`:
//! macOS, older kernels, seccomp filters, user-mode emulators) are looked at every
//! [`POLL`]. A wake settles every wait of this process on that word, and a wake that does
//! not change the word can be missed while the thread is busy: protocols change the word
//! before waking, as all of shmkit's do.
//!
//! ```no_run
//! # fn main() -> shmkit::Result<()> {
//! use std::sync::atomic::AtomicU32;
//! use std::sync::Arc;
//! use shmkit::futex_pool::{self, Deliver, WaitWord};
//! let word: Arc<dyn WaitWord> = Arc::new(AtomicU32::new(0));
//! let dest: Arc<dyn Deliver> = Arc::new(|done: Vec<(u64, shmkit::WaitOutcome)>| {
//!   for (id, outcome) in done {
//!     println!("wait {id}: {outcome:?}");
//!   }
//! });
//! futex_pool::add(word, 0, &dest, 7, None)?; // wait 7: while the word holds 0
//! # Ok(())
//! # }
//! ```
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::futex::{self, WaitOutcome};
use crate::Errno;

/// Distinct (word, value) pairs one thread watches with one `futex_waitv` (its 128 entries
/// less the thread's control word).
pub const SLOTS: usize = futex::WAIT_ANY_MAX - 1;
/// The most waiter threads a process starts.
pub const MAX_THREADS: usize = 4;
/// How often words beyond the threads' capacity are looked at.
pub const POLL: Duration = Duration::from_millis(2);

/// A 32-bit word a wait watches. The value holding it keeps its memory mapped for as long
/// as the pool may look at it (a region, a semaphore, or the word itself).
pub trait WaitWord: Send + Sync + 'static {
  /// The word; the same address every time.
  fn word(&self) -> &AtomicU32;
}

/// A word of this process's own (for example a timer that nothing wakes).
impl WaitWord for AtomicU32 {
  fn word(&self) -> &AtomicU32 {
    self
  }
}

/// Where settled waits go: `(id, outcome)` pairs, called on a waiter thread with no lock of
/// the pool held. Any `Fn(Vec<(u64, WaitOutcome)>)` is one.
pub trait Deliver: Send + Sync + 'static {
  /// Takes a batch of settled waits of this destination.
  fn deliver(&self, done: Vec<(u64, WaitOutcome)>);
}

impl<F: Fn(Vec<(u64, WaitOutcome)>) + Send + Sync + 'static> Deliver for F {
  fn deliver(&self, done: Vec<(u64, WaitOutcome)>) {
    self(done);
  }
}

/// Starts wait `id` of `dest`: while `word` holds `expected`, until `deadline` (`None`: no
/// limit). The outcome reaches `dest` later, never from inside this call.
///
/// # Errors
/// The OS error of starting a waiter thread (`pthread_create`).
pub fn add(
  word: Arc<dyn WaitWord>,
  expected: u32,
  dest: &Arc<dyn Deliver>,
  id: u64,
  deadline: Option<Instant>,
) -> Result<()> {
  let sub = Sub {
    dest: dest.clone(),
    id,
    deadline,
  };
  let mut threads = lock(&THREADS);
  // A thread that already watches this word and value takes one more waiter.
  for thread in threads.iter() {
    let mut entries = lock(&thread.entries);
    if let Some(entry) = entries
      .iter_mut()
      .find(|e| addr(&*e.word) == addr(&*word) && e.expected == expected)
    {
      entry.subs.push(sub);
      drop(entries);
      thread.kick();
      return Ok(());
    }
  }
  let least = threads.iter().min_by_key(|t| lock(&t.entries).len()).cloned();
  let thread = match least {
    Some(t) if lock(&t.entries).len() < SLOTS || threads.len() >= MAX_THREADS => t,
    _ => {
      let thread = Arc::new(Thread {
        control: AtomicU32::new(0),
        entries: Mutex::new(Vec::new()),
      });
      let run = thread.clone();
      std::thread::Builder::new()
        .name("shmkit-waiter".to_owned())
        .stack_size(128 * 1024)
        .spawn(move || watch(&run))
        .map_err(|e| {
          let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN));
          Error::os(errno, "pthread_create")
        })?;
      threads.push(thread.clone());
      thread
    }
  };
  lock(&thread.entries).push(Entry {
    word,
    expected,
    subs: vec![sub],
  });
  thread.kick();
  Ok(())
}

/// Takes wait `id` of `dest` away: if it is still pending, it is never delivered.
pub fn remove(dest: &Arc<dyn Deliver>, id: u64) {
  drop_subs(|s| s.id == id && same(&s.dest, dest));
}

/// Takes every pending wait of `dest` away (the destination is going).
pub fn forget(dest: &Arc<dyn Deliver>) {
  drop_subs(|s| same(&s.dest, dest));
}

fn drop_subs(gone: impl Fn(&Sub) -> bool) {
  for thread in lock(&THREADS).iter() {
    let mut entries = lock(&thread.entries);
    for entry in entries.iter_mut() {
      entry.subs.retain(|s| !gone(s));
    }
    entries.retain(|e| !e.subs.is_empty());
  }
}

/// Whether two destinations are the same object (the vtable part of the pointer is not
/// compared: it may differ between codegen units).
fn same(a: &Arc<dyn Deliver>, b: &Arc<dyn Deliver>) -> bool {
  ptr_of(a) == ptr_of(b)
}

fn ptr_of(dest: &Arc<dyn Deliver>) -> *const () {
  Arc::as_ptr(dest).cast::<()>()
}

fn addr(word: &dyn WaitWord) -> usize {
  word.word().as_ptr() as usize
}

/// Settled waits of one destination.
type Batch = Vec<(u64, WaitOutcome)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
  // Every change under these locks is a single push or removal: a panic cannot leave them
  // half-done, so a poisoned lock is still consistent.
  m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Sub {
  dest: Arc<dyn Deliver>,
  id: u64,
  deadline: Option<Instant>,
}

struct Entry {
  word: Arc<dyn WaitWord>,
  expected: u32,
  subs: Vec<Sub>,
}

struct Thread {
  /// Bumped and woken to make the thread look at its entries again.
  control: AtomicU32,
  entries: Mutex<Vec<Entry>>,
}

impl Thread {
  fn kick(&self) {
    self.control.fetch_add(1, Ordering::Release);
    let _ = futex::wake(&self.control, 1);
  }
}

static THREADS: Mutex<Vec<Arc<Thread>>> = Mutex::new(Vec::new());

/// A waiter thread: sleeps until one of its words is woken or changes, a deadline passes,
/// or its control word says its entries changed; settles what is due; again.
fn watch(thread: &Thread) {
  let mut multi = cfg!(target_os = "linux");
  loop {
    let seen = thread.control.load(Ordering::Acquire);
    let (words, deadline) = {
      let entries = lock(&thread.entries);
      let mut deadline = entries.iter().flat_map(|e| &e.subs).filter_map(|s| s.deadline).min();
      if entries.len() > SLOTS || (!multi && !entries.is_empty()) {
        let poll = Instant::now() + POLL;
        deadline = Some(deadline.map_or(poll, |d| d.min(poll)));
      }
      let words: Vec<(Arc<dyn WaitWord>, u32)> = if multi {
        entries
          .iter()
          .take(SLOTS)
          .map(|e| (e.word.clone(), e.expected))
          .collect()
      } else {
        Vec::new()
      };
      (words, deadline)
    };
    let woken = if words.is_empty() {
      let _ = futex::wait_until(&thread.control, seen, deadline);
      None
    } else {
      // The control word first (woken by `kick`), then the words watched.
      let mut list = Vec::with_capacity(words.len() + 1);
      list.push((&thread.control, seen));
      list.extend(words.iter().map(|(word, expected)| (word.word(), *expected)));
      match futex::wait_any(&list, deadline) {
        Ok(index) => index.and_then(|i| i.checked_sub(1)).map(|i| addr(&*words[i].0)),
        Err(e) if matches!(e.errno(), Some(Errno::ENOSYS | Errno::EPERM)) => {
          multi = false;
          None
        }
        Err(_) => None,
      }
    };
    settle(thread, woken);
  }
}

/// Settles the waits that are due: on a word that was woken or no longer holds its value
/// (`Woken`), or past their deadline (`TimedOut`); then delivers them, one batch per
/// destination, with no lock held.
fn settle(thread: &Thread, woken: Option<usize>) {
  let now = Instant::now();
  let mut out: HashMap<*const (), (Arc<dyn Deliver>, Batch)> = HashMap::new();
  let mut fire = |sub: Sub, outcome| {
    out
      .entry(ptr_of(&sub.dest))
      .or_insert_with(|| (sub.dest.clone(), Vec::new()))
      .1
      .push((sub.id, outcome));
  };
  {
    let mut entries = lock(&thread.entries);
    let mut kept = Vec::with_capacity(entries.len());
    for mut entry in entries.drain(..) {
      let changed = woken == Some(addr(&*entry.word)) || entry.word.word().load(Ordering::Acquire) != entry.expected;
      if changed {
        for sub in entry.subs.drain(..) {
          fire(sub, WaitOutcome::Woken);
        }
        continue;
      }
      let (due, waiting): (Vec<Sub>, Vec<Sub>) =
        entry.subs.drain(..).partition(|s| s.deadline.is_some_and(|d| d <= now));
      for sub in due {
        fire(sub, WaitOutcome::TimedOut);
      }
      if !waiting.is_empty() {
        entry.subs = waiting;
        kept.push(entry);
      }
    }
    *entries = kept;
  }
  for (_, (dest, batch)) in out {
    dest.deliver(batch);
  }
}
