//! The mechanisms of forking from inside a runtime, each shown working across a real fork:
//! `DontForkRanges`, `CondvarSlots`, `child_setup`, `write_all`, and `HostFork` as a whole.
#![cfg(target_os = "linux")]
#![cfg_attr(
  not(target_env = "gnu"),
  allow(dead_code, unused_imports, reason = "the glibc-only tests use these helpers")
)]

mod common;

use std::cell::UnsafeCell;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{byte_at, fork_lock, under_user_mode_emulation};
use nix::sys::mman::{madvise, mmap_anonymous, munmap, MapFlags, MmapAdvise, ProtFlags};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::stat::{fstat, SFlag};
use shmkit::host_fork::{child_setup, CondvarSlots, DontForkRanges, HostFork};
use shmkit::{fork, Region};

const PAGE: usize = 4096;
const LONG: Duration = Duration::from_secs(60);

/// One private anonymous page holding `value`, marked `MADV_DONTFORK` as V8 does.
struct HiddenPage(NonNull<std::ffi::c_void>);

impl HiddenPage {
  fn new(value: u8) -> Self {
    let len = PAGE.try_into().unwrap();
    // SAFETY: a fresh private mapping, unmapped in Drop.
    let ptr = unsafe {
      mmap_anonymous(
        None,
        len,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
      )
    }
    .unwrap();
    // SAFETY: the page is ours, readable and writable.
    unsafe { ptr.cast::<u8>().write_volatile(value) };
    // SAFETY: only changes what children inherit.
    unsafe { madvise(ptr, PAGE, MmapAdvise::MADV_DONTFORK) }.unwrap();
    Self(ptr)
  }

  fn addr(&self) -> usize {
    self.0.as_ptr() as usize
  }

  fn read(&self) -> u8 {
    // SAFETY: mapped and readable until Drop (in a child: only if it was inherited).
    unsafe { self.0.cast::<u8>().read_volatile() }
  }
}

impl Drop for HiddenPage {
  fn drop(&mut self) {
    // SAFETY: our own mapping of PAGE bytes.
    let _ = unsafe { munmap(self.0, PAGE) };
  }
}

fn covers(ranges: &DontForkRanges, addr: usize) -> bool {
  ranges.ranges().iter().any(|r| r.contains(&addr))
}

#[test]
fn parse_keeps_only_private_anonymous_dontfork_ranges() {
  let smaps = "\
1000-2000 rw-p 00000000 00:00 0 \n\
Size: 4 kB\n\
VmFlags: rd wr mr mw me dc ac sd \n\
2000-3000 rw-p 00000000 00:00 0                  [anon:v8]\n\
VmFlags: rd wr mr mw me dc \n\
5000-6000 rw-p 00000000 00:00 0                  [heap]\n\
VmFlags: rd wr mr mw me dc \n\
6000-7000 rw-s 00000000 00:01 77                 /dev/zero (deleted)\n\
VmFlags: rd wr sh dc \n\
7000-8000 r--p 00001000 08:01 1234               /usr/lib/libc.so.6\n\
VmFlags: rd mr mw me dc \n\
8000-9000 rw-p 00000000 00:00 0 \n\
VmFlags: rd wr mr mw me wf \n\
9000-a000 rw-p 00000000 00:00 0 \n\
VmFlags: rd wr mr mw me dd \n";
  let ranges = DontForkRanges::parse(smaps);
  let spans: Vec<(usize, usize)> = ranges.ranges().iter().map(|r| (r.start, r.end)).collect();
  assert_eq!(
    spans,
    [(0x1000, 0x3000)],
    "adjacent dc ranges merge; the rest is skipped"
  );
  assert_eq!(ranges.bytes(), 0x2000);
  assert!(DontForkRanges::parse("").is_empty());
}

#[test]
fn a_dontfork_page_is_missing_in_a_child_unless_inherited() {
  let _lock = fork_lock();
  let page = HiddenPage::new(42);
  let ranges = DontForkRanges::scan().unwrap();
  if under_user_mode_emulation() {
    // The emulator ignores MADV_DONTFORK: the page is inherited and the scan cannot see it.
    assert!(!covers(&ranges, page.addr()), "the emulator's smaps has no guest pages");
    // SAFETY: the child reads one byte and returns; no allocation, no locks.
    let mut child = unsafe { fork(|| i32::from(page.read())) }.unwrap();
    assert_eq!(child.wait_timeout(LONG).unwrap().code(), Some(42));
    return;
  }
  assert!(covers(&ranges, page.addr()), "the scan finds the page");

  // SAFETY: the child reads one byte and returns; no allocation, no locks.
  let mut child = unsafe { fork(|| i32::from(page.read())) }.unwrap();
  let status = child.wait_timeout(LONG).unwrap();
  assert_eq!(
    status.signal(),
    Some(Signal::SIGSEGV),
    "without the flip the child has no page"
  );

  let guard = ranges.inherit();
  // SAFETY: as above.
  let mut child = unsafe { fork(|| i32::from(page.read())) }.unwrap();
  drop(guard);
  assert_eq!(
    child.wait_timeout(LONG).unwrap().code(),
    Some(42),
    "with the flip it has a copy"
  );

  assert!(
    covers(&DontForkRanges::scan().unwrap(), page.addr()),
    "dropping the guard marked it DONTFORK again"
  );
  // SAFETY: as above.
  let mut child = unsafe { fork(|| i32::from(page.read())) }.unwrap();
  assert_eq!(child.wait_timeout(LONG).unwrap().signal(), Some(Signal::SIGSEGV));
}

/// A condvar with one thread blocked in `pthread_cond_wait`, as Node's idle platform threads
/// are at the moment of a fork.
struct Waited {
  mutex: UnsafeCell<libc::pthread_mutex_t>,
  cond: UnsafeCell<libc::pthread_cond_t>,
  done: AtomicBool,
}

// SAFETY: the pthread objects are made for sharing between threads; all access goes through
// the pthread functions.
unsafe impl Sync for Waited {}

impl Waited {
  fn start() -> (&'static Waited, std::thread::JoinHandle<()>) {
    let waited: &'static Waited = Box::leak(Box::new(Waited {
      mutex: UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER),
      cond: UnsafeCell::new(libc::PTHREAD_COND_INITIALIZER),
      done: AtomicBool::new(false),
    }));
    let ready = std::sync::Arc::new(AtomicBool::new(false));
    let thread = {
      let ready = ready.clone();
      std::thread::spawn(move || {
        // SAFETY: valid, initialised pthread objects that live forever.
        unsafe {
          libc::pthread_mutex_lock(waited.mutex.get());
          ready.store(true, Ordering::SeqCst);
          while !waited.done.load(Ordering::SeqCst) {
            libc::pthread_cond_wait(waited.cond.get(), waited.mutex.get());
          }
          libc::pthread_mutex_unlock(waited.mutex.get());
        }
      })
    };
    while !ready.load(Ordering::SeqCst) {
      std::thread::yield_now();
    }
    // The waiter releases the mutex only inside pthread_cond_wait: once we get it, it waits.
    // SAFETY: as above.
    unsafe {
      libc::pthread_mutex_lock(waited.mutex.get());
      libc::pthread_mutex_unlock(waited.mutex.get());
    }
    (waited, thread)
  }

  fn bytes(&self) -> [u8; std::mem::size_of::<libc::pthread_cond_t>()] {
    // SAFETY: reads the condvar's bytes; a racy read is fine for a before/after comparison
    // made while no other thread signals.
    unsafe { std::ptr::read_volatile(self.cond.get().cast()) }
  }

  /// `pthread_cond_signal`, called through this binary's GOT like Node's own calls.
  fn signal(&self) -> i32 {
    // SAFETY: a valid condvar.
    unsafe { libc::pthread_cond_signal(self.cond.get()) }
  }

  fn finish(&self, thread: std::thread::JoinHandle<()>) {
    self.done.store(true, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe {
      libc::pthread_mutex_lock(self.mutex.get());
      libc::pthread_cond_broadcast(self.cond.get());
      libc::pthread_mutex_unlock(self.mutex.get());
    }
    thread.join().unwrap();
  }
}

#[test]
#[cfg(target_env = "gnu")]
fn condvar_slots_are_found_and_redirected_only_in_the_child() {
  let _lock = fork_lock();
  let (waited, thread) = Waited::start();
  let slots = CondvarSlots::find().unwrap();
  assert!(!slots.is_empty());
  assert!(
    slots.objects().iter().any(String::is_empty),
    "the test program itself imports them"
  );
  assert!(!slots.all_redirected());

  let body = || {
    // SAFETY: this is a one-thread fork child; the objects are the parent's, still loaded.
    if unsafe { slots.redirect() }.is_err() || !slots.all_redirected() {
      return 1;
    }
    let before = waited.bytes();
    // A real signal to a condvar with a (dead) waiter changes its state; the no-op does not.
    let ret = waited.signal();
    if ret != 0 || waited.bytes() != before {
      return 2;
    }
    0
  };
  // SAFETY: the waiter thread holds no lock the child needs (it sleeps in the kernel), and
  // the child neither allocates nor takes locks.
  let mut child = unsafe { fork(body) }.unwrap();
  let status = child.wait_timeout(LONG);
  if status.is_err() {
    let _ = child.kill(Signal::SIGKILL);
    let _ = child.wait();
  }
  assert_eq!(status.unwrap().code(), Some(0));
  assert!(!slots.all_redirected(), "the parent's slots are untouched");

  let before = waited.bytes();
  assert_eq!(waited.signal(), 0);
  assert_ne!(waited.bytes(), before, "in the parent the real function runs");
  waited.finish(thread);
}

#[test]
fn replace_inherited_sockets_nulls_sockets_and_fifos_only() {
  let _lock = fork_lock();
  let (socket, _peer) = UnixStream::pair().unwrap();
  let (pipe_read, _pipe_write) = nix::unistd::pipe().unwrap();
  let file = File::open("/proc/self/status").unwrap();
  let fds = [socket.as_raw_fd(), pipe_read.as_raw_fd(), file.as_raw_fd()];

  let body = || {
    // SAFETY: a fork child that uses none of these descriptors afterwards.
    let Ok(replaced) = (unsafe { child_setup::replace_inherited_sockets(&[]) }) else {
      return 1;
    };
    let kind = |fd: RawFd| {
      // SAFETY: the descriptor is open (just replaced or untouched).
      let st = fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).unwrap();
      SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
    };
    let nulled = kind(fds[0]) == SFlag::S_IFCHR && kind(fds[1]) == SFlag::S_IFCHR;
    let file_kept = kind(fds[2]) == SFlag::S_IFREG;
    if replaced >= 2 && nulled && file_kept {
      0
    } else {
      2
    }
  };
  // SAFETY: test threads may exist; the child makes syscalls and closures only (fstat's
  // unwrap cannot fail on an open fd).
  let mut child = unsafe { fork(body) }.unwrap();
  assert_eq!(child.wait_timeout(LONG).unwrap().code(), Some(0));
  // The parent's descriptors are still the socket and the pipe.
  let st = fstat(socket.as_fd()).unwrap();
  assert_eq!(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT, SFlag::S_IFSOCK);
}

extern "C" fn count_usr1(_: libc::c_int) {}

#[test]
fn reset_signal_handlers_restores_defaults_keeps_sigpipe_ignored_and_fault_handlers() {
  let _lock = fork_lock();
  let handler = SigAction::new(SigHandler::Handler(count_usr1), SaFlags::empty(), SigSet::empty());
  // SAFETY: an empty extern "C" handler is async-signal-safe.
  let old_usr2 = unsafe { sigaction(Signal::SIGUSR2, &handler) }.unwrap();
  // SAFETY: as above.
  let old_pipe = unsafe { sigaction(Signal::SIGPIPE, &handler) }.unwrap();

  let body = || {
    if child_setup::reset_signal_handlers().is_err() {
      return 1;
    }
    let query = |signal: i32| {
      // SAFETY: a zeroed sigaction is a valid out-value for a query.
      let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
      // SAFETY: a query with a valid out-pointer.
      unsafe { libc::sigaction(signal, std::ptr::null(), &raw mut current) };
      current.sa_sigaction
    };
    if query(libc::SIGUSR2) != libc::SIG_DFL || query(libc::SIGPIPE) != libc::SIG_IGN {
      return 2;
    }
    // Rust's own stack-overflow handler for SIGSEGV is a fault handler: it stays.
    if query(libc::SIGSEGV) == libc::SIG_DFL {
      return 4;
    }
    // The default action of SIGUSR2 ends the process: the parent sees the signal.
    // SAFETY: raise only sends a signal to this process.
    unsafe { libc::raise(libc::SIGUSR2) };
    3
  };
  // SAFETY: the child makes syscalls only.
  let mut child = unsafe { fork(body) }.unwrap();
  let status = child.wait_timeout(LONG).unwrap();
  // SAFETY: restores the previous dispositions.
  unsafe {
    sigaction(Signal::SIGUSR2, &old_usr2).unwrap();
    sigaction(Signal::SIGPIPE, &old_pipe).unwrap();
  }
  assert_eq!(status.signal(), Some(Signal::SIGUSR2), "{status:?}");
}

#[test]
fn die_with_parent_refuses_when_the_parent_is_not_the_expected_one() {
  let _lock = fork_lock();
  let body = || match child_setup::die_with_parent(nix::unistd::Pid::from_raw(1)) {
    Err(e) if e.errno() == Some(nix::errno::Errno::ESRCH) => 0,
    _ => 1,
  };
  // SAFETY: the child makes syscalls only.
  let mut child = unsafe { fork(body) }.unwrap();
  assert_eq!(child.wait_timeout(LONG).unwrap().code(), Some(0));
}

#[test]
fn write_all_delivers_every_byte_through_a_full_non_blocking_pipe() {
  let _lock = fork_lock();
  let (read, write) = nix::unistd::pipe().unwrap();
  let flags = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_GETFL).unwrap();
  let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
  nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
  let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();

  // SAFETY: the child writes from memory allocated before the fork; write_all does not
  // allocate.
  let mut child = unsafe { fork(|| i32::from(shmkit::host_fork::write_all(write.as_fd(), &data).is_err())) }.unwrap();
  drop(write);
  let mut received = Vec::new();
  File::from(read).read_to_end(&mut received).unwrap();
  assert_eq!(child.wait_timeout(LONG).unwrap().code(), Some(0));
  assert_eq!(received.len(), data.len());
  assert!(received == data);
}

#[test]
#[cfg(target_env = "gnu")]
fn host_fork_runs_the_protocol() {
  let _lock = fork_lock();
  let host = HostFork::prepare().unwrap();
  assert!(!host.condvar_slots().is_empty());
  let (waited, thread) = Waited::start();
  let region = Region::anonymous(PAGE).unwrap();
  let page = HiddenPage::new(9);
  let (socket, _peer) = UnixStream::pair().unwrap();
  let socket_fd = socket.as_raw_fd();

  let body = || {
    // Inherited despite MADV_DONTFORK; sockets are /dev/null; condvar calls are no-ops even
    // with a dead waiter; the shared region carries the answer.
    // SAFETY: the descriptor is open in the child.
    let st = fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(socket_fd) }).unwrap();
    let nulled = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    let before = waited.bytes();
    let signalled = waited.signal() == 0 && waited.bytes() == before;
    region
      .write_at(0, &[page.read(), u8::from(nulled), u8::from(signalled)])
      .unwrap();
    5
  };
  // SAFETY: the other threads (the waiter, test threads) hold nothing the body needs.
  let mut child = unsafe { host.fork(body) }.unwrap();
  let status = child.wait_timeout(LONG);
  if status.is_err() {
    let _ = child.kill(Signal::SIGKILL);
    let _ = child.wait();
  }
  assert_eq!(status.unwrap().code(), Some(5));
  assert_eq!(
    [byte_at(&region, 0), byte_at(&region, 1), byte_at(&region, 2)],
    [9, 1, 1]
  );
  assert_eq!(
    covers(&DontForkRanges::scan().unwrap(), page.addr()),
    !under_user_mode_emulation(),
    "the parent's page is DONTFORK again (the emulator ignores MADV_DONTFORK)"
  );
  waited.finish(thread);
}

#[test]
#[cfg(target_env = "gnu")]
fn host_fork_child_dies_with_its_parent() {
  let _lock = fork_lock();
  let host = HostFork::prepare().unwrap();
  // The middle process forks a grandchild that publishes its pid and sleeps, then exits;
  // PR_SET_PDEATHSIG must kill the grandchild.
  let shared = Region::anonymous(PAGE).unwrap();
  let middle = || {
    let grandchild = || {
      let _ = shared.write_at(0, &std::process::id().to_ne_bytes());
      loop {
        // SAFETY: pause only sleeps.
        unsafe { libc::pause() };
      }
    };
    // SAFETY: a one-thread child forking again.
    let Ok(_) = (unsafe { host.fork(grandchild) }) else {
      return 1;
    };
    // Wait (bounded) until the grandchild has published its pid, then end.
    for _ in 0..60_000 {
      let mut pid = [0u8; 4];
      let _ = shared.read_at(0, &mut pid);
      if pid != [0; 4] {
        return 0;
      }
      std::thread::sleep(Duration::from_millis(1));
    }
    2
  };
  // SAFETY: the middle child forks (glibc's fork keeps malloc usable) and sleeps.
  let mut child = unsafe { fork(middle) }.unwrap();
  assert_eq!(child.wait_timeout(LONG).unwrap().code(), Some(0));
  let mut pid = [0u8; 4];
  shared.read_at(0, &mut pid).unwrap();
  let grandchild = i32::from_ne_bytes(pid);
  // Dead means gone from /proc or a zombie waiting for its new parent to reap it.
  let dead = || match std::fs::read_to_string(format!("/proc/{grandchild}/stat")) {
    Err(_) => true,
    Ok(stat) => stat
      .rsplit_once(')')
      .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
  };
  let deadline = std::time::Instant::now() + LONG;
  while !dead() && std::time::Instant::now() < deadline {
    std::thread::sleep(Duration::from_millis(5));
  }
  let survived = !dead();
  if survived {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(grandchild), Signal::SIGKILL);
  }
  assert!(!survived, "the grandchild outlived its parent");
}

#[test]
fn preconditions() {
  assert!(!shmkit::host_fork::sigchld_is_ignored());
  let on_a_thread = std::thread::spawn(shmkit::host_fork::is_main_thread).join().unwrap();
  assert!(!on_a_thread);
  let _lock = fork_lock();
  // A fork child has one thread, its initial one.
  // SAFETY: the child makes two syscalls.
  let mut child = unsafe { fork(|| i32::from(shmkit::host_fork::is_main_thread())) }.unwrap();
  assert_eq!(child.wait_timeout(LONG).unwrap().code(), Some(1));
}

/// A statically linked program (musl test binaries here) calls the condvar functions directly,
/// through no GOT slot: the dry run finds nothing, so a host fork is refused rather than made
/// unprotected.
#[test]
#[cfg(not(target_env = "gnu"))]
fn host_fork_is_refused_when_no_condvar_slot_is_found() {
  assert!(CondvarSlots::find().is_err() || CondvarSlots::find().is_ok_and(|s| s.is_empty()));
  assert!(HostFork::prepare().is_err());
}
