//! Parks every libuv thread-pool thread before `fork()`.
//!
//! A pool thread in the middle of async work (`crypto.pbkdf2`, `dns.lookup`'s `getaddrinfo`,
//! `fs`, `zlib`) may hold a lock of OpenSSL, of glibc's resolver or of the allocator of that
//! library; a child forked at that moment inherits the lock held by a thread that does not
//! exist there, and hangs the first time its synchronous code needs it. Counting requests from
//! JavaScript cannot see work other addons queue, so instead we queue one task per pool thread
//! that waits on a barrier: the pool runs tasks in order, so once every thread is inside one of
//! ours, no earlier work is still running and no pool thread holds anything but our barrier
//! (which the child never touches). The parent forks then, and releases the barrier after.
//! If the threads do not all arrive in time, `fork()` refuses with the reason.

use std::ffi::c_void;
use std::ptr;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::sys;

/// The shared state of one parking: how many tasks arrived, and whether they may leave.
#[derive(Default)]
struct Barrier {
  state: Mutex<(usize, bool)>,
  changed: Condvar,
}

/// One queued task: the barrier and the napi handle to delete when it completes.
struct Task {
  barrier: Arc<Barrier>,
  work: sys::napi_async_work,
}

/// Every pool thread parked in one of our tasks until this is dropped.
pub struct Parked {
  barrier: Arc<Barrier>,
}

impl Drop for Parked {
  fn drop(&mut self) {
    let mut state = self.barrier.state.lock().unwrap_or_else(PoisonError::into_inner);
    state.1 = true;
    self.barrier.changed.notify_all();
  }
}

/// Runs on a pool thread: arrive, then wait for the release.
unsafe extern "C" fn park(_env: sys::napi_env, data: *mut c_void) {
  // SAFETY: `data` is the `Task` leaked in `park_all`, freed only by `done` after this returns.
  let task = unsafe { &*data.cast::<Task>() };
  let mut state = task.barrier.state.lock().unwrap_or_else(PoisonError::into_inner);
  state.0 += 1;
  task.barrier.changed.notify_all();
  while !state.1 {
    state = task.barrier.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
  }
}

/// Runs on the main thread after `park` returned: frees the task.
unsafe extern "C" fn done(env: sys::napi_env, _status: sys::napi_status, data: *mut c_void) {
  // SAFETY: `data` is the leaked `Task`; the pool is done with it.
  let task = unsafe { Box::from_raw(data.cast::<Task>()) };
  // SAFETY: the work handle belongs to this env and completed.
  unsafe { sys::napi_delete_async_work(env, task.work) };
}

/// How many threads libuv's pool has: the `libuv-worker` threads where libuv names them
/// (1.50 and later), else libuv's documented rule (`UV_THREADPOOL_SIZE`, default 4, at least
/// 1 and at most 1024).
fn pool_size() -> usize {
  let named = std::fs::read_dir("/proc/self/task")
    .into_iter()
    .flatten()
    .flatten()
    .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.trim() == "libuv-worker"))
    .count();
  if named > 0 {
    return named;
  }
  std::env::var("UV_THREADPOOL_SIZE")
    .ok()
    .map_or(4, |value| atoi(&value))
    .clamp(1, 1024)
}

/// C's `atoi` as libuv applies it to an unsigned count: a negative number wraps to a huge one.
fn atoi(text: &str) -> usize {
  let text = text.trim_start();
  let (negative, digits) = match text.as_bytes().first() {
    Some(b'-') => (true, &text[1..]),
    Some(b'+') => (false, &text[1..]),
    _ => (false, text),
  };
  let digits: String = digits.chars().take_while(char::is_ascii_digit).collect();
  let value = digits
    .parse::<usize>()
    .unwrap_or(if digits.is_empty() { 0 } else { usize::MAX });
  if negative && value > 0 {
    usize::MAX
  } else {
    value
  }
}

/// Queues one parking task per pool thread and waits until all run, at most `limit`.
/// `Err` is the reason to give the user; the tasks are released either way.
pub fn park_all(env: &Env, limit: Duration) -> std::result::Result<Parked, String> {
  let threads = pool_size();
  let parked = Parked {
    barrier: Arc::new(Barrier::default()),
  };
  let name = env
    .create_string("shmkit.forkBarrier")
    .map_err(|e| format!("the thread pool could not be paused ({e})"))?;
  for _ in 0..threads {
    let task = Box::into_raw(Box::new(Task {
      barrier: parked.barrier.clone(),
      work: ptr::null_mut(),
    }));
    let mut work = ptr::null_mut();
    // SAFETY: valid env, name and callbacks; `task` stays alive until `done` frees it.
    let status = unsafe {
      sys::napi_create_async_work(
        env.raw(),
        ptr::null_mut(),
        name.raw(),
        Some(park),
        Some(done),
        task.cast(),
        &raw mut work,
      )
    };
    if status != sys::Status::napi_ok {
      // SAFETY: never queued, so still ours.
      drop(unsafe { Box::from_raw(task) });
      return Err("the thread pool could not be paused (napi_create_async_work failed)".to_owned());
    }
    // SAFETY: `task` is ours until queued; the pool reads `work` only in `done`.
    unsafe { (*task).work = work };
    // SAFETY: a work handle just created in this env.
    if unsafe { sys::napi_queue_async_work(env.raw(), work) } != sys::Status::napi_ok {
      // SAFETY: not queued, so ours to delete.
      let _ = unsafe { sys::napi_delete_async_work(env.raw(), work) };
      // SAFETY: not queued, so the task is still ours to free.
      drop(unsafe { Box::from_raw(task) });
      return Err("the thread pool could not be paused (napi_queue_async_work failed)".to_owned());
    }
  }
  let deadline = Instant::now() + limit;
  let mut state = parked.barrier.state.lock().unwrap_or_else(PoisonError::into_inner);
  while state.0 < threads {
    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
      let busy = threads - state.0;
      drop(state);
      return Err(format!(
        "{busy} of the {threads} thread-pool threads were still busy after {} ms (async fs, crypto, zlib or \
         dns.lookup work in flight, whose locks a child could inherit held); wait for that work to finish \
         before fork()",
        limit.as_millis()
      ));
    };
    state = parked
      .barrier
      .changed
      .wait_timeout(state, left)
      .unwrap_or_else(PoisonError::into_inner)
      .0;
  }
  drop(state);
  Ok(parked)
}

#[cfg(test)]
mod tests {
  use super::atoi;

  #[test]
  fn atoi_reads_like_c() {
    assert_eq!(atoi("8"), 8);
    assert_eq!(atoi("  12abc"), 12);
    assert_eq!(atoi("abc"), 0);
    assert_eq!(atoi("+3"), 3);
    assert_eq!(atoi("-2"), usize::MAX);
  }
}
