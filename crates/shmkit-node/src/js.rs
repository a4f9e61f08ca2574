//! Calling JavaScript from the binding: kept as a name for the modules that import it; the
//! helpers live in `raw.rs`.

pub use crate::raw::{call, global};
