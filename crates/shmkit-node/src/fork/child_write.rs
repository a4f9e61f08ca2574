//! `childWrite(fd, data)`: the bytes of a string or binary view, written whole even to a
//! non-blocking descriptor. A `fork()` child's way to print.
use napi::bindgen_prelude::*;

use crate::args;
use crate::error::IntoJs;

/// Writes all of `data` (a string as UTF-8, or the bytes of a Buffer/TypedArray/DataView/
/// `ArrayBuffer`) to the descriptor `fd`, blocking until done even if `fd` is non-blocking
/// (Node makes stdout/stderr pipes non-blocking). Returns the number of bytes written. Use it
/// for output from a `fork()` child: `childWrite(1, 'done')`.
#[napi(ts_args_type = "fd: number, data: string | ArrayBufferView | ArrayBuffer")]
pub fn child_write(env: Env, fd: Unknown, data: Unknown) -> Result<u32> {
  let fd = args::integer(&env, fd, "fd", 0.0, f64::from(i32::MAX))?;
  #[expect(clippy::cast_possible_truncation, reason = "an integer in 0..=i32::MAX")]
  let fd = fd as i32;
  let bytes = args::Bytes::of(&env, data)?;
  // A closed descriptor fails as `write` would, with EBADF.
  // SAFETY: the descriptor is only borrowed for this call, which closes nothing.
  let borrowed = unsafe { shmkit::borrow_fd(fd) }
    .map_err(|e| shmkit::Error::os(e.errno().unwrap_or(shmkit::Errno::EBADF), "write"))
    .js(&env)?;
  shmkit::host_fork::write_all(borrowed, bytes.as_slice()).js(&env)?;
  u32::try_from(bytes.as_slice().len()).map_err(|_| Error::from_reason("more than 4 GiB written"))
}
