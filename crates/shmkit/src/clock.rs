//! Deadlines for the POSIX timed waits, which take an absolute `CLOCK_REALTIME` time.

use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::time::{clock_gettime, ClockId};

use crate::error::{Result, SyscallExt};

/// Now plus `timeout` on `CLOCK_REALTIME`, as a `timespec` (saturating far in the future).
pub(crate) fn realtime_deadline(timeout: Duration) -> Result<libc::timespec> {
  let now = clock_gettime(ClockId::CLOCK_REALTIME).syscall("clock_gettime")?;
  let deadline = now + TimeSpec::from_duration(timeout.min(Duration::from_secs(100 * 365 * 86_400)));
  Ok(*deadline.as_ref())
}
