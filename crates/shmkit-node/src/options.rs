//! Options objects. Each is a `#[napi(object)]` struct (the TypeScript type, docs included,
//! every field `Option`al) followed by [`read_options!`], which names the check of each
//! field (from `crate::args`) and makes its reader. The reader is a struct literal, so the
//! compiler holds the two together: a field without a check, or a check of the wrong type,
//! does not build. An absent or `undefined` property is `None`.
//!
//! (The struct cannot come out of the macro too: napi-derive 3.7 reads the doc comments of a
//! struct made by `macro_rules!` as raw strings, and they would reach `index.d.ts` as
//! `r" …"`.)

use std::time::Duration;

use napi::bindgen_prelude::*;

use crate::args;
use crate::error::abort_error;
use crate::promise::abort_reason;

/// Makes the readers of an options struct from the check of each field:
/// `read_options!(OpenOptions { read_only: args::boolean, owner: args::owner });` gives
/// `parse` (an options object already checked to be one), `from_arg` (the `options`
/// argument), and `FromNapiValue`, so a method can take `options: Option<OpenOptions>` and
/// napi writes its TypeScript.
macro_rules! read_options {
  ($name:ident $(<$lt:lifetime>)? { $($field:ident: $check:expr),* $(,)? }) => {
    impl<'e> $name $(<$lt>)? {
      /// Reads an options object (`None`: every option at its default).
      #[allow(dead_code, reason = "some options are only read through `from_arg`")]
      pub fn parse(env: &napi::Env, options: Option<&napi::bindgen_prelude::Object<'e>>) -> napi::Result<Self> {
        Ok(Self {
          $( $field: $crate::options::field(env, options, stringify!($field), $check)?, )*
        })
      }

      /// Reads the `options` argument: `undefined`, `null` or an object.
      #[allow(dead_code, reason = "some options are only read through `parse`")]
      pub fn from_arg(env: &napi::Env, options: Option<napi::bindgen_prelude::Unknown<'e>>) -> napi::Result<Self> {
        Self::parse(env, $crate::args::options(env, options, "options")?.as_ref())
      }
    }

    /// A typed argument (`Option<Self>`: `undefined` and `null` are `None`), with the same
    /// checks and errors as `from_arg`.
    impl<'e> napi::bindgen_prelude::FromNapiValue for $name $(<$lt>)? {
      unsafe fn from_napi_value(env: napi::sys::napi_env, value: napi::sys::napi_value) -> napi::Result<Self> {
        // SAFETY: napi passes a live value of this env, valid for the call.
        let value = unsafe { napi::bindgen_prelude::Unknown::from_raw_unchecked(env, value) };
        Self::from_arg(&napi::Env::from_raw(env), Some(value))
      }
    }
  };
}
pub(crate) use read_options;

/// The JS name of a field (`read_only` → `readOnly`), as napi names it in TypeScript.
fn js_name(field: &str) -> String {
  let mut parts = field.split('_');
  let mut name = parts.next().unwrap_or_default().to_owned();
  for part in parts {
    let mut chars = part.chars();
    name.extend(chars.next().map(|c| c.to_ascii_uppercase()));
    name.push_str(chars.as_str());
  }
  name
}

/// One field of an options object, read with `check` (which names it `options.<name>` in
/// its errors); absent or `undefined` is `None`.
pub fn field<'e, T>(
  env: &Env,
  options: Option<&Object<'e>>,
  field: &str,
  check: impl FnOnce(&Env, Unknown<'e>, &str) -> Result<T>,
) -> Result<Option<T>> {
  let Some(options) = options else { return Ok(None) };
  let name = js_name(field);
  let Some(value) = args::property(options, &name)? else {
    return Ok(None);
  };
  check(env, value, &format!("options.{name}")).map(Some)
}

/// A checked timeout in milliseconds as a `Duration`: `None` (absent, `Infinity`, or more
/// than a `Duration` holds) waits as long as it takes.
pub fn duration(ms: Option<f64>) -> Option<Duration> {
  ms.and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
}

/// An `AbortSignal` (napi names the type after this struct).
pub struct AbortSignal<'e>(pub Object<'e>);

/// Options of a blocking call (`waitSync`, `lockSync`, `ForkedChild.wait`).
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
pub struct WaitSyncOptions {
  /// The longest to wait, in milliseconds (fractions allowed). `0` tries once; `Infinity`
  /// or absent waits as long as it takes; negative or `NaN` is `ERR_OUT_OF_RANGE`. Running
  /// out of time is an answer: `false` from `waitSync`, `null` from `lockSync` and `wait`.
  pub timeout: Option<f64>,
}

read_options!(WaitSyncOptions { timeout: args::timeout });

impl WaitSyncOptions {
  /// The timeout (`None`: no limit).
  pub fn timeout(&self) -> Option<Duration> {
    duration(self.timeout)
  }
}

/// Options of a promise-returning wait (`Semaphore#wait`, `RobustMutex#lock`).
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
pub struct WaitOptions<'e> {
  /// The longest to wait, in milliseconds (fractions allowed). `0` tries once; `Infinity`
  /// or absent waits as long as it takes; negative or `NaN` is `ERR_OUT_OF_RANGE`. Running
  /// out of time is an answer: the promise resolves `false` (`wait`) or `null` (`lock`),
  /// within a few milliseconds of the deadline.
  pub timeout: Option<f64>,
  /// Aborting it rejects the pending wait with an `AbortError` (`code` `'ABORT_ERR'`,
  /// `cause` the signal's reason), and nothing is taken.
  pub signal: Option<AbortSignal<'e>>,
}

read_options!(WaitOptions<'e> { timeout: args::timeout, signal: args::signal });

impl<'e> WaitOptions<'e> {
  /// The timeout (`None`: no limit).
  pub fn timeout(&self) -> Option<Duration> {
    duration(self.timeout)
  }

  /// The `AbortError` to reject with at once when the signal has already aborted.
  pub fn aborted(&self, env: &Env) -> Result<Option<Error>> {
    let Some(AbortSignal(signal)) = &self.signal else {
      return Ok(None);
    };
    Ok(abort_reason(signal)?.map(|reason| abort_error(env, Some(reason))))
  }

  /// The signal, taken out of the options.
  pub fn take_signal(&mut self) -> Option<Object<'e>> {
    self.signal.take().map(|AbortSignal(signal)| signal)
  }
}

#[cfg(test)]
mod tests {
  use super::js_name;

  #[test]
  fn js_names_are_camel_case() {
    assert_eq!(js_name("private"), "private");
    assert_eq!(js_name("read_only"), "readOnly");
    assert_eq!(js_name("max_message_size"), "maxMessageSize");
  }
}
