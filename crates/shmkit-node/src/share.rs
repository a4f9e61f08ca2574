//! The one native piece of `shareWith` (in `share.js`): the descriptor a memfd region maps,
//! borrowed for `stdio`. Everything else about handing regions to a spawned child is plain
//! JavaScript over the public API.
use napi::bindgen_prelude::*;

use crate::memory::SharedMemory;

/// The region's own descriptor (not a duplicate: `spawn` duplicates it into the child, and
/// nothing is left for anyone to close), or `null` when the region has none. Throws
/// `ERR_SHM_CLOSED` after `close()`. Taken by `share.js` and not exported.
#[napi(skip_typescript)]
pub fn hand_over_descriptor(env: Env, region: &SharedMemory) -> Result<Option<i32>> {
  region.raw_fd(&env)
}
