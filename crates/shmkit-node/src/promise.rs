//! Promises settled from native code, and the `AbortSignal` that may end them early: what
//! every async wait of the binding (`waitAsync`, `Semaphore#wait`) shares.

use std::ptr;

use napi::bindgen_prelude::*;
use napi::{sys, ValueType};

use crate::args;
use crate::options::AbortSignal;
use crate::raw::{self, check, Strong};

/// A promise's resolving half. Settling consumes it; dropping it unsettled (env teardown)
/// leaves the promise pending, which is all a dying env can do.
pub struct Deferred(sys::napi_deferred);

impl Deferred {
  /// A new promise and its deferred.
  pub fn new(env: &Env) -> Result<(Self, Object<'_>)> {
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: valid env and out-pointers.
    check(unsafe { sys::napi_create_promise(env.raw(), &raw mut deferred, &raw mut promise) })?;
    Ok((Self(deferred), Object::from_raw(env.raw(), promise)))
  }

  /// Settles with `outcome` (a value, or the error to reject with).
  pub fn settle<T: ToNapiValue>(self, env: &Env, outcome: Result<T>) {
    let status = match outcome {
      Ok(value) => {
        // SAFETY: valid env; the value converts in it.
        match unsafe { T::to_napi_value(env.raw(), value) } {
          // SAFETY: the deferred is settled exactly once, here (self is consumed).
          Ok(value) => unsafe { sys::napi_resolve_deferred(env.raw(), self.0, value) },
          Err(e) => return self.settle::<()>(env, Err(e)),
        }
      }
      Err(error) => {
        // SAFETY: valid env; the error hands back the JS error object it holds.
        match unsafe { Error::to_napi_value(env.raw(), error) } {
          // SAFETY: as above.
          Ok(value) => unsafe { sys::napi_reject_deferred(env.raw(), self.0, value) },
          Err(_) => return,
        }
      }
    };
    // A failure here means the env is going away; nothing is left to tell.
    let _ = status;
  }
}

/// A pending promise and the abort listener to remove when it settles.
pub struct Pending {
  pub deferred: Deferred,
  pub abort: Option<AbortHook>,
}

impl Pending {
  /// Removes the abort listener, then settles the promise.
  pub fn settle<T: ToNapiValue>(self, env: &Env, outcome: Result<T>) {
    if let Some(hook) = self.abort {
      hook.release(env);
    }
    self.deferred.settle(env, outcome);
  }
}

/// A promise already settled with `outcome`.
pub fn settled<T: ToNapiValue>(env: &Env, outcome: Result<T>) -> Result<Object<'_>> {
  let (deferred, promise) = Deferred::new(env)?;
  deferred.settle(env, outcome);
  Ok(promise)
}

/// Reads `options.signal`: an `AbortSignal` or absent.
pub fn signal_option<'e>(env: &Env, options: Option<&Object<'e>>, _arg: &str) -> Result<Option<Object<'e>>> {
  let signal = crate::options::field(env, options, "signal", args::signal)?;
  Ok(signal.map(|AbortSignal(signal)| signal))
}

/// `signal.reason` if the signal has aborted.
pub fn abort_reason<'e>(signal: &Object<'e>) -> Result<Option<Unknown<'e>>> {
  let aborted: Unknown = signal.get_named_property("aborted")?;
  let aborted = aborted.get_type()? == ValueType::Boolean && {
    // SAFETY: the type was just checked to be Boolean.
    unsafe { aborted.cast::<bool>() }?
  };
  if aborted {
    Ok(Some(signal.get_named_property("reason")?))
  } else {
    Ok(None)
  }
}

/// An `abort` listener on a signal, removed with [`AbortHook::release`]. JS thread only.
pub struct AbortHook {
  signal: Strong,
  listener: Strong,
}

impl AbortHook {
  /// Adds a one-shot `abort` listener that calls `on_abort(env, reason)`.
  pub fn listen(env: &Env, signal: &Object<'_>, on_abort: impl FnOnce(&Env, Unknown<'_>) + 'static) -> Result<Self> {
    let on_abort = std::cell::RefCell::new(Some(on_abort));
    let listener = env.create_function_from_closure::<(), (), _>("onabort", move |ctx| {
      let Some(on_abort) = on_abort.borrow_mut().take() else {
        return Ok(());
      };
      let signal: Object = ctx.this()?;
      let reason: Unknown = signal.get_named_property("reason")?;
      on_abort(ctx.env, reason);
      Ok(())
    })?;
    let add: Function<'_, FnArgs<(&str, Unknown<'_>, Object<'_>)>, Unknown<'_>> =
      signal.get_named_property("addEventListener")?;
    let mut once = Object::new(env)?;
    once.set_named_property("once", true)?;
    add.apply(signal, ("abort", listener.to_unknown(), once).into())?;
    Ok(Self {
      signal: Strong::new(env, signal.raw())?,
      listener: Strong::new(env, listener.raw())?,
    })
  }

  /// Removes the listener from the signal and deletes both references.
  pub fn release(self, env: &Env) {
    let removed = (|| -> Result<()> {
      let signal = self.signal.get(env)?;
      // SAFETY: the reference was made from an object (`listen`'s `signal`).
      let signal: Object = unsafe { signal.cast() }?;
      let remove: Function<'_, FnArgs<(&str, Unknown<'_>)>, Unknown<'_>> =
        signal.get_named_property("removeEventListener")?;
      remove
        .apply(signal, ("abort", self.listener.get(env)?).into())
        .map(drop)
    })();
    // A signal whose removeEventListener throws keeps a listener that finds nothing to
    // abort; harmless, so the error is dropped (with any pending exception).
    if removed.is_err() {
      let _ = raw::take_exception(env);
    }
    self.signal.delete(env);
    self.listener.delete(env);
  }
}
