//! `childWrite(fd, data)`: the bytes of a string or binary view, written whole even to a
//! non-blocking descriptor. A `fork()` child's way to print.
use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::{sys, ValueType};

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
  let bytes = bytes_of(&env, data)?;
  // A closed descriptor fails as `write` would, with EBADF.
  // SAFETY: the descriptor is only borrowed for this call, which closes nothing.
  let borrowed = unsafe { shmkit::borrow_fd(fd) }
    .map_err(|e| shmkit::Error::os(e.errno().unwrap_or(shmkit::Errno::EBADF), "write"))
    .js(&env)?;
  shmkit::host_fork::write_all(borrowed, &bytes).js(&env)?;
  u32::try_from(bytes.len()).map_err(|_| Error::from_reason("more than 4 GiB written"))
}

/// The bytes of a string (UTF-8), an `ArrayBufferView` or an `ArrayBuffer`.
fn bytes_of(env: &Env, data: Unknown) -> Result<Vec<u8>> {
  if data.get_type()? == ValueType::String {
    return Ok(args::string(env, data, "data")?.into_bytes());
  }
  let (env_raw, raw) = (env.raw(), data.raw());
  let mut pointer: *mut c_void = ptr::null_mut();
  let mut length = 0usize;
  let (mut is_typed, mut is_view, mut is_buffer) = (false, false, false);
  // SAFETY: a type query with a valid out-pointer.
  check(unsafe { sys::napi_is_typedarray(env_raw, raw, &raw mut is_typed) })?;
  if is_typed {
    let mut kind = sys::TypedarrayType::uint8_array;
    let mut element_count = 0;
    // SAFETY: `data` is a typed array (checked above); every out-pointer is valid or null.
    check(unsafe {
      sys::napi_get_typedarray_info(
        env_raw,
        raw,
        &raw mut kind,
        &raw mut element_count,
        &raw mut pointer,
        ptr::null_mut(),
        ptr::null_mut(),
      )
    })?;
    length = element_count * element_size(kind);
  } else {
    // SAFETY: a type query with a valid out-pointer.
    check(unsafe { sys::napi_is_dataview(env_raw, raw, &raw mut is_view) })?;
  }
  if is_view {
    // SAFETY: `data` is a DataView (checked above); every out-pointer is valid or null.
    check(unsafe {
      sys::napi_get_dataview_info(
        env_raw,
        raw,
        &raw mut length,
        &raw mut pointer,
        ptr::null_mut(),
        ptr::null_mut(),
      )
    })?;
  } else if !is_typed {
    // SAFETY: a type query with a valid out-pointer.
    check(unsafe { sys::napi_is_arraybuffer(env_raw, raw, &raw mut is_buffer) })?;
    if !is_buffer {
      return Err(args::invalid_type(
        env,
        "data",
        "of type string or an instance of ArrayBuffer, TypedArray or DataView",
        data,
      ));
    }
    // SAFETY: `data` is an ArrayBuffer (checked above); both out-pointers are valid.
    check(unsafe { sys::napi_get_arraybuffer_info(env_raw, raw, &raw mut pointer, &raw mut length) })?;
  }
  if length == 0 || pointer.is_null() {
    return Ok(Vec::new());
  }
  // SAFETY: napi reported `length` readable bytes at `pointer`, alive during this call.
  let bytes = unsafe { std::slice::from_raw_parts(pointer.cast::<u8>(), length) };
  Ok(bytes.to_vec())
}

/// A napi status as a `Result`.
fn check(status: sys::napi_status) -> Result<()> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(Error::from_status(Status::from(status)))
  }
}

fn element_size(kind: sys::napi_typedarray_type) -> usize {
  use sys::TypedarrayType as T;
  match kind {
    T::int16_array | T::uint16_array => 2,
    T::int32_array | T::uint32_array | T::float32_array => 4,
    T::float64_array | T::bigint64_array | T::biguint64_array => 8,
    _ => 1,
  }
}
