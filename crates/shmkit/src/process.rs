//! Processes that share a region: `fork(2)` a child that runs a closure and `_exit(2)`s,
//! then wait for exactly that child with `waitpid(2)`. Regions mapped `MAP_SHARED` before
//! the fork (anonymous, `/dev/zero`, named, memfd) are shared with the child.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getpid, ForkResult, Pid};

use crate::error::{Error, Result, SyscallExt};

/// How a child ended: exactly one of `code` and `signal` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
  code: Option<i32>,
  signal: Option<Signal>,
}

impl ExitStatus {
  /// The exit code, if the child exited (returned from its closure or called `_exit`).
  #[must_use]
  pub fn code(&self) -> Option<i32> {
    self.code
  }

  /// The signal that killed the child, if one did.
  #[must_use]
  pub fn signal(&self) -> Option<Signal> {
    self.signal
  }

  /// Whether the child exited with code 0.
  #[must_use]
  pub fn success(&self) -> bool {
    self.code == Some(0)
  }

  fn from_wait(status: WaitStatus) -> Option<Self> {
    match status {
      WaitStatus::Exited(_, code) => Some(Self {
        code: Some(code),
        signal: None,
      }),
      WaitStatus::Signaled(_, signal, _) => Some(Self {
        code: None,
        signal: Some(signal),
      }),
      _ => None,
    }
  }
}

/// A child made by [`fork`]. Wait for it: an unwaited child stays a zombie until this
/// process exits.
///
/// Only the process that made the child may wait for it or signal it: in another process
/// (a child that inherited this value) the calls fail with `ECHILD`/`EPERM` instead of
/// touching an unrelated process that happens to have the same pid.
#[derive(Debug)]
pub struct Child {
  pid: Pid,
  owner: Pid,
  status: Option<ExitStatus>,
}

/// Forks a child that runs `body` and ends with `_exit(body())`; returns the child to the
/// parent. A panic in `body` exits with code 101. The child never returns from this call,
/// never runs destructors or `atexit` handlers, and never flushes stdio buffers inherited
/// from the parent.
///
/// ```
/// use shmkit::{fork, Region};
/// let region = Region::anonymous(4096).unwrap();
/// // SAFETY: this doctest is single-threaded, so the child may do anything.
/// let mut child = unsafe { fork(|| { region.write_at(0, &[42]).unwrap(); 0 }) }.unwrap();
/// assert!(child.wait().unwrap().success());
/// let mut byte = [0u8];
/// region.read_at(0, &mut byte).unwrap();
/// assert_eq!(byte[0], 42);
/// ```
///
/// # Safety
/// This is `fork(2)`: in a multi-threaded process only the calling thread exists in the
/// child, and any lock another thread held (the allocator's, stdio's, a `Mutex` in your
/// data) stays held forever. If other threads may exist, `body` must only call
/// async-signal-safe functions (no allocation, no `println!`, no locks). Plain memory writes
/// into a region and `sem_post` are fine.
///
/// The child shares every descriptor and `MAP_SHARED` mapping with the parent, and gets a
/// copy-on-write copy of everything else; it must not rely on resources that only make sense
/// once (a buffered writer flushed twice, a temporary file deleted by a destructor): no
/// destructor of the caller's frames runs in the child, because it never returns from this
/// call. Memory marked `MADV_DONTFORK` is absent in the child (the `host-fork` feature's
/// `host_fork::DontForkRanges` shows it to a child).
///
/// # Errors
/// `fork` failures (`EAGAIN`, `ENOMEM`).
pub unsafe fn fork<F: FnOnce() -> i32>(body: F) -> Result<Child> {
  // SAFETY: the caller upholds fork's contract (see # Safety); the child branch below
  // never returns into the caller's frames, it ends in _exit.
  match unsafe { nix::unistd::fork() }.syscall("fork")? {
    ForkResult::Parent { child } => Ok(Child::new(child)),
    ForkResult::Child => {
      let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
      // SAFETY: _exit ends the child at once, without running the parent's atexit
      // handlers or flushing stdio buffers the parent also owns.
      unsafe { nix::libc::_exit(code) }
    }
  }
}

impl Child {
  pub(crate) fn new(pid: Pid) -> Self {
    Self {
      pid,
      owner: getpid(),
      status: None,
    }
  }

  /// Adopts an already-forked child of this process by pid (for code that forks by other
  /// means).
  #[must_use]
  pub fn from_pid(pid: i32) -> Self {
    Self::new(Pid::from_raw(pid))
  }

  fn check_owner(&self, errno: Errno, syscall: &'static str) -> Result<()> {
    if getpid() == self.owner {
      Ok(())
    } else {
      Err(Error::os(errno, syscall))
    }
  }

  /// The child's process id.
  #[must_use]
  pub fn pid(&self) -> i32 {
    self.pid.as_raw()
  }

  /// The status, if the child has already been reaped by one of the waits.
  #[must_use]
  pub fn status(&self) -> Option<ExitStatus> {
    self.status
  }

  /// Blocks until the child ends, and reaps it. `EINTR` is retried. Waits for this pid only,
  /// so other children (Node's `child_process` ones included) are left to their owners.
  ///
  /// # Errors
  /// `waitpid` failures (`ECHILD` if someone else reaped it, or if called in another
  /// process than the child's parent).
  pub fn wait(&mut self) -> Result<ExitStatus> {
    if let Some(status) = self.status {
      return Ok(status);
    }
    self.check_owner(Errno::ECHILD, "waitpid")?;
    loop {
      match waitpid(self.pid, None) {
        Err(Errno::EINTR) => {}
        Err(e) => return Err(Error::os(e, "waitpid")),
        Ok(status) => {
          if let Some(status) = ExitStatus::from_wait(status) {
            self.status = Some(status);
            return Ok(status);
          }
        }
      }
    }
  }

  /// Reaps the child if it has ended, without blocking.
  ///
  /// # Errors
  /// `waitpid` failures.
  pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
    if let Some(status) = self.status {
      return Ok(Some(status));
    }
    self.check_owner(Errno::ECHILD, "waitpid")?;
    loop {
      match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
        Err(Errno::EINTR) => {}
        Err(e) => return Err(Error::os(e, "waitpid")),
        Ok(status) => {
          self.status = ExitStatus::from_wait(status);
          return Ok(self.status);
        }
      }
    }
  }

  /// Waits at most `timeout` for the child to end. On timeout returns
  /// [`crate::ErrorKind::TimedOut`] and leaves the child running (kill it with [`Child::kill`]).
  ///
  /// # Errors
  /// [`crate::ErrorKind::TimedOut`]; `waitpid` failures.
  pub fn wait_timeout(&mut self, timeout: Duration) -> Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let watcher = pidfd::PidFd::open(self.pid);
    let mut pause = Duration::from_micros(50);
    loop {
      if let Some(status) = self.try_wait()? {
        return Ok(status);
      }
      let now = Instant::now();
      if now >= deadline {
        return Err(Error::timed_out("waitpid"));
      }
      let left = deadline - now;
      match &watcher {
        // Sleeps in the kernel until the child exits or time is up.
        Some(fd) => {
          fd.wait_readable(Some(left));
        }
        // No pidfd (old kernel, macOS): poll with a growing pause.
        None => {
          std::thread::sleep(pause.min(left));
          pause = (pause * 2).min(Duration::from_millis(10));
        }
      }
    }
  }

  /// Sends `signal` to the child, unless it has been reaped already (the pid may belong to
  /// another process by then). Returns whether the signal was sent.
  ///
  /// # Errors
  /// `kill` failures; `EPERM` when called in another process than the child's parent.
  pub fn kill(&self, signal: Signal) -> Result<bool> {
    if self.status.is_some() {
      return Ok(false);
    }
    self.check_owner(Errno::EPERM, "kill")?;
    kill(self.pid, signal).syscall("kill")?;
    Ok(true)
  }

  /// Something another thread can block on until this child ends, without reaping it (so the
  /// status stays for [`Child::wait`] or [`Child::try_wait`] on the owning side).
  #[must_use]
  pub fn exit_waiter(&self) -> ExitWaiter {
    ExitWaiter {
      pid: self.pid,
      ended: self.status.is_some(),
      watcher: if self.status.is_some() {
        None
      } else {
        pidfd::PidFd::open(self.pid)
      },
    }
  }
}

/// Blocks a thread until a child has ended, without reaping it. Made by
/// [`Child::exit_waiter`]; `Send`, so it can move to a waiter thread.
///
/// It watches a pidfd (`pidfd_open(2)`, Linux 5.3+), which cannot be confused by pid reuse,
/// and falls back to `waitid(WEXITED | WNOWAIT)` without one.
#[derive(Debug)]
pub struct ExitWaiter {
  pid: Pid,
  ended: bool,
  watcher: Option<pidfd::PidFd>,
}

impl ExitWaiter {
  /// Returns once the child has ended (exited or was killed), whether or not it has been
  /// reaped meanwhile.
  ///
  /// # Errors
  /// `waitid` failures other than `ECHILD` (which means it was reaped already);
  /// [`crate::ErrorKind::Unsupported`] on systems with neither pidfd nor `waitid`.
  pub fn wait(&self) -> Result<()> {
    if self.ended {
      return Ok(());
    }
    if let Some(watcher) = &self.watcher {
      while !watcher.wait_readable(None) {}
      return Ok(());
    }
    pidfd::wait_exited(self.pid)
  }
}

#[cfg(target_os = "linux")]
mod pidfd {
  use std::os::fd::{AsFd, FromRawFd, OwnedFd};
  use std::time::Duration;

  use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
  use nix::unistd::Pid;

  /// A `pidfd_open(2)` descriptor: readable once the process has exited.
  #[derive(Debug)]
  pub(super) struct PidFd(OwnedFd);

  impl PidFd {
    pub(super) fn open(pid: Pid) -> Option<Self> {
      // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
      let ret = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid.as_raw(), 0) };
      let raw = i32::try_from(ret).ok().filter(|fd| *fd >= 0)?;
      // SAFETY: the kernel just returned this descriptor and nothing else owns it.
      Some(Self(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Waits until the process has ended or `timeout` (at most 10 s per call) has passed;
    /// returns whether it has ended. `None` waits without limit.
    pub(super) fn wait_readable(&self, timeout: Option<Duration>) -> bool {
      let timeout = match timeout {
        Some(t) => PollTimeout::from(u16::try_from(t.as_millis().clamp(1, 10_000)).unwrap_or(10_000)),
        None => PollTimeout::NONE,
      };
      let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
      // EINTR and timeouts both just return to the caller's loop.
      matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
    }
  }

  /// Blocks until `pid` has ended, leaving it unreaped.
  pub(super) fn wait_exited(pid: Pid) -> crate::Result<()> {
    use nix::errno::Errno;
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    loop {
      match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
        Ok(_) | Err(Errno::ECHILD) => return Ok(()),
        Err(Errno::EINTR) => {}
        Err(e) => return Err(crate::Error::os(e, "waitid")),
      }
    }
  }
}

#[cfg(not(target_os = "linux"))]
mod pidfd {
  use nix::unistd::Pid;
  use std::time::Duration;

  #[derive(Debug)]
  pub(super) enum PidFd {}

  impl PidFd {
    pub(super) fn open(_pid: Pid) -> Option<Self> {
      None
    }
    pub(super) fn wait_readable(&self, _timeout: Option<Duration>) -> bool {
      match *self {}
    }
  }

  pub(super) fn wait_exited(_pid: Pid) -> crate::Result<()> {
    Err(crate::Error::new(
      crate::ErrorKind::Unsupported,
      "waiting for a child without reaping it needs Linux",
    ))
  }
}
