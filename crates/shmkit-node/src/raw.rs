//! The raw N-API calls napi-rs has no safe form for, each in one place: status checks,
//! taking a pending exception, strong references, and wrapped numbers. Everything else in the binding goes through napi-rs or these helpers.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::{sys, JsValue};

/// `Ok` for `napi_ok`, otherwise napi-rs's error for the status.
pub fn check(status: sys::napi_status) -> Result<()> {
  if status == sys::Status::napi_ok {
    Ok(())
  } else {
    Err(Error::from_status(Status::from(status)))
  }
}

/// Takes the pending JS exception, if any, so that it is no longer pending.
pub fn take_exception<'v>(env: &Env) -> Option<Unknown<'v>> {
  let mut pending = false;
  // SAFETY: a valid env and out-pointer.
  let status = unsafe { sys::napi_is_exception_pending(env.raw(), &raw mut pending) };
  if status != sys::Status::napi_ok || !pending {
    return None;
  }
  let mut exception = ptr::null_mut();
  // SAFETY: a valid env and out-pointer; an exception is pending.
  let status = unsafe { sys::napi_get_and_clear_last_exception(env.raw(), &raw mut exception) };
  if status != sys::Status::napi_ok || exception.is_null() {
    return None;
  }
  // SAFETY: a valid handle of the current scope.
  Some(unsafe { Unknown::from_raw_unchecked(env.raw(), exception) })
}

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
    if let Some(exception) = take_exception(env) {
      return Err(Error::from(exception));
    }
  }
  check(status)?;
  // SAFETY: napi_call_function succeeded, so `result` is a valid handle.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), result) })
}

/// A strong reference to a JS value, until [`Strong::delete`] (from the JS thread or a
/// finalizer). Deleting twice, or reading after deleting, is harmless.
pub struct Strong(Cell<sys::napi_ref>);

impl Strong {
  /// Holds `value` until [`Strong::delete`].
  pub fn new(env: &Env, value: sys::napi_value) -> Result<Self> {
    let mut reference = ptr::null_mut();
    // SAFETY: `value` is a live handle of this env; `reference` is a valid out-pointer.
    check(unsafe { sys::napi_create_reference(env.raw(), value, 1, &raw mut reference) })?;
    Ok(Self(Cell::new(reference)))
  }

  /// The value, as a handle of the current scope.
  pub fn get<'v>(&self, env: &Env) -> Result<Unknown<'v>> {
    let reference = self.0.get();
    if reference.is_null() {
      return Err(Error::new(Status::InvalidArg, "the reference was deleted"));
    }
    let mut value = ptr::null_mut();
    // SAFETY: a live strong reference of this env (not deleted: checked above); `value` is a
    // valid out-pointer.
    check(unsafe { sys::napi_get_reference_value(env.raw(), reference, &raw mut value) })?;
    if value.is_null() {
      return Err(Error::from_status(Status::GenericFailure));
    }
    // SAFETY: a valid handle of the current scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
  }

  /// Lets go of the value.
  pub fn delete(&self, env: &Env) {
    let reference = self.0.replace(ptr::null_mut());
    if reference.is_null() {
      return;
    }
    // SAFETY: a live reference of this env, deleted once (the cell is now empty). Deleting
    // only fails for a reference of another env, which we never hold.
    let _ = unsafe { sys::napi_delete_reference(env.raw(), reference) };
  }
}

/// An `ArrayBuffer` over the `len` bytes at `data`, which V8 does not own: `finalize` runs
/// with `hint` when V8 frees the memory. The status is returned as is, so that callers can tell
/// a runtime that forbids external buffers (`napi_no_external_buffers_allowed`).
///
/// # Safety
/// `data` must stay valid for `len` bytes until `finalize` runs.
pub unsafe fn external_arraybuffer(
  env: &Env,
  data: *mut c_void,
  len: usize,
  finalize: sys::napi_finalize,
  hint: *mut c_void,
) -> std::result::Result<sys::napi_value, sys::napi_status> {
  let mut value = ptr::null_mut();
  // SAFETY: the caller keeps `data` valid until `finalize`; `value` is a valid out-pointer.
  let status = unsafe { sys::napi_create_external_arraybuffer(env.raw(), data, len, finalize, hint, &raw mut value) };
  if status == sys::Status::napi_ok {
    Ok(value)
  } else {
    Err(status)
  }
}

/// What N-API says of a typed array.
pub struct TypedArray {
  pub kind: sys::napi_typedarray_type,
  /// The length in elements.
  pub length: usize,
  pub data: *mut c_void,
  /// Its `ArrayBuffer`.
  pub buffer: sys::napi_value,
}

/// `value` as a typed array, or `None` for any other value.
pub fn typed_array(env: &Env, value: sys::napi_value) -> Result<Option<TypedArray>> {
  let mut is_typed = false;
  // SAFETY: a type query on a live handle with a valid out-pointer.
  check(unsafe { sys::napi_is_typedarray(env.raw(), value, &raw mut is_typed) })?;
  if !is_typed {
    return Ok(None);
  }
  let mut info = TypedArray {
    kind: sys::TypedarrayType::uint8_array,
    length: 0,
    data: ptr::null_mut(),
    buffer: ptr::null_mut(),
  };
  // SAFETY: `value` is a typed array (checked); every out-pointer is valid.
  check(unsafe {
    sys::napi_get_typedarray_info(
      env.raw(),
      value,
      &raw mut info.kind,
      &raw mut info.length,
      &raw mut info.data,
      &raw mut info.buffer,
      ptr::null_mut(),
    )
  })?;
  Ok(Some(info))
}

/// Attaches the number `key` to `object` (`napi_wrap`), with `finalize` called with `key` as
/// its hint when V8 collects the object.
pub fn wrap_number(env: &Env, object: sys::napi_value, key: usize, finalize: sys::napi_finalize) -> Result<()> {
  let data = key as *mut c_void;
  // SAFETY: `object` is a live object handle of this env that nothing has wrapped; the data
  // and hint are plain numbers, never dereferenced.
  check(unsafe { sys::napi_wrap(env.raw(), object, data, finalize, data, ptr::null_mut()) })
}

/// The number attached to `object` by [`wrap_number`], or `None` when nothing is attached
/// (another object, or one another addon wrapped: callers check that the number is theirs).
pub fn unwrap_number(env: &Env, object: sys::napi_value) -> Option<usize> {
  let mut data = ptr::null_mut();
  // SAFETY: `object` is a live handle of this env; `data` is a valid out-pointer. An object
  // without a wrap is `napi_invalid_arg`, not an exception.
  let status = unsafe { sys::napi_unwrap(env.raw(), object, &raw mut data) };
  (status == sys::Status::napi_ok).then_some(data as usize)
}
