//! Who may own a named object we open. `/dev/shm` is writable by every local user, so another
//! user can create a name first (mode `0o666`) and have us attach to memory they control.
//! Opening therefore checks the owner (`fstat`, or `stat` of a semaphore's file) and refuses a
//! stranger's object unless the caller named that owner.

use crate::error::{Error, Result};

/// Whose objects `open`/`open_or_create` accept.
///
/// ```
/// use shmkit::{MapOptions, Owner};
/// let opts = MapOptions::new().owner(Owner::Uid(0)); // accept an object root made
/// assert_eq!(opts.get_owner(), Owner::Uid(0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Owner {
  /// Only objects owned by this process's effective user (the default).
  #[default]
  Me,
  /// Objects owned by this user id (and none other).
  Uid(u32),
  /// Any owner: the caller trusts every local user with this name.
  Any,
}

impl Owner {
  /// Refuses an object owned by `uid` unless this policy accepts it.
  pub(crate) fn check(self, uid: u32) -> Result<()> {
    let accepted = match self {
      Owner::Any => true,
      Owner::Uid(expected) => uid == expected,
      Owner::Me => uid == nix::unistd::geteuid().as_raw(),
    };
    if accepted {
      Ok(())
    } else {
      Err(Error::foreign_owner(uid))
    }
  }
}
