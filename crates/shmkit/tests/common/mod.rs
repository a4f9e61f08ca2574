//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::sync::{Mutex, MutexGuard};

use shmkit::{unique_name, ObjectName};

/// Held by every test that forks, until its children are reaped, so that one test's
/// `waitpid` never meets another test's child (the nix test-suite habit).
pub static FORK: Mutex<()> = Mutex::new(());

pub fn fork_lock() -> MutexGuard<'static, ()> {
  FORK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A unique shared-memory name that is unlinked when the guard drops, even if the test fails.
pub struct NameGuard(pub ObjectName);

impl NameGuard {
  pub fn new() -> Self {
    Self(unique_name("rt"))
  }
}

impl Drop for NameGuard {
  fn drop(&mut self) {
    let _ = shmkit::unlink(&self.0);
  }
}

/// Reads one byte at `offset`.
pub fn byte_at(region: &shmkit::Region, offset: usize) -> u8 {
  let mut b = [0u8];
  region.read_at(offset, &mut b).unwrap();
  b[0]
}

/// Set (to `qemu-user`) by `.ci/run` when the tests run under user-mode emulation, which
/// cannot do everything a kernel does: it accepts `madvise(MADV_DONTFORK)` but ignores it,
/// `/proc/self/smaps` shows the emulator's own mappings, and `mremap` with an old size of 0
/// is refused. Tests expect those outcomes there.
pub fn under_user_mode_emulation() -> bool {
  std::env::var_os("SHMKIT_TEST_EMULATOR").is_some_and(|v| v == "qemu-user")
}
