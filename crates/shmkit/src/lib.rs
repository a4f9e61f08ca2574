//! # shmkit
//!
//! Shared memory between processes, the way the Unix books describe it, made safe: map memory
//! once and let other processes read and write the same bytes, with semaphores and a robust
//! mutex to take turns. No pipes, no serialisation, no copies. The same core serves the
//! [`shmkit` npm package](https://www.npmjs.com/package/shmkit), so a Rust program and a
//! Node.js program can share one segment and its semaphores by name.
//!
//! ## Techniques
//!
//! Every technique gives the same [`Region`]: a pointer, a length, [`Region::flush`], and
//! `munmap` when dropped.
//!
//! | technique | constructor | shared with | lives until |
//! |---|---|---|---|
//! | anonymous `MAP_SHARED \| MAP_ANONYMOUS` | [`Region::anonymous`] | children made by [`fork`] | the last process unmaps it |
//! | `MAP_SHARED` mapping of `/dev/zero` | [`Region::dev_zero`] | children made by [`fork`] | the last process unmaps it |
//! | named POSIX shared memory (`shm_open`) | [`Region::create`], [`Region::open`], [`Region::open_or_create`] | any process that knows the name | [`unlink`] (or reboot) |
//! | regular file (memmap2) | [`Region::file`] | any process that maps the file | the file is deleted |
//! | fd-backed anonymous (`memfd_create`) | [`Region::memfd`], [`Region::from_fd`] | processes the fd is passed to | the last fd or mapping goes |
//!
//! Each has a `_with` variant taking [`MapOptions`]: `MAP_PRIVATE` (copy-on-write),
//! read-only, the mode of new objects (default `0o600`), and `reserve` (allocate every page up
//! front).
//!
//! To take turns: [`Semaphore`], named or placed inside a region, on glibc's `sem_t` bytes
//! with shmkit's own wait/wake ([`futex`] on a shared word, which any protocol can use; on
//! Linux ≥ 6.7 also without blocking, for an event loop: `futex_ring`; elsewhere a few shared
//! waiter threads: [`futex_pool`]);
//! [`RobustMutex`], shmkit's own futex lock word inside a region that
//! reports a holder that died ([`Lock::OwnerDied`]). [`fork`] runs a closure in a child process and
//! returns a [`Child`] to wait for. [`list`] and [`remove_unused`] find and remove stale names.
//! To pass messages: [`Channel`], a bounded queue in a region for many senders and receivers,
//! that survives any of them being killed mid-message.
//!
//! ## Examples
//!
//! Anonymous memory shared with a forked child:
//!
//! ```
//! use shmkit::{fork, Region};
//!
//! let region = Region::anonymous(4096)?;
//! // SAFETY: this program is single-threaded, so the child may do anything before it exits.
//! let mut child = unsafe { fork(|| i32::from(region.write_at(0, b"hi").is_err())) }?;
//! assert!(child.wait()?.success());
//! let mut bytes = [0u8; 2];
//! region.read_at(0, &mut bytes)?;
//! assert_eq!(&bytes, b"hi");
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! Named shared memory: any process that knows the name maps the same bytes. The creator
//! removes the name; a process that only opened it never does.
//!
//! ```
//! use shmkit::{unique_name, unlink, Region};
//!
//! let name = unique_name("jobs"); // or any portable name, such as "/jobs"
//! let created = Region::create(&name, 1 << 20)?; // O_CREAT | O_EXCL, mode 0o600
//! created.write_at(0, &42u64.to_le_bytes())?;
//!
//! let opened = Region::open(&name)?; // in another process, typically
//! let mut bytes = [0u8; 8];
//! opened.read_at(0, &mut bytes)?;
//! assert_eq!(u64::from_le_bytes(bytes), 42);
//! unlink(&name)?; // mappings stay valid; the memory goes with the last one
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! A named semaphore, posted by another process:
//!
//! ```
//! use std::time::Duration;
//! use shmkit::{fork, unique_name, Semaphore};
//!
//! let name = unique_name("ready");
//! let ready = Semaphore::create(&name, 0)?;
//! // SAFETY: single-threaded; the child opens the semaphore by name, posts and exits.
//! let mut child = unsafe { fork(|| i32::from(Semaphore::open(&name).and_then(|s| s.post()).is_err())) }?;
//! assert!(ready.wait_timeout(Duration::from_secs(10))?, "the child posted");
//! assert!(child.wait()?.success());
//! Semaphore::unlink(&name)?;
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! A semaphore inside the memory it guards, used as a lock by
//! forked children that add to a counter:
//!
//! ```
//! # #[cfg(target_os = "linux")] {
//! use std::sync::Arc;
//! use shmkit::{fork, Region, Semaphore};
//!
//! let region = Arc::new(Region::anonymous(4096)?);
//! let lock = Semaphore::init_in(region.clone(), 0, 1)?; // at byte 0, value 1
//! let add_one = || -> shmkit::Result<()> {
//!   lock.wait()?;
//!   let mut n = [0u8; 8];
//!   region.read_at(64, &mut n)?; // the counter lives at byte 64
//!   region.write_at(64, &(u64::from_ne_bytes(n) + 1).to_ne_bytes())?;
//!   lock.post()
//! };
//! let mut children = Vec::new();
//! for _ in 0..4 {
//!   // SAFETY: single-threaded; each child takes the lock 100 times and exits.
//!   children.push(unsafe { fork(|| i32::from((0..100).try_for_each(|_| add_one()).is_err())) }?);
//! }
//! for mut child in children {
//!   assert!(child.wait()?.success());
//! }
//! let mut n = [0u8; 8];
//! region.read_at(64, &mut n)?;
//! assert_eq!(u64::from_ne_bytes(n), 400);
//! # }
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! A robust mutex: a holder that dies is reported to the next locker, which repairs the data
//! and marks the mutex consistent.
//!
//! ```
//! # #[cfg(any(target_os = "linux", target_os = "macos"))] {
//! use std::sync::Arc;
//! use shmkit::{fork, Lock, Region, RobustMutex};
//!
//! let region = Arc::new(Region::anonymous(4096)?);
//! let mutex = RobustMutex::init_in(region.clone(), 0)?;
//! // SAFETY: single-threaded; the child locks and dies without unlocking.
//! let mut child = unsafe { fork(|| i32::from(mutex.lock().is_err())) }?;
//! assert!(child.wait()?.success());
//! assert_eq!(mutex.lock()?, Lock::OwnerDied); // ours now; check the data, then:
//! mutex.make_consistent()?;
//! mutex.unlock()?;
//! # }
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! A file mapping, durable after [`Region::flush`]:
//!
//! ```
//! let path = std::env::temp_dir().join(format!("shmkit-crate-doc-{}", std::process::id()));
//! let region = shmkit::Region::file(&path, Some(4096))?; // created 0o600 if missing
//! region.write_at(0, b"saved")?;
//! region.flush()?;
//! assert_eq!(&std::fs::read(&path).unwrap()[..5], b"saved");
//! # std::fs::remove_file(&path).unwrap();
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! Memory with a descriptor but no name, for a child started with `exec` (hand it the fd,
//! for example as its stdin, and map it there with [`Region::from_fd`]):
//!
//! ```
//! use shmkit::{MapOptions, Region};
//!
//! let region = Region::memfd(4096)?;
//! region.write_at(0, b"fd")?;
//! let fd = region.fd().expect("a memfd region has a descriptor");
//! let same = Region::from_fd(fd, &MapOptions::new())?; // what the child does with its copy
//! let mut bytes = [0u8; 2];
//! same.read_at(0, &mut bytes)?;
//! assert_eq!(&bytes, b"fd");
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! Leftover names (Linux): list them, and remove your own that no process uses.
//!
//! ```
//! # #[cfg(target_os = "linux")] {
//! for object in shmkit::list("myapp")? {
//!   println!("{} {:?} {} bytes, in use: {:?}", object.name, object.kind, object.size, object.in_use);
//! }
//! let removed = shmkit::remove_unused("myapp", true)?; // dry run: what would go
//! # let _ = removed;
//! # }
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! More in `examples/`: `fork_counter` (the counter above, with a fallback to a named
//! semaphore on macOS), `producer_consumer` (a ring between two unrelated processes, by name),
//! `peer` (the Rust side of the Rust/Node.js interoperability tests) and `seed`.
//!
//! [`fork`] is the plain POSIX fork for Rust programs. Forking from inside a multi-threaded
//! runtime such as Node.js (Linux only) is the `host_fork` module, behind the `host-fork`
//! cargo feature (off by default; the Node.js binding turns it on): `HostFork` and the
//! mechanisms it needs, `DontForkRanges` (memory hidden from children), `CondvarSlots`
//! (condvar calls in a one-thread child), `child_setup` and `write_all`.
//!
//! [`inherited`] reads what a Node.js parent handed to this process with `shareWith`.
//!
//! ## Safety model
//!
//! - **A [`Region`] owns its mapping** and unmaps it exactly once, on drop or
//!   [`Region::close`]. It is `Send` and `Sync`. Code that handed raw pointers to other
//!   threads takes an [`AddressPin`] first: dropping the region then replaces its memory with
//!   zero pages in place, and the addresses are unmapped when the last pin goes.
//! - **Other processes may change the bytes at any time.** The safe accessors copy
//!   ([`Region::read_at`], [`Region::write_at`], bounds-checked); the slice views
//!   ([`Region::as_slice`], [`Region::as_mut_slice`]) are `unsafe`, because a Rust reference
//!   promises that nobody else writes. Use [`Region::as_ptr`] with atomics or volatile
//!   accesses for lock-free protocols, and a [`Semaphore`] or [`RobustMutex`] to take turns.
//! - **In-region objects own their bytes.** A semaphore or mutex placed at an offset keeps its
//!   region mapped (it holds an `Arc<Region>`) for as long as it exists. Writing over its bytes
//!   breaks it, but never crashes or hangs a process: semaphores return `EINVAL` for damaged
//!   bytes, and waits end at their deadline.
//! - **[`fork`] is `unsafe`**: in a multi-threaded process the child may only call
//!   async-signal-safe functions (see its `# Safety`). The child always ends with `_exit`.
//! - **Names are never removed implicitly**, not on drop, not on exit: [`unlink`] and
//!   [`Semaphore::unlink`] are the only ways. Creating never replaces an object (`O_EXCL`), and
//!   new objects get mode `0o600`, applied exactly (the umask does not narrow it).
//! - **No `SIGBUS` surprises from `/dev/shm`**: creating a named region larger than its free
//!   space fails with `ENOSPC` up front, and [`MapOptions::reserve`] allocates every page.
//!   A memfd is sealed against shrinking ([`Region::is_sealed`]); a *named segment or file*
//!   truncated by another process while mapped still faults (`SIGBUS`) on access: keep them
//!   under your control.
//! - **Opening checks the owner**: a named segment or semaphore another user created is refused
//!   ([`ErrorKind::ForeignOwner`]) unless [`MapOptions::owner`] / [`SemOptions::owner`] accepts
//!   that user ([`Owner`]).
//!
//! ## Errors
//!
//! Every fallible call returns [`Result`]`<T, `[`Error`]`>`. An [`Error`] is data: its
//! [`ErrorKind`], the [`Errno`] and the failing system call for OS errors, and the name or path
//! the call was about. It displays like Node.js's `fs` errors and converts into
//! [`std::io::Error`].
//!
//! ```
//! use shmkit::{unique_name, Errno, ErrorKind, Region};
//!
//! let name = unique_name("missing");
//! let err = Region::open(&name).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Os);
//! assert_eq!(err.errno(), Some(Errno::ENOENT));
//! assert_eq!(err.syscall(), Some("shm_open"));
//! assert_eq!(err.name(), Some(name.as_str()));
//! assert_eq!(err.to_string(), format!("ENOENT: no such file or directory, shm_open '{name}'"));
//! ```
//!
//! Arguments shmkit rejects before any system call are [`ErrorKind::InvalidName`] (see
//! [`ObjectName`]), [`ErrorKind::InvalidSize`] and [`ErrorKind::InvalidArgument`]; a mechanism
//! the platform lacks is [`ErrorKind::Unsupported`]; a bounded wait that ran out is
//! [`ErrorKind::TimedOut`] (the `wait_timeout` methods return `false` instead).
//!
//! ## Platforms
//!
//! Linux (glibc and musl) and macOS; not Windows.
//!
//! | | Linux | macOS |
//! |---|---|---|
//! | anonymous, named, file, memfd regions | yes | yes (memfd: an immediately unlinked `shm_open` object; named: size page-rounded, no `MAP_PRIVATE`) |
//! | `/dev/zero` regions | yes | [`ErrorKind::Unsupported`] |
//! | named semaphores | yes (`/dev/shm/sem.NAME`, also with musl) | yes (kernel `sem_open`: timed waits poll; the umask narrows the mode) |
//! | semaphores in a region | yes | yes |
//! | [`futex`] wait/wake on a shared word | yes | yes (`os_sync_wait_on_address`, else `__ulock`) |
//! | `futex_ring`: waits completed through an eventfd | Linux ≥ 6.7 | no |
//! | [`futex_pool`]: waits settled by shared waiter threads | yes (`futex_waitv` ≥ 5.16, else polled) | yes (polled) |
//! | [`RobustMutex`] | yes (glibc and musl) | yes (dead holders found by polling) |
//! | [`list`], [`remove_unused`] | yes (`/dev/shm`) | [`ErrorKind::Unsupported`] |
//!
//! Names follow the strictest platform everywhere: at most [`MAX_NAME_LEN`] (30) bytes,
//! counting the leading `/`.
//!
//! ## Sharing with other languages
//!
//! A named segment holds exactly your bytes, with no header, so C, Python
//! (`multiprocessing.shared_memory`) and Node.js (`shmkit`) programs open it by name. Where a
//! semaphore sits in a region, how big it is on each platform, which names become which OS
//! objects, and what must not be shared between glibc and musl processes is written down in
//! [the layout contract](https://github.com/shmkit/shmkit/blob/main/docs/layout.md).

// One operation per unsafe block, so each SAFETY line argues for exactly one thing.
#![deny(clippy::multiple_unsafe_ops_per_block)]

mod anon;
mod channel;
mod dev_zero;
mod error;
mod fd;
mod file;
pub mod futex;
pub mod futex_pool;
#[cfg(target_os = "linux")]
pub mod futex_ring;
#[cfg(feature = "host-fork")]
pub mod host_fork;
mod inherited;
mod inventory;
mod memfd;
mod mutex;
mod name;
mod owner;
mod posix_shm;
mod process;
mod region;
mod sem;

pub use channel::{
  Channel, Held, Message, Poll, Recv, SendStatus, WaitPlan, CHANNEL_MAX_CAPACITY, CHANNEL_MAX_MESSAGE_SIZE,
};
pub use error::{Error, ErrorKind, Result};
pub use fd::borrow_fd;
pub use futex::WaitOutcome;
pub use inherited::{inherited, parse_inherited, Inherited, INHERITED_ENV};
pub use inventory::{list, remove_unused, ObjectInfo, ObjectKind};
pub use mutex::{Lock, LockAttempt, RobustMutex, Step};
pub use name::{unique_name, ObjectName, MAX_NAME_LEN};
pub use nix::errno::Errno;
pub use nix::sys::signal::Signal;
pub use owner::Owner;
pub use posix_shm::unlink;
pub use process::{fork, Child, ExitStatus, ExitWaiter};
pub use region::{AddressPin, Alias, Kind, MapOptions, Region};
pub use sem::{SemOptions, Semaphore};
