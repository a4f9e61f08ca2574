//! The one place where errors become JavaScript values.
//!
//! - OS failures look like Node's `fs` errors: `code` (`'ENOENT'`), negative `errno`,
//!   `syscall`, and `path` (the object's name), message `ENOENT: …, shm_open '/jobs'`.
//! - Bad arguments are `TypeError`/`RangeError` with Node's `ERR_INVALID_ARG_TYPE`,
//!   `ERR_INVALID_ARG_VALUE` and `ERR_OUT_OF_RANGE` codes.
//! - Library states carry `ERR_SHM_*` codes.

use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;
use shmkit::ErrorKind;

/// Declares each code as a constant holding its own name.
macro_rules! codes {
  ($($(#[doc = $doc:tt])* $code:ident,)*) => {
    $($(#[doc = $doc])* pub const $code: &str = stringify!($code);)*
  };
}

// Every code besides the errno names; header.d.ts lists them as `ShmErrorCode`.
codes! {
  /// Used after `close()`.
  ERR_SHM_CLOSED,
  /// Not on this platform, or not for this kind of region.
  ERR_SHM_UNSUPPORTED,
  /// The runtime forbids external `ArrayBuffer`s.
  ERR_SHM_EXTERNAL_BUFFER,
  /// A named object to open belongs to another user than the caller accepted (`owner`).
  ERR_SHM_FOREIGN_OWNER,
  /// The runtime cannot make an `ArrayBuffer` as large as the region.
  ERR_SHM_TOO_LARGE,
  /// `SharedMemory.from` got something that is not a live token from `share()`.
  ERR_SHM_INVALID_TOKEN,
  /// A core failure with no better description (a bug to report).
  ERR_SHM_INTERNAL,
  /// A precondition of `fork()` does not hold.
  ERR_SHM_FORK_UNSAFE,
  /// `ForkedChild.kill` got a signal name or number the system does not have (Node's code).
  ERR_UNKNOWN_SIGNAL,
  ERR_INVALID_ARG_TYPE,
  ERR_INVALID_ARG_VALUE,
  ERR_OUT_OF_RANGE,
  /// The code of Node's `AbortError` (an aborted `AbortSignal`).
  ABORT_ERR,
}

/// Which JS constructor an error uses.
#[derive(Clone, Copy)]
pub enum Class {
  Error,
  TypeError,
  RangeError,
}

/// Builds a JS error of `class` with `message` and `code`, plus extra string/number props.
pub fn js_error(env: &Env, class: Class, code: &str, message: &str, props: &[(&str, Prop<'_>)]) -> Error {
  match build(env, class, code, message, props) {
    Ok(error) => error,
    // Building the object failed (an exception is already pending, say): fall back to a
    // plain napi error that still has the code.
    Err(_) => Error::new(Status::GenericFailure, format!("{code}: {message}")),
  }
}

/// An `Error` with `code` and no other property.
pub fn coded(env: &Env, code: &str, message: &str) -> Error {
  js_error(env, Class::Error, code, message, &[])
}

/// An extra property value.
pub enum Prop<'a> {
  Str(&'a str),
  Num(f64),
  Value(Unknown<'a>),
}

fn build(env: &Env, class: Class, code: &str, message: &str, props: &[(&str, Prop<'_>)]) -> Result<Error> {
  let raw_env = env.raw();
  let code_value = env.create_string(code)?;
  let message_value = env.create_string(message)?;
  let mut result = ptr::null_mut();
  // SAFETY: env is the live env of this call; both strings were just created in it and
  // `result` is a valid out-pointer.
  let status = unsafe {
    let create = match class {
      Class::Error => sys::napi_create_error,
      Class::TypeError => sys::napi_create_type_error,
      Class::RangeError => sys::napi_create_range_error,
    };
    create(raw_env, code_value.raw(), message_value.raw(), &raw mut result)
  };
  if status != sys::Status::napi_ok {
    return Err(Error::from_status(Status::from(status)));
  }
  let mut object = Object::from_raw(raw_env, result);
  for (key, value) in props {
    match value {
      Prop::Str(s) => object.set_named_property(key, *s)?,
      Prop::Num(n) => object.set_named_property(key, *n)?,
      Prop::Value(v) => object.set_named_property(key, *v)?,
    }
  }
  Ok(Error::from(object.to_unknown()))
}

/// Converts a core error. This is the only conversion from `shmkit::Error` to JS.
pub fn to_js(env: &Env, e: &shmkit::Error) -> Error {
  let message = e.to_string();
  let name_prop = e.name().map(|n| ("path", Prop::Str(n)));
  match e.kind() {
    ErrorKind::Os | ErrorKind::TimedOut => {
      let code = e.code().unwrap_or_else(|| "EIO".to_owned());
      let errno = e.errno().map_or(-5, |n| -(n as i32));
      let mut props = vec![
        ("errno", Prop::Num(f64::from(errno))),
        ("syscall", Prop::Str(e.syscall().unwrap_or(""))),
      ];
      props.extend(name_prop);
      js_error(env, Class::Error, &code, &message, &props)
    }
    ErrorKind::InvalidName => js_error(env, Class::TypeError, ERR_INVALID_ARG_VALUE, &message, &[]),
    ErrorKind::InvalidSize | ErrorKind::InvalidArgument => {
      js_error(env, Class::RangeError, ERR_OUT_OF_RANGE, &message, &[])
    }
    ErrorKind::Unsupported => coded(env, ERR_SHM_UNSUPPORTED, &message),
    ErrorKind::ForeignOwner => {
      let mut props = vec![("owner", Prop::Num(f64::from(e.owner().unwrap_or(u32::MAX))))];
      props.extend(name_prop);
      js_error(env, Class::Error, ERR_SHM_FOREIGN_OWNER, &message, &props)
    }
    _ => coded(env, ERR_SHM_INTERNAL, &message),
  }
}

/// `ERR_SHM_CLOSED`: a method was called after `close()`.
pub fn closed(env: &Env, what: &str) -> Error {
  coded(env, ERR_SHM_CLOSED, &format!("{what} is closed"))
}

/// Node's `AbortError` for an aborted `AbortSignal`: `name` `'AbortError'`, `code`
/// `'ABORT_ERR'`, and the signal's `reason` as `cause` (as `timers/promises` and `fs` do).
pub fn abort_error(env: &Env, reason: Option<Unknown<'_>>) -> Error {
  let mut props = vec![("name", Prop::Str("AbortError"))];
  props.extend(reason.map(|r| ("cause", Prop::Value(r))));
  js_error(env, Class::Error, ABORT_ERR, "The operation was aborted", &props)
}

/// Extension: tag core results for the binding's `?`.
pub trait IntoJs<T> {
  fn js(self, env: &Env) -> Result<T>;
}

impl<T> IntoJs<T> for shmkit::Result<T> {
  fn js(self, env: &Env) -> Result<T> {
    self.map_err(|e| to_js(env, &e))
  }
}
