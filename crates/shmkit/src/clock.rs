//! Deadlines for the POSIX timed waits (`sem_timedwait`), which
//! take an absolute `CLOCK_REALTIME` time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall-clock time `left` from now, as a `timespec`; `None` when it does not fit one (so
/// far in the future that it means "no deadline").
pub(crate) fn realtime_after(left: Duration) -> Option<libc::timespec> {
  let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
  let at = now.checked_add(left)?;
  // Built from a zeroed value so the field types come from libc (`time_t` is deprecated
  // on musl while it moves to 64 bits).
  // SAFETY: timespec is plain integers, for which all-zero bytes are valid.
  let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
  ts.tv_sec = at.as_secs().try_into().ok()?;
  ts.tv_nsec = at.subsec_nanos().into();
  Some(ts)
}
