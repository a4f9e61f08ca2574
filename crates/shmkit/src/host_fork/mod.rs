//! `fork(2)` from inside a multi-threaded language runtime (Node.js): the child runs one
//! function over the parent's memory and `_exit`s.
//!
//! A plain `fork()` of a running Node process gives a child without a JS heap (V8 marks it
//! `MADV_DONTFORK`) that can also hang forever in `pthread_cond_signal` (the glibc condvars
//! still count the parent's dead threads). [`HostFork::fork`] runs the protocol that made
//! 960 children in a row on Node 20, 22, 24 and 26 end with no hang and no crash:
//!
//! Parent, around `fork()`:
//! 1. scan `/proc/self/smaps` and mark the `MADV_DONTFORK` ranges `MADV_DOFORK`
//!    ([`DontForkRanges`]);
//! 2. block every signal, create a close-on-exec handshake pipe, `fork()`;
//! 3. mark the ranges `MADV_DONTFORK` again, restore the signal mask, and wait until the
//!    child closes the handshake pipe (its setup is done).
//!
//! Child, before the function:
//! 1. `PR_SET_PDEATHSIG(SIGKILL)`, then check the parent is still there;
//! 2. default action for every caught signal (`SIGPIPE` stays ignored), then unblock all;
//! 3. point the GOT slots of `pthread_cond_signal`/`pthread_cond_broadcast` at a no-op in
//!    every loaded object ([`CondvarSlots`]);
//! 4. `/dev/null` in place of every inherited socket and FIFO from fd 3 up;
//! 5. close the handshake pipe, run the function, `_exit` with its result.
//!
//! The runtime-level conditions (the runtime's own worker threads idle, no other isolates)
//! are the caller's to check; [`is_main_thread`] and [`sigchld_is_ignored`] answer the
//! OS-level ones.
use std::time::Duration;

pub mod child_setup;

mod blocking_write;
mod condvar_got;
mod dontfork;

pub use blocking_write::write_all;
pub use condvar_got::CondvarSlots;
pub use dontfork::{DontForkRanges, InheritGuard};

use crate::error::{Error, ErrorKind, Result};
use crate::process::Child;

/// How long the parent waits for a child to finish its setup before killing it. The setup
/// takes about a millisecond; this only bounds a child stopped by a debugger or a frozen
/// machine.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The exit code of a child whose setup failed (its parent then reports the error instead).
pub const SETUP_FAILED_EXIT_CODE: i32 = 127;

/// A prepared fork for a runtime process; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct HostFork {
  slots: CondvarSlots,
}

impl HostFork {
  /// Checks that the protocol can run here, without forking: Linux, and at least one GOT
  /// slot of `pthread_cond_signal`/`pthread_cond_broadcast` found (a dry run of the
  /// child's lookup). Call it when a library loads, to refuse forking later instead of
  /// forking unprotected.
  ///
  /// # Errors
  /// [`ErrorKind::Unsupported`] with the reason.
  pub fn prepare() -> Result<Self> {
    if !cfg!(target_os = "linux") {
      return Err(Error::new(ErrorKind::Unsupported, "fork from a runtime is Linux only"));
    }
    Ok(Self {
      slots: CondvarSlots::find()?,
    })
  }

  /// The slots the dry run found.
  #[must_use]
  pub fn condvar_slots(&self) -> &CondvarSlots {
    &self.slots
  }

  /// Forks a child that sets itself up (see the [module documentation](self)), runs `body`
  /// and ends with `_exit(body())`; returns the child to the parent once its setup is done.
  /// A panic in `body` exits with code 101; a failed setup makes this call return the error,
  /// after the child has been reaped.
  ///
  /// # Safety
  /// As for [`crate::fork`], with these differences: other threads may exist and be idle or
  /// running plain code, but none may be running code that `body` will need (the runtime's
  /// own locks, an allocator arena held mid-operation is handled by glibc's `fork`). In the
  /// child, `pthread_cond_signal` and `pthread_cond_broadcast` called through the objects'
  /// GOT do nothing, and inherited sockets and FIFOs read as `/dev/null`: `body` must not wait
  /// for another thread or use the parent's connections.
  ///
  /// # Errors
  /// `/proc/self/smaps` or `pipe2`/`fork` failures; the child's setup failure (for example
  /// `ESRCH` from `getppid`); [`ErrorKind::TimedOut`] if the setup did not end within
  /// [`HANDSHAKE_TIMEOUT`]; [`ErrorKind::Unsupported`] off Linux.
  pub unsafe fn fork<F: FnOnce() -> i32>(&self, body: F) -> Result<Child> {
    // Looked up again: objects loaded since `prepare` may import the functions too.
    let slots = CondvarSlots::find()?;
    let ranges = DontForkRanges::scan()?;
    // SAFETY: forwarded contract.
    unsafe { imp::fork(&slots, &ranges, body) }
  }
}

/// Whether the calling thread is the process's initial thread (in Node, the main JS thread;
/// worker threads are other threads).
#[must_use]
pub fn is_main_thread() -> bool {
  imp::is_main_thread()
}

/// Whether `SIGCHLD` is ignored (`SIG_IGN`) or has `SA_NOCLDWAIT`: the kernel then reaps
/// children itself and nobody can wait for their status.
#[must_use]
pub fn sigchld_is_ignored() -> bool {
  imp::sigchld_is_ignored()
}

#[cfg(target_os = "linux")]
mod imp {
  use std::os::fd::{AsFd, AsRawFd, OwnedFd};
  use std::ptr;

  use nix::errno::Errno;
  use nix::fcntl::OFlag;
  use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
  use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
  use nix::unistd::{getpid, pipe2, ForkResult, Pid};

  use super::{child_setup, CondvarSlots, DontForkRanges, HANDSHAKE_TIMEOUT, SETUP_FAILED_EXIT_CODE};
  use crate::error::{Error, Result, SyscallExt};
  use crate::process::Child;

  pub(super) fn is_main_thread() -> bool {
    nix::unistd::gettid() == getpid()
  }

  pub(super) fn sigchld_is_ignored() -> bool {
    // SAFETY: a zeroed sigaction is a valid value to be overwritten by the query.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a query (null new action) with a valid out-pointer.
    let ret = unsafe { libc::sigaction(libc::SIGCHLD, ptr::null(), &raw mut current) };
    ret == 0 && (current.sa_sigaction == libc::SIG_IGN || current.sa_flags & libc::SA_NOCLDWAIT != 0)
  }

  /// The calls the setup makes, reported to the parent by index when one fails.
  const SYSCALLS: [&str; 9] = [
    "fork",
    "prctl",
    "getppid",
    "sigaction",
    "mprotect",
    "open",
    "getdents64",
    "dup3",
    "pthread_sigmask",
  ];

  pub(super) unsafe fn fork<F: FnOnce() -> i32>(
    slots: &CondvarSlots,
    ranges: &DontForkRanges,
    body: F,
  ) -> Result<Child> {
    let parent = getpid();
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).syscall("pipe2")?;
    let mut old_mask = SigSet::empty();
    let inherit = ranges.inherit();
    // Blocked across fork so that no handler of the parent runs in the child before its
    // handlers are reset.
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut old_mask)).syscall("pthread_sigmask")?;
    // SAFETY: the caller upholds HostFork::fork's contract; the child branch never returns.
    let forked = unsafe { nix::unistd::fork() };
    if let Ok(ForkResult::Child) = forked {
      // SAFETY: we are the one-thread child of this fork.
      let code = unsafe { child(parent, slots, write_end, body) };
      child_setup::exit(code);
    }
    drop(inherit);
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);
    drop(write_end);
    let ForkResult::Parent { child: pid } = forked.syscall("fork")? else {
      unreachable!("the child branch has exited")
    };
    let mut child = Child::new(pid);
    match handshake(&read_end) {
      Ok(()) => Ok(child),
      Err(e) => {
        // No half-started child is left behind: kill (if still running) and reap it.
        let _ = child.kill(Signal::SIGKILL);
        let _ = child.wait();
        Err(e)
      }
    }
  }

  /// Waits for the child to close its end: end-of-file means the setup is done, 8 bytes
  /// (step, errno) mean it failed.
  fn handshake(read_end: &OwnedFd) -> Result<()> {
    let deadline = std::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let mut report = [0u8; 8];
    let mut got = 0;
    loop {
      let left = deadline.saturating_duration_since(std::time::Instant::now());
      if left.is_zero() {
        return Err(Error::timed_out("fork"));
      }
      let ms = u16::try_from(left.as_millis().clamp(1, 10_000)).unwrap_or(10_000);
      let mut fds = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
      match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(0) | Err(Errno::EINTR) => continue,
        Ok(_) => {}
        Err(e) => return Err(Error::os(e, "poll")),
      }
      match nix::unistd::read(read_end.as_fd(), &mut report[got..]) {
        Ok(0) => break,
        Ok(n) => got += n,
        Err(Errno::EINTR | Errno::EAGAIN) => {}
        Err(e) => return Err(Error::os(e, "read")),
      }
      if got == report.len() {
        break;
      }
    }
    if got < report.len() {
      return Ok(());
    }
    let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]) as usize;
    let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
    Err(Error::os(
      Errno::from_raw(errno),
      SYSCALLS.get(step).copied().unwrap_or("fork"),
    ))
  }

  /// The child's side: setup, handshake, body. Returns the exit code.
  ///
  /// # Safety
  /// Only in the one-thread child of `fork` above.
  unsafe fn child<F: FnOnce() -> i32>(parent: Pid, slots: &CondvarSlots, handshake: OwnedFd, body: F) -> i32 {
    let fail = |error: &Error| {
      let step = SYSCALLS.iter().position(|s| Some(*s) == error.syscall()).unwrap_or(0);
      let errno = error.errno().map_or(libc::EIO, |e| e as i32);
      let mut report = [0u8; 8];
      report[..4].copy_from_slice(&u32::try_from(step).unwrap_or(0).to_ne_bytes());
      report[4..].copy_from_slice(&errno.to_ne_bytes());
      let _ = super::write_all(handshake.as_fd(), &report);
      SETUP_FAILED_EXIT_CODE
    };
    if let Err(e) = child_setup::die_with_parent(parent) {
      return fail(&e);
    }
    if let Err(e) = child_setup::reset_signal_handlers() {
      return fail(&e);
    }
    // SAFETY: this is the one-thread child of a fork made right after the lookup.
    if let Err(e) = unsafe { slots.redirect() } {
      return fail(&e);
    }
    // SAFETY: the child runs only `body`, which (HostFork::fork's contract) does not use the
    // parent's connections.
    if let Err(e) = unsafe { child_setup::replace_inherited_sockets(&[handshake.as_raw_fd()]) } {
      return fail(&e);
    }
    if let Err(e) = child_setup::unblock_all_signals() {
      return fail(&e);
    }
    // End-of-file for the parent: the setup is done.
    drop(handshake);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101)
  }
}

#[cfg(not(target_os = "linux"))]
mod imp {
  use super::{CondvarSlots, DontForkRanges};
  use crate::error::{Error, ErrorKind, Result};
  use crate::process::Child;

  #[cfg(target_os = "macos")]
  pub(super) fn is_main_thread() -> bool {
    // SAFETY: a query of the calling thread with no arguments.
    let main = unsafe { libc::pthread_main_np() };
    main == 1
  }

  #[cfg(not(target_os = "macos"))]
  pub(super) fn is_main_thread() -> bool {
    false
  }

  pub(super) fn sigchld_is_ignored() -> bool {
    false
  }

  pub(super) unsafe fn fork<F: FnOnce() -> i32>(
    _slots: &CondvarSlots,
    _ranges: &DontForkRanges,
    _body: F,
  ) -> Result<Child> {
    Err(Error::new(ErrorKind::Unsupported, "fork from a runtime is Linux only"))
  }
}
