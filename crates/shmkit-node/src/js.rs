//! Small helpers for calling JavaScript from the binding.

use std::ptr;

use napi::bindgen_prelude::*;
use napi::{sys, JsValue};

/// `globalThis[name]` as an object.
pub fn global<'e>(env: &'e Env, name: &str) -> Result<Object<'e>> {
  env.get_global()?.get_named_property_unchecked(name)
}

/// Calls `function` with `this` and `args`. A JS exception is taken (no longer pending) and
/// becomes the `Err`, so it can be rethrown or dropped.
pub fn call<'e>(env: &Env, this: Unknown<'_>, function: Unknown<'_>, args: &[Unknown<'_>]) -> Result<Unknown<'e>> {
  let raw: Vec<sys::napi_value> = args.iter().map(JsValue::raw).collect();
  let mut result = ptr::null_mut();
  // SAFETY: every handle belongs to this env and the current scope; `result` is a valid
  // out-pointer.
  let status = unsafe {
    sys::napi_call_function(
      env.raw(),
      this.raw(),
      function.raw(),
      raw.len(),
      raw.as_ptr(),
      &raw mut result,
    )
  };
  if status == sys::Status::napi_pending_exception {
    let mut exception = ptr::null_mut();
    // SAFETY: an exception is pending; this takes it into a handle of the current scope.
    unsafe { sys::napi_get_and_clear_last_exception(env.raw(), &raw mut exception) };
    // SAFETY: a valid handle (the exception value).
    return Err(Error::from(unsafe {
      Unknown::from_raw_unchecked(env.raw(), exception)
    }));
  }
  if status != sys::Status::napi_ok {
    return Err(Error::from_status(Status::from(status)));
  }
  // SAFETY: napi_call_function succeeded, so `result` is a valid handle.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), result) })
}
