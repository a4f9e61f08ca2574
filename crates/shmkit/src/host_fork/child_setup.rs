//! What a child forked from a runtime such as Node does before it runs anything: die with
//! its parent ([`PR_SET_PDEATHSIG`]), drop the parent's signal handlers ([`sigaction(2)`]),
//! unblock signals, and let go of the parent's sockets and pipes by putting `/dev/null` in
//! their place ([`dup3(2)`]).
//!
//! Every function here is meant for a freshly forked child and uses only async-signal-safe
//! calls: no allocation, no locks.
//!
//! [`PR_SET_PDEATHSIG`]: https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html
//! [`sigaction(2)`]: https://man7.org/linux/man-pages/man2/sigaction.2.html
//! [`dup3(2)`]: https://man7.org/linux/man-pages/man2/dup3.2.html

use std::os::fd::RawFd;

use nix::unistd::Pid;

use crate::error::Result;

/// Asks the kernel to `SIGKILL` this process when its parent thread ends, then checks that
/// the parent is still `parent` (it may have ended before the request was made).
///
/// # Errors
/// `prctl` failures; `ESRCH` from `getppid` when the parent is already gone.
pub fn die_with_parent(parent: Pid) -> Result<()> {
  imp::die_with_parent(parent)
}

/// Sets every signal that has a handler back to its default action, except `SIGPIPE`,
/// which becomes ignored (as in Node: a write to a closed pipe fails with `EPIPE` instead of
/// killing the process). Ignored signals stay ignored. The inherited handlers would run the
/// parent's code: Node's `SIGTERM` handler, for one, keeps a child alive and makes the
/// parent's `process.on('SIGTERM')` listener fire instead.
///
/// The handlers of the fault signals a faulting instruction raises in its own thread
/// (`SIGSEGV`, `SIGBUS`, `SIGFPE`, `SIGILL`) are kept: they handle this process's own faults,
/// such as V8's WebAssembly trap handler, which turns an out-of-bounds access into a
/// `RuntimeError` instead of a crash.
///
/// # Errors
/// `sigaction` failures.
pub fn reset_signal_handlers() -> Result<()> {
  imp::reset_signal_handlers()
}

/// Ends the process at once with [`_exit(2)`]: no `atexit` handlers, no destructors, no
/// flushing of stdio buffers shared with the parent. The way a forked child ends.
///
/// [`_exit(2)`]: https://man7.org/linux/man-pages/man2/_exit.2.html
pub fn exit(code: i32) -> ! {
  // SAFETY: _exit takes any int and never returns; skipping exit handlers is the point.
  unsafe { libc::_exit(code) }
}

/// Unblocks every signal for the calling thread.
///
/// # Errors
/// `pthread_sigmask` failures.
pub fn unblock_all_signals() -> Result<()> {
  use crate::error::SyscallExt;
  use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
  pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).syscall("pthread_sigmask")
}

/// Replaces every socket and FIFO descriptor from 3 up (except those in `keep`) by
/// `/dev/null`, keeping the numbers valid. Returns how many were replaced.
///
/// A child that kept them would hold the parent's listening sockets open (a closed server
/// would still accept connections) and keep pipes from reaching end-of-file. Closing them
/// instead (`close_range`) is not an option in Node: Node still writes to its event-loop
/// descriptors in the child, and libuv aborts on `EBADF`. Descriptors that are not sockets
/// or FIFOs (files, eventfds, epoll, `io_uring`) are left alone.
///
/// # Safety
/// The descriptors belong to other owners, which from now on read end-of-file and write into
/// `/dev/null`. Call it only in a forked child that will not hand those owners back to code
/// that relies on them.
///
/// # Errors
/// `open` of `/proc/self/fd` or `/dev/null`, `getdents64`, `fstat` or `dup3` failures.
pub unsafe fn replace_inherited_sockets(keep: &[RawFd]) -> Result<usize> {
  // SAFETY: forwarded contract.
  unsafe { imp::replace_inherited_sockets(keep) }
}

#[cfg(target_os = "linux")]
mod imp {
  use std::ffi::c_int;
  use std::os::fd::{AsRawFd, RawFd};
  use std::ptr;

  use nix::errno::Errno;
  use nix::fcntl::{open, OFlag};
  use nix::sys::stat::{fstat, Mode, SFlag};
  use nix::unistd::{getppid, Pid};

  use crate::error::{Error, Result, SyscallExt};

  pub(super) fn die_with_parent(parent: Pid) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).syscall("prctl")?;
    if getppid() != parent {
      return Err(Error::os(Errno::ESRCH, "getppid"));
    }
    Ok(())
  }

  /// Raised synchronously by a faulting instruction; see `reset_signal_handlers`.
  const FAULTS: [c_int; 4] = [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL];

  pub(super) fn reset_signal_handlers() -> Result<()> {
    // Real-time signals included; 32 and 33 belong to glibc, which refuses them (EINVAL).
    for signal in 1..=libc::SIGRTMAX() {
      if FAULTS.contains(&signal) || signal == libc::SIGKILL || signal == libc::SIGSTOP {
        continue;
      }
      // SAFETY: a zeroed sigaction is a valid value to be overwritten by the query.
      let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
      // SAFETY: a query (null new action) with a valid out-pointer.
      if unsafe { libc::sigaction(signal, ptr::null(), &raw mut current) } != 0 {
        continue; // a signal the C library reserves
      }
      if current.sa_sigaction == libc::SIG_DFL || current.sa_sigaction == libc::SIG_IGN {
        continue;
      }
      // SAFETY: a zeroed sigaction is SIG_DFL with no flags and an empty mask.
      let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
      action.sa_sigaction = if signal == libc::SIGPIPE {
        libc::SIG_IGN
      } else {
        libc::SIG_DFL
      };
      // SAFETY: installs the default action or "ignore", which run no code in this process.
      let ret = unsafe { libc::sigaction(signal, &raw const action, ptr::null_mut()) };
      Errno::result(ret).syscall("sigaction")?;
    }
    Ok(())
  }

  /// The fixed part of `struct linux_dirent64`: `d_ino`, `d_off`, `d_reclen`, `d_type`.
  const DIRENT_HEADER: usize = 19;

  pub(super) unsafe fn replace_inherited_sockets(keep: &[RawFd]) -> Result<usize> {
    let dir = open(
      c"/proc/self/fd",
      OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
      Mode::empty(),
    )
    .syscall("open")?;
    let null = open(c"/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()).syscall("open")?;
    let mut replaced = 0;
    // Aligned for the dirent records the kernel writes.
    let mut buffer = [0u64; 512];
    loop {
      // SAFETY: getdents64 writes at most the buffer's size into it and returns the length.
      let ret = unsafe {
        libc::syscall(
          libc::SYS_getdents64,
          dir.as_raw_fd(),
          buffer.as_mut_ptr(),
          std::mem::size_of_val(&buffer),
        )
      };
      let len = Errno::result(ret).syscall("getdents64")?;
      if len == 0 {
        return Ok(replaced);
      }
      let len = usize::try_from(len).expect("a byte count");
      // SAFETY: the kernel filled the first `len` bytes.
      let bytes = unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), len) };
      let mut offset = 0;
      while offset + DIRENT_HEADER <= len {
        let record = usize::from(u16::from_ne_bytes([bytes[offset + 16], bytes[offset + 17]]));
        if record == 0 {
          break;
        }
        let name = &bytes[offset + DIRENT_HEADER..(offset + record).min(len)];
        offset += record;
        let Some(fd) = parse_fd(name) else { continue };
        if fd < 3 || fd == dir.as_raw_fd() || fd == null.as_raw_fd() || keep.contains(&fd) {
          continue;
        }
        // SAFETY: borrowed only for fstat; the descriptor is listed as open and nothing in a
        // one-thread child closes it meanwhile.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let Ok(stat) = fstat(borrowed) else { continue };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind != SFlag::S_IFSOCK && kind != SFlag::S_IFIFO {
          continue;
        }
        // SAFETY: dup3 atomically puts /dev/null in place of `fd`; both are open descriptors
        // and the caller accepts that the owners of `fd` now see /dev/null.
        let ret = unsafe { libc::dup3(null.as_raw_fd(), fd, libc::O_CLOEXEC) };
        Errno::result(ret).syscall("dup3")?;
        replaced += 1;
      }
    }
  }

  fn parse_fd(name: &[u8]) -> Option<c_int> {
    let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    let digits = &name[..end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
      return None; // "." and ".."
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
  }
}

#[cfg(not(target_os = "linux"))]
mod imp {
  use std::os::fd::RawFd;

  use nix::unistd::Pid;

  use crate::error::{Error, ErrorKind, Result};

  fn unsupported() -> Error {
    Error::new(ErrorKind::Unsupported, "fork child setup is Linux only")
  }

  pub(super) fn die_with_parent(_parent: Pid) -> Result<()> {
    Err(unsupported())
  }

  pub(super) fn reset_signal_handlers() -> Result<()> {
    Err(unsupported())
  }

  pub(super) unsafe fn replace_inherited_sockets(_keep: &[RawFd]) -> Result<usize> {
    Err(unsupported())
  }
}
