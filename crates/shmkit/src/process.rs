//! Processes that share a region: `fork(2)` a child that runs a closure and `_exit(2)`s,
//! then wait for exactly that child with `waitpid(2)`. Regions mapped `MAP_SHARED` before
//! the fork (anonymous, `/dev/zero`, named, memfd) are shared with the child.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

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
#[derive(Debug)]
pub struct Child {
  pid: Pid,
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
/// child, and any lock another thread held (the allocator's, stdio's) stays held forever.
/// If other threads may exist, `body` must only call async-signal-safe functions (no
/// allocation, no `println!`). Plain memory writes into a region and `sem_post` are fine.
///
/// # Errors
/// `fork` failures (`EAGAIN`, `ENOMEM`).
pub unsafe fn fork<F: FnOnce() -> i32>(body: F) -> Result<Child> {
  // SAFETY: the caller upholds fork's contract (see # Safety); the child branch below
  // never returns into the caller's frames, it ends in _exit.
  match unsafe { nix::unistd::fork() }.syscall("fork")? {
    ForkResult::Parent { child } => Ok(Child {
      pid: child,
      status: None,
    }),
    ForkResult::Child => {
      let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
      // SAFETY: _exit ends the child at once, without running the parent's atexit
      // handlers or flushing stdio buffers the parent also owns.
      unsafe { nix::libc::_exit(code) }
    }
  }
}

impl Child {
  /// Adopts an already-forked child by pid (for code that forks by other means).
  #[must_use]
  pub fn from_pid(pid: i32) -> Self {
    Self {
      pid: Pid::from_raw(pid),
      status: None,
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
  /// `waitpid` failures (`ECHILD` if someone else reaped it).
  pub fn wait(&mut self) -> Result<ExitStatus> {
    if let Some(status) = self.status {
      return Ok(status);
    }
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
        Some(fd) => fd.wait_readable(left),
        // No pidfd (old kernel, macOS): poll with a growing pause.
        None => {
          std::thread::sleep(pause.min(left));
          pause = (pause * 2).min(Duration::from_millis(10));
        }
      }
    }
  }

  /// Sends `signal` to the child (if it has not been reaped yet).
  ///
  /// # Errors
  /// `kill` failures.
  pub fn kill(&self, signal: Signal) -> Result<()> {
    if self.status.is_some() {
      return Ok(()); // reaped: the pid may already belong to someone else
    }
    kill(self.pid, signal).syscall("kill")
  }
}

#[cfg(target_os = "linux")]
mod pidfd {
  use std::os::fd::{AsFd, FromRawFd, OwnedFd};
  use std::time::Duration;

  use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
  use nix::unistd::Pid;

  /// A `pidfd_open(2)` descriptor: readable once the process has exited.
  pub(super) struct PidFd(OwnedFd);

  impl PidFd {
    pub(super) fn open(pid: Pid) -> Option<Self> {
      // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
      let ret = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid.as_raw(), 0) };
      let raw = i32::try_from(ret).ok().filter(|fd| *fd >= 0)?;
      // SAFETY: the kernel just returned this descriptor and nothing else owns it.
      Some(Self(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    pub(super) fn wait_readable(&self, timeout: Duration) {
      let ms = u16::try_from(timeout.as_millis().clamp(1, 10_000)).unwrap_or(10_000);
      let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
      // EINTR and timeouts both just return to the caller's loop.
      let _ = poll(&mut fds, PollTimeout::from(ms));
    }
  }
}

#[cfg(not(target_os = "linux"))]
mod pidfd {
  use nix::unistd::Pid;
  use std::time::Duration;

  pub(super) enum PidFd {}

  impl PidFd {
    pub(super) fn open(_pid: Pid) -> Option<Self> {
      None
    }
    pub(super) fn wait_readable(&self, _timeout: Duration) {
      match *self {}
    }
  }
}
