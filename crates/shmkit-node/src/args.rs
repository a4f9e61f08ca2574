//! Argument validation with Node's error codes and message shapes, so that a bad call
//! fails the way the same mistake fails in `fs` or `buffer`.

use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::*;
use napi::{sys, JsValue, ValueType};

use crate::error::{js_error, Class, ERR_INVALID_ARG_TYPE, ERR_INVALID_ARG_VALUE, ERR_OUT_OF_RANGE};

/// The largest region size accepted: 128 TiB, the user address space of x86-64 Linux.
/// Anything larger could never be mapped.
pub const MAX_SIZE: f64 = 140_737_488_355_328.0; // 2 ** 47

/// Describes a received value like Node's `ERR_INVALID_ARG_TYPE` messages do.
fn describe(value: Unknown<'_>) -> String {
  let Ok(kind) = value.get_type() else {
    return "an unknown value".to_owned();
  };
  match kind {
    ValueType::Undefined => "undefined".to_owned(),
    ValueType::Null => "null".to_owned(),
    ValueType::Number => {
      // SAFETY: the type was just checked to be Number.
      let n: f64 = unsafe { value.cast() }.unwrap_or(f64::NAN);
      format!("type number ({})", show_number(n))
    }
    ValueType::String => {
      // SAFETY: the type was just checked to be String.
      let s: String = unsafe { value.cast() }.unwrap_or_default();
      let short: String = s.chars().take(25).collect();
      let ellipsis = if s.chars().count() > 25 { "..." } else { "" };
      format!("type string ('{short}{ellipsis}')")
    }
    ValueType::Boolean => {
      // SAFETY: the type was just checked to be Boolean.
      let b: bool = unsafe { value.cast() }.unwrap_or_default();
      format!("type boolean ({b})")
    }
    ValueType::BigInt => "type bigint".to_owned(),
    ValueType::Symbol => "type symbol".to_owned(),
    ValueType::Function => "function".to_owned(),
    _ => "an instance of Object".to_owned(),
  }
}

fn show_number(n: f64) -> String {
  if n.is_nan() {
    return "NaN".to_owned();
  }
  if n.is_infinite() {
    return if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
  }
  if n.is_finite() && n.fract() == 0.0 && n.abs() < 1e21 {
    format!("{n:.0}")
  } else {
    format!("{n}")
  }
}

/// `TypeError [ERR_INVALID_ARG_TYPE]: The "arg" argument must be of type T. Received …`
pub fn invalid_type(env: &Env, arg: &str, expected: &str, value: Unknown<'_>) -> Error {
  let noun = if arg.contains('.') { "property" } else { "argument" };
  let message = format!("The \"{arg}\" {noun} must be {expected}. Received {}", describe(value));
  js_error(env, Class::TypeError, ERR_INVALID_ARG_TYPE, &message, &[])
}

/// `RangeError [ERR_OUT_OF_RANGE]: The value of "arg" is out of range. It must be … Received …`
pub fn out_of_range(env: &Env, arg: &str, rule: &str, received: &str) -> Error {
  let message = format!("The value of \"{arg}\" is out of range. It must be {rule}. Received {received}");
  js_error(env, Class::RangeError, ERR_OUT_OF_RANGE, &message, &[])
}

/// `TypeError [ERR_INVALID_ARG_VALUE]: The argument 'arg' is invalid: reason. Received …`
pub fn invalid_value(env: &Env, arg: &str, reason: &str, received: &str) -> Error {
  let message = format!("The argument '{arg}' {reason}. Received {received}");
  js_error(env, Class::TypeError, ERR_INVALID_ARG_VALUE, &message, &[])
}

fn is(value: Unknown<'_>, kind: ValueType) -> bool {
  value.get_type().is_ok_and(|t| t == kind)
}

/// A JS number, or `ERR_INVALID_ARG_TYPE`.
pub fn number(env: &Env, value: Unknown<'_>, arg: &str) -> Result<f64> {
  if !is(value, ValueType::Number) {
    return Err(invalid_type(env, arg, "of type number", value));
  }
  // SAFETY: the type was just checked to be Number.
  unsafe { value.cast::<f64>() }
}

/// An integer in `min..=max`, or `ERR_INVALID_ARG_TYPE` / `ERR_OUT_OF_RANGE`.
pub fn integer(env: &Env, value: Unknown<'_>, arg: &str, min: f64, max: f64) -> Result<f64> {
  let n = number(env, value, arg)?;
  if !n.is_finite() || n.fract() != 0.0 {
    return Err(out_of_range(env, arg, "an integer", &show_number(n)));
  }
  if n < min || n > max {
    let rule = format!(">= {} && <= {}", show_number(min), show_number(max));
    return Err(out_of_range(env, arg, &rule, &show_number(n)));
  }
  Ok(n)
}

/// A byte count or position: an integer from `min` to [`MAX_SIZE`].
fn bytes(env: &Env, value: Unknown<'_>, arg: &str, min: f64) -> Result<usize> {
  let n = integer(env, value, arg, min, MAX_SIZE)?;
  #[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a non-negative integer below 2**47"
  )]
  Ok(n as usize)
}

/// A region size in bytes: an integer from 1 to [`MAX_SIZE`].
pub fn size(env: &Env, value: Unknown<'_>, arg: &str) -> Result<usize> {
  bytes(env, value, arg, 1.0)
}

/// A JS string, or `ERR_INVALID_ARG_TYPE`.
pub fn string(env: &Env, value: Unknown<'_>, arg: &str) -> Result<String> {
  if !is(value, ValueType::String) {
    return Err(invalid_type(env, arg, "of type string", value));
  }
  // SAFETY: the type was just checked to be String.
  unsafe { value.cast::<String>() }
}

/// A shared-memory or semaphore name: a string, then the portable-name rules.
pub fn object_name(env: &Env, value: Unknown<'_>, arg: &str) -> Result<shmkit::ObjectName> {
  let text = string(env, value, arg)?;
  shmkit::ObjectName::new(&text).map_err(|e| {
    let reason = format!("is invalid: {}", e.detail().unwrap_or("not a portable name"));
    invalid_value(env, arg, &reason, &format!("'{text}'"))
  })
}

/// An options object: `undefined`/`null`/absent give `None`; anything but an object is
/// `ERR_INVALID_ARG_TYPE`.
pub fn options<'e>(env: &Env, value: Option<Unknown<'e>>, arg: &str) -> Result<Option<Object<'e>>> {
  let Some(value) = value else { return Ok(None) };
  match value.get_type()? {
    ValueType::Undefined | ValueType::Null => Ok(None),
    // SAFETY: the type was just checked to be Object.
    ValueType::Object => Ok(Some(unsafe { value.cast::<Object>() }?)),
    _ => Err(invalid_type(env, arg, "of type object", value)),
  }
}

/// Reads an optional property; `undefined` means absent.
pub fn property<'e>(object: &Object<'e>, key: &str) -> Result<Option<Unknown<'e>>> {
  let value: Unknown = object.get_named_property_unchecked(key)?;
  Ok(if is(value, ValueType::Undefined) {
    None
  } else {
    Some(value)
  })
}

/// A boolean.
pub fn boolean(env: &Env, value: Unknown<'_>, arg: &str) -> Result<bool> {
  if !is(value, ValueType::Boolean) {
    return Err(invalid_type(env, arg, "of type boolean", value));
  }
  // SAFETY: the type was just checked to be Boolean.
  unsafe { value.cast::<bool>() }
}

/// An unsigned 32-bit integer in `min..=max`.
pub fn uint32(env: &Env, value: Unknown<'_>, arg: &str, min: u32, max: u32) -> Result<u32> {
  let n = integer(env, value, arg, f64::from(min), f64::from(max))?;
  #[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "an integer in u32 range, checked above"
  )]
  Ok(n as u32)
}

/// An integer property `key` of the `options` argument, in `min..=max` (absent: `None`).
pub fn integer_option(
  env: &Env,
  object: Option<&Object<'_>>,
  key: &str,
  _arg: &str,
  min: f64,
  max: f64,
) -> Result<Option<f64>> {
  crate::options::field(env, object, key, |env, value, arg| integer(env, value, arg, min, max))
}

/// Permission bits (`mode`): an integer from `0` to `0o777`.
pub fn mode(env: &Env, value: Unknown<'_>, arg: &str) -> Result<u32> {
  uint32(env, value, arg, 0, 0o777)
}

/// An offset inside a region: an integer from 0 to [`MAX_SIZE`].
pub fn offset(env: &Env, value: Unknown<'_>, arg: &str) -> Result<usize> {
  bytes(env, value, arg, 0.0)
}

/// A timeout in milliseconds: a number ≥ 0 (`Infinity` is no limit; negative or `NaN` is
/// `ERR_OUT_OF_RANGE`).
pub fn timeout(env: &Env, value: Unknown<'_>, arg: &str) -> Result<f64> {
  let ms = number(env, value, arg)?;
  if ms.is_nan() || ms < 0.0 {
    return Err(out_of_range(env, arg, ">= 0", &show_number(ms)));
  }
  Ok(ms)
}

/// The `timeout` property of the `options` argument (see [`timeout`]) as a `Duration`, or
/// `None` for no limit.
pub fn timeout_option(env: &Env, object: Option<&Object<'_>>, _arg: &str) -> Result<Option<std::time::Duration>> {
  let ms = crate::options::field(env, object, "timeout", timeout)?;
  Ok(crate::options::duration(ms))
}

/// Whose named object to accept (`owner`): a user id (an integer from 0 to 2**32 - 2) or
/// `'any'`.
pub fn owner(env: &Env, value: Unknown<'_>, arg: &str) -> Result<shmkit::Owner> {
  match value.get_type()? {
    ValueType::String => {
      // SAFETY: the type was just checked to be String.
      let text: String = unsafe { value.cast() }?;
      if text == "any" {
        Ok(shmkit::Owner::Any)
      } else {
        Err(invalid_value(
          env,
          arg,
          "must be a user id or 'any'",
          &format!("'{text}'"),
        ))
      }
    }
    ValueType::Number => Ok(shmkit::Owner::Uid(uint32(env, value, arg, 0, u32::MAX - 1)?)),
    _ => Err(invalid_type(env, arg, "of type number or the string 'any'", value)),
  }
}

/// An `AbortSignal`.
pub fn signal<'e>(env: &Env, value: Unknown<'e>, arg: &str) -> Result<crate::options::AbortSignal<'e>> {
  let constructor: Function<'_, Unknown<'_>, Unknown<'_>> = env.get_global()?.get_named_property("AbortSignal")?;
  if value.get_type()? != ValueType::Object || !value.instanceof(constructor)? {
    return Err(invalid_type(env, arg, "an instance of AbortSignal", value));
  }
  // SAFETY: the type was just checked to be Object.
  Ok(crate::options::AbortSignal(unsafe { value.cast::<Object>() }?))
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

/// Bytes to send: a string as UTF-8, or the bytes of an `ArrayBufferView`/`ArrayBuffer`,
/// borrowed for the call (`Err` if `data` is none of those).
pub enum Bytes {
  Owned(Vec<u8>),
  Borrowed(*const u8, usize),
}

impl Bytes {
  pub fn of(env: &Env, data: Unknown<'_>) -> Result<Self> {
    if data.get_type()? == ValueType::String {
      return Ok(Self::Owned(string(env, data, "data")?.into_bytes()));
    }
    Self::memory_of(
      env,
      data,
      "data",
      "of type string or an instance of ArrayBuffer, TypedArray or DataView",
    )
  }

  /// The bytes of an `ArrayBufferView` or `ArrayBuffer` (`Err`, naming `arg` and what it
  /// must be, for anything else).
  pub fn memory_of(env: &Env, data: Unknown<'_>, arg: &str, expected: &str) -> Result<Self> {
    let raw = data.raw();
    let typed = crate::raw::typed_array(env, raw)?;
    let (mut is_view, mut is_buffer) = (false, false);
    // SAFETY: a type query with a valid out-pointer on a live handle.
    crate::raw::check(unsafe { sys::napi_is_dataview(env.raw(), raw, &raw mut is_view) })?;
    // SAFETY: as above.
    crate::raw::check(unsafe { sys::napi_is_arraybuffer(env.raw(), raw, &raw mut is_buffer) })?;
    let mut pointer: *mut c_void = ptr::null_mut();
    let mut length = 0usize;
    let status = if let Some(typed) = typed {
      pointer = typed.data;
      length = typed.length * element_size(typed.kind);
      sys::Status::napi_ok
    } else if is_view {
      // SAFETY: `raw` is a DataView (checked); the out-pointers are valid.
      unsafe {
        sys::napi_get_dataview_info(
          env.raw(),
          raw,
          &raw mut length,
          &raw mut pointer,
          ptr::null_mut(),
          ptr::null_mut(),
        )
      }
    } else if is_buffer {
      // SAFETY: `raw` is an ArrayBuffer (checked); the out-pointers are valid.
      unsafe { sys::napi_get_arraybuffer_info(env.raw(), raw, &raw mut pointer, &raw mut length) }
    } else {
      return Err(invalid_type(env, arg, expected, data));
    };
    crate::raw::check(status)?;
    if pointer.is_null() {
      length = 0; // a detached buffer reads as empty
    }
    Ok(Self::Borrowed(pointer.cast(), length))
  }

  pub fn as_slice(&self) -> &[u8] {
    match self {
      Self::Owned(bytes) => bytes,
      Self::Borrowed(_, 0) => &[],
      // SAFETY: napi reported `length` readable bytes at `pointer`; the JS value they belong
      // to stays alive (and cannot be detached: no JS runs) for the duration of this call.
      Self::Borrowed(pointer, length) => unsafe { std::slice::from_raw_parts(*pointer, *length) },
    }
  }
}
