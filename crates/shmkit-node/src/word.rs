//! `wait`, `waitAsync` and `notify`: `Atomics.wait`, `Atomics.waitAsync` and
//! `Atomics.notify` across processes, on `Int32Array` views of shmkit memory.
//!
//! `Atomics.wait` refuses these buffers (they are not `SharedArrayBuffer`s) and only ever
//! sees this process's notifies. These wait on the 32-bit word with the OS's shared wait
//! (`shmkit::futex`), so a notify from any process that maps the same memory (Node, Rust,
//! C) wakes them. How a buffer is recognised: `SharedMemory` type-tags its one
//! `ArrayBuffer` and wraps a handle to its mapping in it ([`mark_buffer`]); a view of any
//! other buffer is refused, a view of a closed one is `ERR_SHM_CLOSED`.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::{sys, ValueType};
use shmkit::WaitOutcome;

use crate::args;
use crate::error::{abort_error, closed, IntoJs};
use crate::memory::Claimed;
use crate::options::{duration, read_options, AbortSignal};
use crate::promise::{abort_reason, settled, AbortHook, Deferred, Pending};
use crate::raw;
use crate::waiter::{self, Word};

/// The word `view[index]`, where `view` must be an `Int32Array` over a `SharedMemory`.
fn word_at(env: &Env, view: Unknown<'_>, index: Unknown<'_>) -> Result<Word> {
  let not_int32 = || args::invalid_type(env, "typedArray", "an instance of Int32Array", view);
  let Some(raw::TypedArray {
    kind,
    length,
    data,
    buffer,
  }) = raw::typed_array(env, view.raw())?
  else {
    return Err(not_int32());
  };
  if kind != sys::TypedarrayType::int32_array {
    return Err(not_int32());
  }
  // The buffer's claim, found by the number `SharedMemory` attached to it; the claim also
  // checks that the view's memory lies inside that buffer.
  let claimed = raw::unwrap_number(env, buffer).map_or(Claimed::Unknown, |key| {
    crate::memory::claimed_region(key, data as usize)
  });
  let (region, start) = match claimed {
    Claimed::Open(region, start) => (region, start),
    Claimed::Closed => return Err(closed(env, "SharedMemory")),
    Claimed::Unknown => {
      return Err(args::invalid_value(
        env,
        "typedArray",
        "must be a view of a SharedMemory's buffer (shmkit waits on memory shared between processes)",
        "an Int32Array over another buffer",
      ))
    }
  };
  #[expect(clippy::cast_precision_loss, reason = "view lengths are far below 2**53")]
  let last = length as f64 - 1.0;
  if length == 0 {
    return Err(args::out_of_range(
      env,
      "index",
      "a valid index of the view",
      "an empty view",
    ));
  }
  let i = args::integer(env, index, "index", 0.0, last)?;
  #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "0..length")]
  let i = i as usize;
  let offset = start + i * 4;
  Word::in_region(region, offset).js(env)
}

/// The expected value: an integer from `-2**31` to `2**32 - 1`, compared as 32 bits.
fn expected_value(env: &Env, value: Unknown<'_>) -> Result<u32> {
  let n = args::integer(env, value, "value", -2_147_483_648.0, 4_294_967_295.0)?;
  #[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "an integer in i32 or u32 range, taken as its 32 bits"
  )]
  Ok(if n < 0.0 { n as i32 as u32 } else { n as u32 })
}

/// A timeout in milliseconds as `Atomics.wait` reads it: `null`, `NaN` or `Infinity` is no
/// limit (`Infinity`), a negative one is 0.
fn atomics_timeout(env: &Env, value: Unknown<'_>, arg: &str) -> Result<f64> {
  if value.get_type()? == ValueType::Null {
    return Ok(f64::INFINITY);
  }
  let ms = args::number(env, value, arg)?;
  Ok(if ms.is_nan() { f64::INFINITY } else { ms.max(0.0) })
}

/// An optional timeout argument or option, read by [`atomics_timeout`] (`None`: no limit).
fn atomics_duration(env: &Env, value: Option<Unknown<'_>>, arg: &str) -> Result<Option<Duration>> {
  match value {
    Some(value) if value.get_type()? != ValueType::Undefined => Ok(duration(Some(atomics_timeout(env, value, arg)?))),
    _ => Ok(None),
  }
}

/// A pending `waitAsync`: its promise and abort listener, taken by whoever settles it.
type State = Rc<RefCell<Option<Pending>>>;

fn outcome_str(outcome: WaitOutcome) -> &'static str {
  outcome.as_str()
}

/// Waits, blocking this thread, while `typedArray[index]` holds `value`, until a `notify` on
/// it from any process or until `timeout` milliseconds pass (absent, `NaN` or `Infinity`:
/// no limit). Returns `'ok'` (woken; re-check the word, as wake-ups may be spurious),
/// `'not-equal'` (the word did not hold `value`) or `'timed-out'`, like `Atomics.wait`.
/// `typedArray` must be an `Int32Array` over a `SharedMemory`'s `buffer`.
///
/// ```ts
/// import { wait, notify, SharedMemory } from 'shmkit'
/// const words = new Int32Array(SharedMemory.open('jobs').buffer)
/// while (Atomics.load(words, 0) === 0) wait(words, 0, 0, 1000)
/// ```
#[napi(
  ts_args_type = "typedArray: Int32Array, index: number, value: number, timeout?: number | undefined | null",
  ts_return_type = "'ok' | 'not-equal' | 'timed-out'"
)]
pub fn wait(
  env: Env,
  typed_array: Unknown,
  index: Unknown,
  value: Unknown,
  timeout: Option<Unknown>,
) -> Result<&'static str> {
  let word = word_at(&env, typed_array, index)?;
  let expected = expected_value(&env, value)?;
  let timeout = atomics_duration(&env, timeout, "timeout")?;
  // The value first, as Atomics.wait: a zero timeout still tells 'not-equal'.
  if word.get().load(Ordering::SeqCst) != expected {
    return Ok(WaitOutcome::NotEqual.as_str());
  }
  shmkit::futex::wait(word.get(), expected, timeout)
    .map(outcome_str)
    .js(&env)
}

/// Options for `waitAsync`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
pub struct WaitAsyncOptions<'e> {
  /// The longest to wait, in milliseconds (fractions allowed; absent, `NaN` or `Infinity`:
  /// no limit). The promise then resolves `'timed-out'`, within a few milliseconds of it.
  pub timeout: Option<f64>,
  /// Aborting it rejects the pending wait with an `AbortError` (`code` `'ABORT_ERR'`,
  /// `cause` the signal's reason).
  pub signal: Option<AbortSignal<'e>>,
}

read_options!(WaitAsyncOptions<'e> { timeout: atomics_timeout, signal: args::signal });

/// Waits without blocking while `typedArray[index]` holds `value`: the promise resolves
/// `'ok'` once a `notify` from any process wakes it (re-check the word), `'not-equal'` at
/// once if the word does not hold `value`, or `'timed-out'`. Like `Atomics.waitAsync`, but
/// the promise is returned directly. `options` is a timeout in milliseconds or
/// `{ timeout, signal }`. A pending wait keeps the process alive and the memory mapped (even
/// if the `SharedMemory` is closed), and takes no thread of the libuv pool: on Linux ≥ 6.7
/// the kernel completes it straight into the event loop (`io_uring`), elsewhere a few shared
/// waiter threads watch the words.
#[napi(
  ts_args_type = "typedArray: Int32Array, index: number, value: number, options?: number | WaitAsyncOptions | undefined | null",
  ts_return_type = "Promise<'ok' | 'not-equal' | 'timed-out'>"
)]
pub fn wait_async<'e>(
  env: &'e Env,
  typed_array: Unknown,
  index: Unknown,
  value: Unknown,
  options: Option<Unknown>,
) -> Result<Object<'e>> {
  let word = word_at(env, typed_array, index)?;
  let expected = expected_value(env, value)?;
  let (timeout, signal) = match options {
    Some(o) if o.get_type()? == ValueType::Object => {
      let mut options = WaitAsyncOptions::from_arg(env, Some(o))?;
      let signal = options.signal.take().map(|AbortSignal(signal)| signal);
      (duration(options.timeout), signal)
    }
    other => (atomics_duration(env, other, "options")?, None),
  };
  if let Some(signal) = &signal {
    if let Some(reason) = abort_reason(signal)? {
      return settled::<()>(env, Err(abort_error(env, Some(reason))));
    }
  }
  if word.get().load(Ordering::SeqCst) != expected {
    return settled(env, Ok(WaitOutcome::NotEqual.as_str()));
  }
  if timeout == Some(Duration::ZERO) {
    return settled(env, Ok(WaitOutcome::TimedOut.as_str()));
  }
  let (deferred, promise) = Deferred::new(env)?;
  // Settled once, by whichever comes first: the wait's end or the signal.
  let state: State = Rc::new(RefCell::new(Some(Pending { deferred, abort: None })));
  let take = |state: &State| state.borrow_mut().take();
  let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
  let on_done = state.clone();
  let id = waiter::arm(
    env,
    word,
    expected,
    deadline,
    Box::new(move |env, outcome| {
      if let Some(pending) = take(&on_done) {
        pending.settle(env, outcome.map(outcome_str).js(env));
      }
    }),
  )?;
  if let Some(signal) = &signal {
    let on_abort = state.clone();
    let hook = AbortHook::listen(env, signal, move |env, reason| {
      if waiter::cancel(env, id) {
        if let Some(pending) = take(&on_abort) {
          pending.settle::<()>(env, Err(abort_error(env, Some(reason))));
        }
      }
    });
    match hook {
      Ok(hook) => {
        if let Some(pending) = state.borrow_mut().as_mut() {
          pending.abort = Some(hook);
        }
      }
      Err(e) => {
        waiter::cancel(env, id);
        return Err(e);
      }
    }
  }
  Ok(promise)
}

/// Wakes up to `count` waiters (default: all) blocked on `typedArray[index]` in `wait` or
/// `waitAsync`, in any process, and C or Rust threads in a futex wait on the same word.
/// Returns how many were woken (on macOS, at most what was asked). Change the word before
/// notifying: waiters re-check it.
#[napi(ts_args_type = "typedArray: Int32Array, index: number, count?: number | undefined | null")]
pub fn notify(env: Env, typed_array: Unknown, index: Unknown, count: Option<Unknown>) -> Result<u32> {
  let word = word_at(&env, typed_array, index)?;
  let count = match count {
    Some(c) if !matches!(c.get_type()?, ValueType::Undefined | ValueType::Null) => {
      let n = args::number(&env, c, "count")?;
      if n.is_nan() || n < 0.0 {
        return Err(args::out_of_range(&env, "count", ">= 0", &format!("{n}")));
      }
      #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "saturates")]
      let n = n.min(f64::from(u32::MAX)) as u32;
      n
    }
    _ => u32::MAX,
  };
  shmkit::futex::wake(word.get(), count).js(&env)
}

/// Which mechanism serves this thread's async waits: `'io_uring'` (Linux ≥ 6.7: completions
/// land in the event loop) or `'threads'` (a few shared waiter threads). For diagnostics
/// and benchmarks.
#[napi(ts_return_type = "'io_uring' | 'threads'")]
pub fn wait_mechanism(env: Env) -> Result<&'static str> {
  waiter::mechanism(&env)
}
