//! # shmkit
//!
//! Shared memory between processes, the way the Unix books describe it, made safe.
//!
//! | technique | constructor | shared with |
//! |---|---|---|
//! | `MAP_SHARED` mapping of `/dev/zero` | [`Region::dev_zero`] | children made by [`fork`] |
//! | anonymous `MAP_SHARED \| MAP_ANONYMOUS` | [`Region::anonymous`] | children made by [`fork`] |
//! | named POSIX shared memory (`shm_open`) | [`Region::create`], [`Region::open`], [`Region::open_or_create`], [`unlink`] | any process that knows the name |
//! | regular file (memmap2) | [`Region::file`] | any process that maps the file |
//! | fd-backed anonymous (`memfd_create`) | [`Region::memfd`], [`Region::from_fd`] | processes the fd is passed to |
//!
//! [`MapOptions::private`] gives `MAP_PRIVATE` (copy-on-write) instead.
//!
//! [`Semaphore`] synchronises the processes: named (`sem_open`) or placed inside a region
//! (`sem_init(pshared = 1)`).
//!
//! [`fork`] is the plain POSIX fork for Rust programs. [`HostFork`] forks from inside a
//! multi-threaded runtime such as Node.js (Linux only), with the mechanisms it needs in their
//! own modules: [`DontForkRanges`] (memory hidden from children), [`CondvarSlots`] (condvar
//! calls in a one-thread child), [`child_setup`] and [`write_all`].
//!
//! ## Safety model
//!
//! A [`Region`] owns its mapping and unmaps it on drop. Its bytes may be changed by other
//! processes at any time, so the safe accessors copy ([`Region::read_at`],
//! [`Region::write_at`]) and the slice views are `unsafe`. Names are never unlinked
//! implicitly. Errors are typed ([`Error`], [`ErrorKind`]) with the errno, the syscall and
//! the object's name.

mod anon;
mod blocking_write;
pub mod child_setup;
mod clock;
mod condvar_got;
mod dev_zero;
mod dontfork;
mod error;
mod file;
pub mod host_fork;
mod inventory;
mod memfd;
mod mutex;
mod name;
mod posix_shm;
mod process;
mod region;
mod sem;

pub use blocking_write::write_all;
pub use condvar_got::CondvarSlots;
pub use dontfork::{DontForkRanges, InheritGuard};
pub use error::{Error, ErrorKind, Result};
pub use host_fork::HostFork;
pub use inventory::{list, remove_unused, ObjectInfo, ObjectKind};
pub use mutex::{mutex_align, mutex_size, Lock, RobustMutex};
pub use name::{unique_name, ObjectName, MAX_NAME_LEN};
pub use nix::errno::Errno;
pub use nix::sys::signal::Signal;
pub use posix_shm::unlink;
pub use process::{fork, Child, ExitStatus, ExitWaiter};
pub use region::{Kind, MapOptions, Region};
pub use sem::{SemOptions, Semaphore};
