//! Node.js binding of shmkit: type conversion, JS object lifetimes, and the one error
//! conversion. All OS work happens in the `shmkit` crate.

// One operation per unsafe block, so each SAFETY line argues for exactly one thing.
#![deny(clippy::multiple_unsafe_ops_per_block)]
#![allow(
  clippy::trivially_copy_pass_by_ref,
  reason = "`&Env` is the napi-rs convention for helpers called from #[napi] functions"
)]
#![allow(
  clippy::needless_pass_by_value,
  reason = "#[napi] functions receive JS values by value"
)]

#[macro_use]
extern crate napi_derive;

mod args;
mod channel;
mod error;
#[cfg_attr(
  test,
  allow(dead_code, reason = "napi-derive registers #[napi] functions only outside cfg(test)")
)]
mod fork;
mod inventory;
mod memory;
mod mutex;
mod options;
#[cfg_attr(
  test,
  allow(
    dead_code,
    reason = "used by fork(), which napi-derive registers only outside cfg(test)"
  )
)]
mod pool;
mod promise;
mod raw;
mod semaphore;
#[cfg_attr(
  test,
  allow(dead_code, reason = "napi-derive registers #[napi] functions only outside cfg(test)")
)]
mod share;
mod waiter;
#[cfg_attr(
  test,
  allow(dead_code, reason = "napi-derive registers #[napi] functions only outside cfg(test)")
)]
mod word;

use napi::bindgen_prelude::*;

/// Installs `[Symbol.dispose]` (an alias of `close`) on the classes, so `using` works.
/// napi-rs has no attribute for symbol-keyed methods; this hook runs after the classes
/// are registered.
#[napi(module_exports)]
pub fn install_dispose(exports: Object, env: Env) -> Result<()> {
  fork::on_load(&env);
  let global = env.get_global()?;
  let symbol: Function<'_, Unknown<'_>, Unknown<'_>> = global.get_named_property("Symbol")?;
  let dispose: Unknown = symbol.get_named_property("dispose")?;
  if dispose.get_type()? != napi::ValueType::Symbol {
    return Ok(()); // a runtime without explicit resource management: nothing to alias
  }
  alias_dispose(&exports, dispose, "SharedMemory")?;
  alias_dispose(&exports, dispose, "RobustMutex")?;
  // Channel's comes from channel.js, whose `close` wraps the native one.
  alias_dispose(&exports, dispose, "Semaphore")
}

fn alias_dispose(exports: &Object, dispose: Unknown, class: &str) -> Result<()> {
  let constructor: Function<'_, Unknown<'_>, Unknown<'_>> = exports.get_named_property(class)?;
  let mut prototype: Object = constructor.get_named_property("prototype")?;
  let close: Unknown = prototype.get_named_property("close")?;
  prototype.set_property(dispose, close)
}
