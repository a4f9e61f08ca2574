//! Deadlines for the POSIX timed waits (`sem_timedwait`, `pthread_mutex_timedlock`), which
//! take an absolute `CLOCK_REALTIME` time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The wall-clock time `left` from now, as a `timespec`; `None` when it does not fit one (so
/// far in the future that it means "no deadline").
pub(crate) fn realtime_after(left: Duration) -> Option<libc::timespec> {
  let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
  let at = now.checked_add(left)?;
  Some(libc::timespec {
    tv_sec: libc::time_t::try_from(at.as_secs()).ok()?,
    tv_nsec: libc::c_long::from(at.subsec_nanos()),
  })
}
