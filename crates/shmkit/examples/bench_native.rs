//! The native floor for `npm run bench`: the same cases as the Node benchmarks in `bench/`,
//! through the Rust core directly. Prints `RESULT\t<id>\t<value>\t<unit>` lines.
//!
//! ```text
//! cargo run --release -p shmkit --example bench_native -- pingpong <iters> <warm> [same|diff|spin]...
//! cargo run --release -p shmkit --example bench_native -- bulk <MiB> <reps>
//! cargo run --release -p shmkit --example bench_native -- lifecycle <ops>
//! cargo run --release -p shmkit --example bench_native -- fork <heap MB> <ops>
//! ```
//!
//! Ping-pong: a parent and a forked child pass a turn back and forth through two in-region
//! semaphores (`same`: both pinned to CPU 0; `diff`: parent on CPU 0, child on CPU 1), or by
//! spinning on one shared word (`spin`, different CPUs). Bulk: `memcpy` between two touched
//! private buffers, and a forked child copying a touched shared region out into its own
//! buffer. Lifecycle: create/open + close cycles per technique, closed by the only owner
//! (`life.native.*`) or with a pin held across the close, as the JS binding must
//! (`life.pinned.*`). Fork: `fork` + `_exit` + `waitpid` after touching a heap of the given
//! size, in one block and scattered in 256 KiB mappings like V8's heap pages.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::num::NonZeroUsize;

#[cfg(target_os = "linux")]
use nix::sched::{sched_setaffinity, CpuSet};
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use nix::time::{clock_gettime, ClockId};
#[cfg(target_os = "linux")]
use nix::unistd::Pid;
use shmkit::{fork, unique_name, unlink, MapOptions, Region, RobustMutex, Semaphore};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const MIB: usize = 1 << 20;

fn result(id: &str, value: f64, unit: &str) {
  println!("RESULT\t{id}\t{value:.6}\t{unit}");
}

fn micros(elapsed: Duration, ops: usize) -> f64 {
  elapsed.as_secs_f64() * 1e6 / count(ops)
}

#[expect(clippy::cast_precision_loss, reason = "operation counts are far below 2**52")]
fn count(n: usize) -> f64 {
  n as f64
}

/// Pins the calling process to `cpu`, or lets it run anywhere (`None`). Linux only; elsewhere
/// placement is left to the scheduler.
#[cfg(not(target_os = "linux"))]
#[expect(clippy::unnecessary_wraps, reason = "same signature as the Linux version")]
fn pin(_cpu: Option<usize>) -> Result<()> {
  Ok(())
}

/// Pins the calling process to `cpu`, or lets it run anywhere (`None`).
#[cfg(target_os = "linux")]
fn pin(cpu: Option<usize>) -> Result<()> {
  let mut set = CpuSet::new();
  match cpu {
    Some(cpu) => set.set(cpu)?,
    None => {
      for cpu in 0..std::thread::available_parallelism().map_or(1, std::num::NonZero::get) {
        set.set(cpu)?;
      }
    }
  }
  sched_setaffinity(Pid::from_raw(0), &set)?;
  Ok(())
}

/// `CLOCK_MONOTONIC` in nanoseconds: comparable between a parent and its child.
fn now_ns() -> u64 {
  let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always there");
  u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec()).unwrap_or(0)
}

/// A word of `region` at `offset` as an atomic.
fn word32(region: &Region, offset: usize) -> &AtomicU32 {
  assert!(offset.is_multiple_of(4) && offset + 4 <= region.len());
  // SAFETY: in bounds and 4-aligned (checked; the mapping is page-aligned), valid while
  // `region` is borrowed; other processes access it only atomically.
  unsafe { AtomicU32::from_ptr(region.as_ptr().add(offset).cast()) }
}

fn word64(region: &Region, offset: usize) -> &AtomicU64 {
  assert!(offset.is_multiple_of(8) && offset + 8 <= region.len());
  // SAFETY: as in `word32`, 8-aligned.
  unsafe { AtomicU64::from_ptr(region.as_ptr().add(offset).cast()) }
}

fn check_child(mut child: shmkit::Child, what: &str) -> Result<()> {
  let status = child.wait()?;
  if !status.success() {
    return Err(format!("{what}: the child failed ({status:?})").into());
  }
  Ok(())
}

/// Round trips through two in-region semaphores: `to_child`, then `to_parent`.
fn pingpong_sem(iters: usize, warm: usize, child_cpu: usize) -> Result<f64> {
  let region = Arc::new(Region::anonymous(4096)?);
  let to_child = Semaphore::init_in(region.clone(), 0, 0)?;
  let to_parent = Semaphore::init_in(region.clone(), 64, 0)?;
  pin(Some(0))?;
  // SAFETY: this program is single-threaded.
  let child = unsafe {
    fork(|| {
      if pin(Some(child_cpu)).is_err() {
        return 2;
      }
      for _ in 0..warm + iters {
        if to_child.wait().is_err() || to_parent.post().is_err() {
          return 1;
        }
      }
      0
    })
  }?;
  for _ in 0..warm {
    to_child.post()?;
    to_parent.wait()?;
  }
  let start = Instant::now();
  for _ in 0..iters {
    to_child.post()?;
    to_parent.wait()?;
  }
  let elapsed = start.elapsed();
  check_child(child, "pingpong sem")?;
  pin(None)?;
  Ok(micros(elapsed, iters))
}

/// One `RobustMutex` lock + unlock with nobody else around, µs.
fn mutex_uncontended(iters: usize) -> Result<f64> {
  let mutex = RobustMutex::init_in(Arc::new(Region::anonymous(4096)?), 0)?;
  for _ in 0..iters / 10 {
    mutex.lock()?;
    mutex.unlock()?;
  }
  let start = Instant::now();
  for _ in 0..iters {
    mutex.lock()?;
    mutex.unlock()?;
  }
  Ok(micros(start.elapsed(), iters))
}

/// Two processes on different CPUs each take and release one `RobustMutex` `iters` times
/// (adding to a counter inside): µs per lock + unlock, over both.
fn mutex_contended(iters: usize) -> Result<f64> {
  let region = Arc::new(Region::anonymous(4096)?);
  let mutex = RobustMutex::init_in(region.clone(), 0)?;
  let counter = word32(&region, 64);
  let go = word32(&region, 128);
  let work = || -> shmkit::Result<()> {
    for _ in 0..iters {
      mutex.lock()?;
      counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
      mutex.unlock()?;
    }
    Ok(())
  };
  pin(Some(0))?;
  // SAFETY: this program is single-threaded.
  let child = unsafe {
    fork(|| {
      if pin(Some(1)).is_err() {
        return 2;
      }
      while go.load(Ordering::Acquire) == 0 {
        std::hint::spin_loop();
      }
      i32::from(work().is_err())
    })
  }?;
  let start = Instant::now();
  go.store(1, Ordering::Release);
  work()?;
  check_child(child, "mutex contended")?;
  let elapsed = start.elapsed();
  pin(None)?;
  if counter.load(Ordering::SeqCst) as usize != 2 * iters {
    return Err("mutex contended: the count is off".into());
  }
  Ok(micros(elapsed, 2 * iters))
}

/// Round trips by spinning on one shared word: the parent writes odd turns, the child even.
fn pingpong_spin(iters: usize, warm: usize) -> Result<f64> {
  let region = Region::anonymous(4096)?;
  let turn = word32(&region, 128);
  pin(Some(0))?;
  // SAFETY: this program is single-threaded.
  let child = unsafe {
    fork(|| {
      if pin(Some(1)).is_err() {
        return 2;
      }
      for k in 0..u32::try_from(warm + iters).unwrap_or(u32::MAX) {
        while turn.load(Ordering::Acquire) != 2 * k + 1 {
          std::hint::spin_loop();
        }
        turn.store(2 * k + 2, Ordering::Release);
      }
      0
    })
  }?;
  let mut start = Instant::now();
  for k in 0..u32::try_from(warm + iters)? {
    if k as usize == warm {
      start = Instant::now();
    }
    turn.store(2 * k + 1, Ordering::Release);
    while turn.load(Ordering::Acquire) != 2 * k + 2 {
      std::hint::spin_loop();
    }
  }
  let elapsed = start.elapsed();
  check_child(child, "pingpong spin")?;
  pin(None)?;
  Ok(micros(elapsed, iters))
}

fn gbps(bytes: usize, ns: u64) -> f64 {
  #[expect(
    clippy::cast_precision_loss,
    reason = "byte counts and nanoseconds are far below 2**52"
  )]
  let rate = bytes as f64 / ns as f64;
  rate
}

fn median(mut values: Vec<f64>) -> f64 {
  values.sort_by(f64::total_cmp);
  values[values.len() / 2]
}

/// memcpy of `size` bytes between two touched private buffers, on one core.
fn bulk_memcpy(size: usize, reps: usize) -> f64 {
  let src = vec![7u8; size];
  let mut dst = vec![1u8; size];
  dst.copy_from_slice(&src); // warm-up
  let mut rates = Vec::new();
  for _ in 0..reps {
    let start = now_ns();
    dst.copy_from_slice(std::hint::black_box(&src));
    let end = now_ns();
    std::hint::black_box(&mut dst);
    rates.push(gbps(size, end - start));
  }
  assert_eq!(dst[size - 1], 7);
  median(rates)
}

/// A forked child copies a touched shared region out into its own touched buffer
/// (`Region::read_at`); clock from the parent's go (post) to the end of the child's copy.
fn bulk_copyout(size: usize, reps: usize) -> Result<f64> {
  let control = Arc::new(Region::anonymous(4096)?);
  let ready = Semaphore::init_in(control.clone(), 0, 0)?;
  let go = Semaphore::init_in(control.clone(), 64, 0)?;
  let data = Region::anonymous(size)?;
  data.write_at(0, &vec![5u8; size])?;
  let end = word64(&control, 256);
  // SAFETY: this program is single-threaded.
  let child = unsafe {
    fork(|| {
      let mut dst = vec![1u8; size];
      for _ in 0..=reps {
        if ready.post().is_err() || go.wait().is_err() || data.read_at(0, &mut dst).is_err() {
          return 1;
        }
        end.store(now_ns(), Ordering::SeqCst);
        if ready.post().is_err() {
          return 1;
        }
      }
      i32::from(dst[size - 1] != 5)
    })
  }?;
  let mut rates = Vec::new();
  for rep in 0..=reps {
    ready.wait()?;
    let start = now_ns();
    go.post()?;
    ready.wait()?;
    if rep > 0 {
      rates.push(gbps(size, end.load(Ordering::SeqCst) - start));
    }
  }
  check_child(child, "bulk copyout")?;
  Ok(median(rates))
}

/// Times `ops` calls of `op` after `ops / 10` warm-up calls: the mean, the means of the first
/// and the last tenth, and the change in mappings from after the warm-up to the end.
fn per_op(ops: usize, mut op: impl FnMut() -> Result<()>) -> Result<(f64, f64, f64, f64)> {
  for _ in 0..ops / 10 {
    op()?;
  }
  let maps_before = maps_count()?;
  let tenth = ops / 10;
  let start = Instant::now();
  let mut first = Duration::ZERO;
  let mut last_from = start;
  for i in 0..ops {
    if i == tenth {
      first = start.elapsed();
    }
    if i == ops - tenth {
      last_from = Instant::now();
    }
    op()?;
  }
  let total = start.elapsed();
  let last = last_from.elapsed();
  #[expect(clippy::cast_precision_loss, reason = "mapping counts are small")]
  let maps_delta = maps_count()? as f64 - maps_before as f64;
  Ok((
    micros(total, ops),
    micros(first, tenth),
    micros(last, tenth),
    maps_delta,
  ))
}

fn maps_count() -> Result<usize> {
  Ok(std::fs::read_to_string("/proc/self/maps")?.lines().count())
}

/// One lifecycle operation, boxed so that the cases fit in one list.
type Op<'a> = Box<dyn FnMut() -> Result<()> + 'a>;

/// How a lifecycle case closes its region.
type Close = fn(Region) -> Result<()>;

/// Closes `region` as its only owner can: one `munmap`.
fn close_owned(region: Region) -> Result<()> {
  Ok(region.close()?)
}

/// Closes `region` as the JS binding must: a pin stands for the views that may outlive the
/// handle, so the close replaces the memory with zero pages in place, and the addresses are
/// unmapped when the pin goes.
fn close_pinned(region: Region) -> Result<()> {
  let pin = region.pin();
  region.close()?;
  drop(pin);
  Ok(())
}

/// Each case twice: `life.native.*` closes as a Rust owner can (`close_owned`), and
/// `life.pinned.*` as the JS binding does (`close_pinned`), the least that any binding whose
/// views outlive `close()` can do.
fn lifecycle(ops: usize) -> Result<()> {
  let name = unique_name("bench");
  let closes: [(&str, Close); 2] = [("native", close_owned), ("pinned", close_pinned)];
  for (label, size) in [("4k", 4096), ("1m", MIB)] {
    let fd_source = Region::memfd(size)?;
    let fd = fd_source.fd().expect("a memfd region has an fd");
    for (kind, close) in closes {
      let existing = Region::create(&name, size)?;
      let cases: Vec<(&str, Op<'_>)> = vec![
        ("create.anonymous", Box::new(|| close(Region::anonymous(size)?))),
        ("create.devzero", Box::new(|| close(Region::dev_zero(size)?))),
        ("create.memfd", Box::new(|| close(Region::memfd(size)?))),
        (
          "open.fd",
          Box::new(|| close(Region::from_fd(fd, &MapOptions::default())?)),
        ),
        ("open.named", Box::new(|| close(Region::open(&name)?))),
      ];
      for (case, op) in cases {
        report_life(&format!("life.{kind}.{case}.{label}"), per_op(ops, op)?);
      }
      drop(existing);
      unlink(&name)?;
      let measured = per_op(ops, || {
        close(Region::create(&name, size)?)?;
        Ok(unlink(&name)?)
      })?;
      report_life(&format!("life.{kind}.create.named.{label}"), measured);
    }
  }
  Ok(())
}

fn report_life(id: &str, (mean, first, last, maps_delta): (f64, f64, f64, f64)) {
  result(id, mean, "us");
  result(&format!("{id}.first10"), first, "us");
  result(&format!("{id}.last10"), last, "us");
  result(&format!("{id}.maps_delta"), maps_delta, "count");
}

/// `fork` + `_exit(0)` + `waitpid`, `ops` times.
fn fork_cycles(ops: usize) -> Result<f64> {
  let cycle = || -> Result<()> {
    // SAFETY: this program is single-threaded; the child only returns.
    let child = unsafe { fork(|| 0) }?;
    check_child(child, "fork")
  };
  Ok(per_op(ops, cycle)?.0)
}

/// Fork cost after allocating and touching `heap_mb` MB in one block.
fn fork_cost(heap_mb: usize, ops: usize) -> Result<f64> {
  let heap = vec![1u8; heap_mb * 1_000_000];
  std::hint::black_box(&heap);
  fork_cycles(ops)
}

/// Fork cost with `heap_mb` MB touched in separate 256 KiB private mappings 1 GiB apart, the
/// way V8 lays out its heap pages: every chunk is its own mapping with its own page tables.
fn fork_cost_scattered(heap_mb: usize, ops: usize) -> Result<f64> {
  const CHUNK: usize = 256 * 1024;
  const BASE: usize = 0x1000_0000_0000;
  let len = NonZeroUsize::new(CHUNK).expect("not zero");
  let mut chunks = Vec::new();
  for i in 0..(heap_mb * 1_000_000).div_ceil(CHUNK) {
    let hint = NonZeroUsize::new(BASE + (i << 30));
    // SAFETY: a fresh private mapping; the address is only a hint (no MAP_FIXED), so nothing
    // already mapped is replaced. It is unmapped below and never used after that.
    let ptr = unsafe {
      mmap_anonymous(
        hint,
        len,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
      )
    }?;
    // SAFETY: the mapping is CHUNK writable bytes that nothing else uses.
    unsafe { ptr.cast::<u8>().write_bytes(1, CHUNK) };
    chunks.push(ptr);
  }
  let mean = fork_cycles(ops);
  for ptr in chunks {
    // SAFETY: each pointer is a CHUNK-long mapping made above, unmapped once.
    unsafe { munmap(ptr, CHUNK) }?;
  }
  mean
}

fn arg(args: &[String], index: usize, default: usize) -> Result<usize> {
  Ok(match args.get(index) {
    Some(text) => text.parse()?,
    None => default,
  })
}

fn main() -> Result<()> {
  let args: Vec<String> = std::env::args().collect();
  match args.get(1).map(String::as_str) {
    Some("pingpong") => {
      let iters = arg(&args, 2, 100_000)?;
      let warm = arg(&args, 3, 10_000)?;
      let cases: Vec<&str> = if args.len() > 4 {
        args[4..].iter().map(String::as_str).collect()
      } else {
        vec!["same", "diff", "spin"]
      };
      for case in cases {
        match case {
          "same" => result("pp.native.sem.same", pingpong_sem(iters, warm, 0)?, "us"),
          "diff" => result("pp.native.sem.diff", pingpong_sem(iters, warm, 1)?, "us"),
          "spin" => result("pp.native.spin.diff", pingpong_spin(iters, warm)?, "us"),
          other => return Err(format!("unknown ping-pong case {other}").into()),
        }
      }
    }
    Some("bulk") => {
      let size = arg(&args, 2, 256)? * MIB;
      let reps = arg(&args, 3, 3)?;
      result("bulk.native.memcpy", bulk_memcpy(size, reps), "GB/s");
      result("bulk.native.copyout", bulk_copyout(size, reps)?, "GB/s");
    }
    Some("lifecycle") => lifecycle(arg(&args, 2, 10_000)?)?,
    Some("mutex") => {
      let iters = arg(&args, 2, 100_000)?;
      result("mutex.native.uncontended", mutex_uncontended(iters)?, "us");
      result("mutex.native.contended.diff", mutex_contended(iters)?, "us");
    }
    Some("fork") => {
      let heap_mb = arg(&args, 2, 50)?;
      let ops = arg(&args, 3, 100)?;
      result("fork.native.small", fork_cost(0, ops)?, "us");
      result(&format!("fork.native.{heap_mb}m"), fork_cost(heap_mb, ops)?, "us");
      result(
        &format!("fork.native.{heap_mb}m_scattered"),
        fork_cost_scattered(heap_mb, ops)?,
        "us",
      );
    }
    _ => return Err("usage: bench_native pingpong|bulk|lifecycle|mutex|fork [args]".into()),
  }
  Ok(())
}
