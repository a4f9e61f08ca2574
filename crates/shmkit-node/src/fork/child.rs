//! The child's side of `fork()`: a raw-N-API runtime on the env of the `fork()` call (the
//! child has no event loop and runs no napi-rs machinery), which fixes up `process`, calls
//! the callback, reports an exception and turns the result into an exit code.
use std::ffi::c_char;
use std::os::fd::BorrowedFd;
use std::ptr;

use napi::bindgen_prelude::Env;
use napi::{sys, JsValue};

use crate::raw;

/// Runs `callback` in the child (after the native setup) and returns the exit code.
pub(super) fn run_in_child(env: sys::napi_env, callback: sys::napi_value) -> i32 {
  prepare_process(env);
  let mut result = ptr::null_mut();
  let mut this = ptr::null_mut();
  // SAFETY: `env` is the env of the fork() call, whose scope the child continues in; `this`
  // is a valid out-pointer.
  let status = unsafe { sys::napi_get_undefined(env, &raw mut this) };
  if status != sys::Status::napi_ok {
    say("shmkit fork(): the callback could not be called in the child\n");
    return 1;
  }
  // SAFETY: `callback` is a handle of the fork() call's scope, `this` was just made, and
  // `result` is a valid out-pointer.
  let status = unsafe { sys::napi_call_function(env, this, callback, 0, ptr::null(), &raw mut result) };
  if status == sys::Status::napi_pending_exception {
    report_exception(env);
    return 1;
  }
  if status != sys::Status::napi_ok {
    say("shmkit fork(): the callback could not be called in the child\n");
    return 1;
  }
  exit_code(env, result)
}

/// Writes `text` to fd 2 (blocking even if Node made it non-blocking).
fn say(text: &str) {
  // SAFETY: fd 2 stays open in the child (stdio is never replaced).
  let stderr = unsafe { BorrowedFd::borrow_raw(2) };
  let _ = shmkit::host_fork::write_all(stderr, text.as_bytes());
}

fn string(env: sys::napi_env, value: sys::napi_value) -> Option<String> {
  let mut len = 0;
  // SAFETY: a length query on a string handle.
  if unsafe { sys::napi_get_value_string_utf8(env, value, ptr::null_mut(), 0, &raw mut len) } != sys::Status::napi_ok {
    return None;
  }
  let mut buffer = vec![0u8; len + 1];
  // SAFETY: the buffer holds len + 1 bytes, as napi requires for the terminator.
  let status =
    unsafe { sys::napi_get_value_string_utf8(env, value, buffer.as_mut_ptr().cast::<c_char>(), len + 1, &raw mut len) };
  if status != sys::Status::napi_ok {
    return None;
  }
  buffer.truncate(len);
  String::from_utf8(buffer).ok()
}

fn type_of(env: sys::napi_env, value: sys::napi_value) -> sys::napi_valuetype {
  let mut kind = sys::ValueType::napi_undefined;
  // SAFETY: a type query with a valid out-pointer.
  let status = unsafe { sys::napi_typeof(env, value, &raw mut kind) };
  if status == sys::Status::napi_ok {
    kind
  } else {
    sys::ValueType::napi_undefined
  }
}

fn property(env: sys::napi_env, object: sys::napi_value, name: &std::ffi::CStr) -> Option<sys::napi_value> {
  let mut value = ptr::null_mut();
  // SAFETY: a property read; a throwing getter leaves an exception that is cleared below.
  let status = unsafe { sys::napi_get_named_property(env, object, name.as_ptr(), &raw mut value) };
  if status == sys::Status::napi_ok {
    Some(value)
  } else {
    clear_exception(env);
    None
  }
}

fn clear_exception(env: sys::napi_env) {
  let _ = raw::take_exception(&Env::from_raw(env));
}

/// Writes the pending exception (its `stack`, or its string form) to fd 2.
fn report_exception(env: sys::napi_env) {
  let Some(error) = raw::take_exception(&Env::from_raw(env)).map(|e| e.raw()) else {
    return;
  };
  let mut text = None;
  if type_of(env, error) == sys::ValueType::napi_object {
    text = property(env, error, c"stack")
      .filter(|stack| type_of(env, *stack) == sys::ValueType::napi_string)
      .and_then(|stack| string(env, stack));
  }
  if text.is_none() {
    let mut coerced = ptr::null_mut();
    // SAFETY: String(error); a throwing toString leaves an exception, cleared below.
    if unsafe { sys::napi_coerce_to_string(env, error, &raw mut coerced) } == sys::Status::napi_ok {
      text = string(env, coerced);
    } else {
      clear_exception(env);
    }
  }
  let text = text.unwrap_or_else(|| "(an exception that cannot be shown as text)".to_owned());
  say(&format!("Uncaught exception in a shmkit fork() child:\n{text}\n"));
}

/// The exit code for the callback's result: a number's low 8 bits; 1 for a Promise or
/// another thenable (async work cannot finish in the child); 0 for anything else.
fn exit_code(env: sys::napi_env, result: sys::napi_value) -> i32 {
  let mut is_promise = false;
  // SAFETY: a type query with a valid out-pointer.
  let status = unsafe { sys::napi_is_promise(env, result, &raw mut is_promise) };
  is_promise &= status == sys::Status::napi_ok;
  let thenable = matches!(
    type_of(env, result),
    sys::ValueType::napi_object | sys::ValueType::napi_function
  ) && property(env, result, c"then")
    .is_some_and(|then| type_of(env, then) == sys::ValueType::napi_function);
  if is_promise || thenable {
    say(
      "shmkit fork(): the callback returned a Promise, but async work never completes in a fork() child \
       (it has no event loop); do the work synchronously\n",
    );
    return 1;
  }
  if type_of(env, result) == sys::ValueType::napi_number {
    let mut code = 0;
    // SAFETY: a number handle; the value is truncated to 32 bits like ToInt32.
    let status = unsafe { sys::napi_get_value_int32(env, result, &raw mut code) };
    return if status == sys::Status::napi_ok { code & 0xff } else { 0 };
  }
  0
}

/// In the child only: `process.pid` becomes the child's pid, and `process.exit(code)` ends
/// the child at once with `_exit` (Node's own exit path crashes or hangs in a fork child).
fn prepare_process(env: sys::napi_env) {
  let mut global = ptr::null_mut();
  // SAFETY: a valid out-pointer.
  if unsafe { sys::napi_get_global(env, &raw mut global) } != sys::Status::napi_ok {
    return;
  }
  let Some(process) = property(env, global, c"process") else {
    return;
  };
  let mut pid = ptr::null_mut();
  let mut exit = ptr::null_mut();
  // SAFETY: a valid out-pointer.
  if unsafe { sys::napi_create_uint32(env, std::process::id(), &raw mut pid) } != sys::Status::napi_ok {
    return;
  }
  // SAFETY: a valid out-pointer; the function has no data and lives as long as the child.
  let status =
    unsafe { sys::napi_create_function(env, c"exit".as_ptr(), 4, Some(exit_now), ptr::null_mut(), &raw mut exit) };
  if status != sys::Status::napi_ok {
    return;
  }
  let properties = [
    sys::napi_property_descriptor {
      utf8name: c"pid".as_ptr(),
      name: ptr::null_mut(),
      method: None,
      getter: None,
      setter: None,
      value: pid,
      attributes: sys::PropertyAttributes::enumerable,
      data: ptr::null_mut(),
    },
    sys::napi_property_descriptor {
      utf8name: c"exit".as_ptr(),
      name: ptr::null_mut(),
      method: None,
      getter: None,
      setter: None,
      value: exit,
      attributes: sys::PropertyAttributes::enumerable | sys::PropertyAttributes::writable,
      data: ptr::null_mut(),
    },
  ];
  // SAFETY: descriptors with valid names and values; a failure leaves an exception that
  // is cleared.
  if unsafe { sys::napi_define_properties(env, process, properties.len(), properties.as_ptr()) } != sys::Status::napi_ok
  {
    clear_exception(env);
  }
}

/// `process.exit(code)` in the child: `_exit(code & 0xff)` (0 for a missing code).
unsafe extern "C" fn exit_now(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
  let mut count = 1;
  let mut values = [ptr::null_mut(); 1];
  // SAFETY: `values` holds one handle, as `count` says.
  let status = unsafe {
    sys::napi_get_cb_info(
      env,
      info,
      &raw mut count,
      values.as_mut_ptr(),
      ptr::null_mut(),
      ptr::null_mut(),
    )
  };
  let mut code = 0;
  if status == sys::Status::napi_ok && count >= 1 && type_of(env, values[0]) == sys::ValueType::napi_number {
    // SAFETY: a number handle.
    if unsafe { sys::napi_get_value_int32(env, values[0], &raw mut code) } != sys::Status::napi_ok {
      code = 0;
    }
  }
  // Node's exit path is what the whole fork() design avoids.
  shmkit::host_fork::child_setup::exit(code & 0xff)
}
