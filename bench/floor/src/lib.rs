//! The Node floor of the lifecycle rows of `npm run bench` (`life.floor.*`): the least a Node
//! binding over the Rust core can do for one region, so that each run shows which part of a
//! `SharedMemory` cycle is Node's own and which is shmkit's binding.
//!
//! `cycle()` makes or opens a region with the core, exposes it as one external `ArrayBuffer`
//! whose finalizer drops an `AddressPin`, and closes the region, which (pinned) replaces the
//! memory with zero pages in place, as `SharedMemory.close()` does; when V8 frees the buffer,
//! the pin goes and the addresses are unmapped. Left out, which is why this is a measure and
//! not a binding to build on: a handle object, argument checks, a claim that also waits for
//! the buffer object (one moved away by `transfer()`), errors as typed JS errors.

#![deny(clippy::multiple_unsafe_ops_per_block)]
#![allow(
  clippy::needless_pass_by_value,
  reason = "#[napi] functions receive JS values by value"
)]

#[macro_use]
extern crate napi_derive;

use std::ffi::c_void;

use napi::bindgen_prelude::*;
use napi::sys;
use shmkit::{AddressPin, MapOptions, Region};

/// The finalizer of a buffer from `cycle`: drops its pin, which unmaps the addresses.
unsafe extern "C" fn drop_pin(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
  // SAFETY: `hint` is the box `cycle` leaked for this buffer; V8 runs this once per buffer.
  drop(unsafe { Box::from_raw(hint.cast::<AddressPin>()) });
}

/// The core's error as a plain JS error (a measure needs no typed errors).
fn failed(e: shmkit::Error) -> Error {
  Error::from_reason(e.to_string())
}

/// One lifecycle operation of `case` (the names of `bench/lifecycle.mjs`) over `size` bytes:
/// `name` is the named object of the `named` cases (`create.named` unlinks it again), `fd`
/// the memfd of `open.fd`. Returns the closed region's buffer.
#[napi(ts_return_type = "ArrayBuffer")]
pub fn cycle(env: &Env, case: String, size: u32, name: String, fd: i32) -> Result<Unknown<'_>> {
  let size = size as usize;
  let region = match case.as_str() {
    "create.anonymous" => Region::anonymous(size),
    "create.devzero" => Region::dev_zero(size),
    "create.memfd" => Region::memfd(size),
    "create.named" => Region::create(name.as_str(), size),
    "open.named" => Region::open(name.as_str()),
    "open.fd" => {
      // SAFETY: the caller keeps `fd` open during the call; the core duplicates it.
      let borrowed = unsafe { shmkit::borrow_fd(fd) }.map_err(failed)?;
      Region::from_fd(borrowed, &MapOptions::default())
    }
    _ => return Err(Error::from_reason(format!("unknown case {case}"))),
  }
  .map_err(failed)?;
  let pin = Box::into_raw(Box::new(region.pin()));
  let mut value = std::ptr::null_mut();
  // SAFETY: the pin keeps the region's `len` bytes mapped until `drop_pin` runs for this
  // buffer (on a failure the pin may leak: this is a measure, not a binding).
  let status = unsafe {
    sys::napi_create_external_arraybuffer(
      env.raw(),
      region.as_ptr().cast(),
      region.len(),
      Some(drop_pin),
      pin.cast(),
      &raw mut value,
    )
  };
  if status != sys::Status::napi_ok {
    return Err(Error::from_status(Status::from(status)));
  }
  region.close().map_err(failed)?;
  if case == "create.named" {
    shmkit::unlink(name.as_str()).map_err(failed)?;
  }
  // SAFETY: `napi_create_external_arraybuffer` succeeded, so `value` is a live handle.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
}
