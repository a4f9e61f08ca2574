//! Writing all of a buffer to a descriptor that may be non-blocking ([`write(2)`] and
//! [`poll(2)`]).
//!
//! Node makes its stdout and stderr pipes `O_NONBLOCK`, a flag of the open file description
//! that a forked child shares. A child's `process.stdout.write` into a full pipe queues the
//! bytes in libuv, and `_exit` drops them; clearing the flag in the child would change the
//! parent's descriptor too. This writer instead waits for room with `poll(POLLOUT)`.
//!
//! [`write(2)`]: https://man7.org/linux/man-pages/man2/write.2.html
//! [`poll(2)`]: https://man7.org/linux/man-pages/man2/poll.2.html

use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::{Error, Result};

/// Writes every byte of `bytes` to `fd`, retrying after `EINTR` and waiting with `poll` for
/// room after `EAGAIN`, however long that takes.
///
/// ```
/// let (read, write) = nix::unistd::pipe().unwrap();
/// # use std::os::fd::AsFd;
/// shmkit::host_fork::write_all(write.as_fd(), b"hello").unwrap();
/// let mut buf = [0u8; 5];
/// nix::unistd::read(read.as_fd(), &mut buf).unwrap();
/// assert_eq!(&buf, b"hello");
/// ```
///
/// # Errors
/// `write` failures other than `EINTR`/`EAGAIN` (`EPIPE` when the reader is gone, `EBADF`),
/// `poll` failures.
pub fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<()> {
  while !bytes.is_empty() {
    match nix::unistd::write(fd, bytes) {
      Ok(written) => bytes = &bytes[written..],
      Err(Errno::EINTR) => {}
      Err(Errno::EAGAIN) => wait_writable(fd)?,
      Err(errno) => return Err(Error::os(errno, "write")),
    }
  }
  Ok(())
}

fn wait_writable(fd: BorrowedFd<'_>) -> Result<()> {
  let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
  match poll(&mut fds, PollTimeout::NONE) {
    // POLLERR/POLLHUP: the next write reports the error itself.
    Ok(_) | Err(Errno::EINTR) => Ok(()),
    Err(errno) => Err(Error::os(errno, "poll")),
  }
}
