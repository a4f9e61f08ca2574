//! Borrowing a descriptor number that came from outside Rust (a JavaScript argument, an
//! environment variable) after checking that it is open.
use std::os::fd::{BorrowedFd, RawFd};

use nix::errno::Errno;

use crate::error::{Error, Result};

/// Borrows the descriptor `fd` once `fcntl(F_GETFD)` has shown it open; a closed or invalid
/// number is an `EBADF` error (syscall `fcntl`) instead of undefined behaviour.
///
/// ```
/// # use std::os::fd::AsRawFd;
/// let file = std::fs::File::open("/dev/null").unwrap();
/// // SAFETY: `file` outlives the borrow.
/// assert!(unsafe { shmkit::borrow_fd(file.as_raw_fd()) }.is_ok());
/// // SAFETY: nothing is borrowed when the check fails.
/// let err = unsafe { shmkit::borrow_fd(-1) }.unwrap_err();
/// assert_eq!(err.errno(), Some(shmkit::Errno::EBADF));
/// ```
///
/// # Safety
/// As for [`BorrowedFd::borrow_raw`], except that the descriptor need only be open when
/// this is called: it must then stay open, and not be closed by anyone else, for as long
/// as the returned borrow lives.
///
/// # Errors
/// `EBADF` (syscall `fcntl`) when `fd` is not an open descriptor.
pub unsafe fn borrow_fd<'fd>(fd: RawFd) -> Result<BorrowedFd<'fd>> {
  // SAFETY: F_GETFD only reads the descriptor's flags; any number is a valid argument.
  let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
  if flags < 0 {
    return Err(Error::os(Errno::last(), "fcntl"));
  }
  // SAFETY: `fd` is open (checked above); the caller keeps it open for the borrow.
  Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}
