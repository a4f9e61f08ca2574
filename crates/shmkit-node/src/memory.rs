//! `SharedMemory`: a `shmkit::Region` seen from JavaScript as one external `ArrayBuffer`.
//!
//! Lifetime rules (why this file looks the way it does):
//! - The `ArrayBuffer` is created once, over the mapping itself (zero-copy), and held by a
//!   strong reference until `close()` or GC.
//! - Its finalize hint shares a slot holding an `Arc<Region>`: as long as V8 may touch the
//!   bytes, the mapping stays.
//! - `close()` detaches the buffer first (every view reads length 0 from then on) and only
//!   then empties the slot, so the munmap can never happen under a live view.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;
use std::sync::{Arc, Mutex, PoisonError};

use napi::bindgen_prelude::*;
use napi::sys;
use shmkit::{MapOptions, Region};

use crate::args;
use crate::error::{closed, js_error, Class, IntoJs, ERR_SHM_EXTERNAL_BUFFER};

/// What keeps a mapping alive for the `ArrayBuffer` until V8 lets go of it.
type Slot = Arc<Mutex<Option<Arc<Region>>>>;

/// Options for `anonymous`, `devZero` and `memfd`.
#[napi(object, js_name = "MapOptions")]
pub struct JsMapOptions {
  /// `true` maps `MAP_PRIVATE` (copy-on-write): after a `fork`, the parent's and the child's
  /// writes stay their own. Default `false` (`MAP_SHARED`).
  pub private: Option<bool>,
}

/// Options for `create` and `openOrCreate`.
#[napi(object)]
pub struct CreateOptions {
  /// Permission bits of a newly created object, applied exactly (the umask does not narrow
  /// them). An integer from `0` to `0o777`. Default `0o600`: only the owner may open it.
  pub mode: Option<u32>,
  /// `true` allocates every page up front (`posix_fallocate`): creating fails with `ENOSPC`
  /// if the space is not there, and touching the memory later can never fault. Default
  /// `false`: pages are allocated on first touch (creation still fails with `ENOSPC` when
  /// `/dev/shm` has less free space than `size`).
  pub reserve: Option<bool>,
  /// `true` maps `MAP_PRIVATE` (copy-on-write): this process's writes stay its own.
  /// Default `false`. Not available on macOS.
  pub private: Option<bool>,
}

/// Options for `open` and `fromFd`.
#[napi(object)]
pub struct OpenOptions {
  /// `true` opens the object read-only. The mapping is then copy-on-write: writes through
  /// `buffer` stay in this process and never reach the object (so a stray write can never
  /// crash the process). Default `false`. Not available on macOS.
  pub read_only: Option<bool>,
  /// `true` maps `MAP_PRIVATE` (copy-on-write). Default `false`. Not available on macOS.
  pub private: Option<bool>,
}

/// Options for `file`.
#[napi(object)]
pub struct FileOptions {
  /// Permission bits if the file is created, applied exactly. Default `0o600`.
  pub mode: Option<u32>,
  /// `false` fails with `ENOENT` instead of creating a missing file. Default `true` (when a
  /// size is given).
  pub create: Option<bool>,
  /// `true` opens the file read-only and maps it copy-on-write: writes stay in this process.
  /// Default `false`.
  pub read_only: Option<bool>,
  /// `true` maps `MAP_PRIVATE` (copy-on-write): writes never reach the file. Default `false`.
  pub private: Option<bool>,
}

/// Memory shared between processes, mapped into this one.
///
/// Make one with a static factory (one per technique), use `buffer` through typed-array
/// views, and `close()` it (or let `using` do it). Closing detaches `buffer`: views that
/// escaped read length 0 instead of crashing. A name is removed only by `unlink()`.
///
/// ```ts
/// import { SharedMemory } from 'shmkit'
/// using shm = SharedMemory.create('jobs', 1 << 20)   // O_CREAT | O_EXCL, mode 0o600
/// const view = new Uint8Array(shm.buffer)            // zero-copy
/// view[0] = 1
/// ```
#[napi(custom_finalize)]
pub struct SharedMemory {
  region: Option<Arc<Region>>,
  slot: Slot,
  buffer: Option<sys::napi_ref>,
  kind: shmkit::Kind,
  name: Option<String>,
  size: usize,
  private: bool,
  read_only: bool,
}

/// The `ArrayBuffer` finalizer: drops the slot, and with it (if still there) the last
/// reference to the region, which unmaps it.
unsafe extern "C" fn release_slot(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
  // SAFETY: `hint` is the `Box<Slot>` leaked in `new_buffer`, released exactly once here.
  drop(unsafe { Box::from_raw(hint.cast::<Slot>()) });
}

impl SharedMemory {
  pub(crate) fn wrap(env: &Env, region: Region, read_only: bool) -> Result<Self> {
    let region = Arc::new(region);
    let slot: Slot = Arc::new(Mutex::new(Some(region.clone())));
    let buffer = new_buffer(env, &region, &slot)?;
    Ok(Self {
      kind: region.kind(),
      name: region.name().map(str::to_owned),
      size: region.len(),
      private: region.is_private(),
      read_only,
      region: Some(region),
      slot,
      buffer: Some(buffer),
    })
  }

  fn live(&self, env: &Env) -> Result<&Arc<Region>> {
    self.region.as_ref().ok_or_else(|| closed(env, "SharedMemory"))
  }

  /// The region for native users (semaphores placed in it), or `ERR_SHM_CLOSED`.
  pub fn region(&self, env: &Env) -> Result<Arc<Region>> {
    self.live(env).cloned()
  }
}

/// Creates the one external `ArrayBuffer` over `region` and a strong reference to it.
fn new_buffer(env: &Env, region: &Arc<Region>, slot: &Slot) -> Result<sys::napi_ref> {
  let hint = Box::into_raw(Box::new(slot.clone()));
  let mut value = ptr::null_mut();
  // SAFETY: the pointer and length describe the live mapping, which `slot` keeps alive
  // until `release_slot` runs; `hint` is a leaked Box that `release_slot` reclaims.
  let status = unsafe {
    sys::napi_create_external_arraybuffer(
      env.raw(),
      region.as_ptr().cast(),
      region.len(),
      Some(release_slot),
      hint.cast(),
      &raw mut value,
    )
  };
  if status != sys::Status::napi_ok {
    // SAFETY: napi did not take the hint (creation failed), so it is still ours to free.
    drop(unsafe { Box::from_raw(hint) });
    if status == sys::Status::napi_no_external_buffers_allowed {
      // Electron's V8 sandbox: a copy would not be shared memory, so refuse rather than copy.
      return Err(js_error(
        env,
        Class::Error,
        ERR_SHM_EXTERNAL_BUFFER,
        "this runtime forbids external ArrayBuffers, so shared memory cannot be exposed without copying",
        &[],
      ));
    }
    return Err(Error::from_status(Status::from(status)));
  }
  // So that `wait`/`notify` accept views of it. Best effort: a runtime that cannot tag an
  // ArrayBuffer still gets the memory, and those calls refuse its views.
  let _ = crate::word::mark_buffer(env, value, slot);
  let mut reference = ptr::null_mut();
  // SAFETY: `value` was just created in this env; `reference` is a valid out-pointer.
  let status = unsafe { sys::napi_create_reference(env.raw(), value, 1, &raw mut reference) };
  if status != sys::Status::napi_ok {
    return Err(Error::from_status(Status::from(status)));
  }
  Ok(reference)
}

impl JsMapOptions {
  fn parse(env: &Env, options: Option<&Object<'_>>) -> Result<Self> {
    Ok(Self {
      private: args::bool_option(env, options, "private", "options")?,
    })
  }

  fn to_core(&self) -> MapOptions {
    MapOptions::new().private(self.private.unwrap_or(false))
  }
}

impl OpenOptions {
  fn parse(env: &Env, options: Option<&Object<'_>>) -> Result<Self> {
    Ok(Self {
      read_only: args::bool_option(env, options, "readOnly", "options")?,
      private: args::bool_option(env, options, "private", "options")?,
    })
  }

  fn is_read_only(&self) -> bool {
    self.read_only.unwrap_or(false)
  }

  fn to_core(&self) -> MapOptions {
    // A read-only view is copy-on-write, never PROT_READ: a JS write to PROT_READ memory
    // would kill the process with SIGSEGV.
    let private = self.private.unwrap_or(false) || self.is_read_only();
    MapOptions::new().read_only(self.is_read_only()).private(private)
  }
}

impl CreateOptions {
  fn parse(env: &Env, options: Option<&Object<'_>>) -> Result<Self> {
    Ok(Self {
      mode: Some(args::mode_option(env, options, "options")?),
      reserve: args::bool_option(env, options, "reserve", "options")?,
      private: args::bool_option(env, options, "private", "options")?,
    })
  }

  fn to_core(&self) -> MapOptions {
    MapOptions::new()
      .mode(self.mode.unwrap_or(0o600))
      .reserve(self.reserve.unwrap_or(false))
      .private(self.private.unwrap_or(false))
  }
}

impl FileOptions {
  fn parse(env: &Env, options: Option<&Object<'_>>) -> Result<Self> {
    Ok(Self {
      mode: Some(args::mode_option(env, options, "options")?),
      create: args::bool_option(env, options, "create", "options")?,
      read_only: args::bool_option(env, options, "readOnly", "options")?,
      private: args::bool_option(env, options, "private", "options")?,
    })
  }

  fn is_read_only(&self) -> bool {
    self.read_only.unwrap_or(false)
  }

  fn to_core(&self) -> MapOptions {
    MapOptions::new()
      .mode(self.mode.unwrap_or(0o600))
      .create(self.create.unwrap_or(true))
      .read_only(self.is_read_only())
      .private(self.private.unwrap_or(false) || self.is_read_only())
  }
}

#[napi]
impl SharedMemory {
  /// Maps `size` bytes of zeroed anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`): no file,
  /// no name. Shared with children made by `fork()`; a spawned process cannot see it.
  #[napi(factory, ts_args_type = "size: number, options?: MapOptions | undefined | null")]
  pub fn anonymous(env: Env, size: Unknown, options: Option<Unknown>) -> Result<Self> {
    let size = args::size(&env, size, "size")?;
    let options = args::options(&env, options, "options")?;
    let opts = JsMapOptions::parse(&env, options.as_ref())?.to_core();
    Self::wrap(&env, Region::anonymous_with(size, &opts).js(&env)?, false)
  }

  /// Maps `size` bytes of `/dev/zero` `MAP_SHARED` (the descriptor is closed right after).
  /// Shared with children made by `fork()`. Linux only (`ERR_SHM_UNSUPPORTED` on macOS).
  #[napi(factory, ts_args_type = "size: number, options?: MapOptions | undefined | null")]
  pub fn dev_zero(env: Env, size: Unknown, options: Option<Unknown>) -> Result<Self> {
    let size = args::size(&env, size, "size")?;
    let options = args::options(&env, options, "options")?;
    let opts = JsMapOptions::parse(&env, options.as_ref())?.to_core();
    Self::wrap(&env, Region::dev_zero_with(size, &opts).js(&env)?, false)
  }

  /// Creates the named shared-memory object `name` (`'jobs'` or `'/jobs'`) with `size` zero
  /// bytes and maps it. Fails with `EEXIST` if the name exists (`O_CREAT | O_EXCL`). The
  /// object holds exactly your bytes, so C, Rust and Python programs can open it by name.
  #[napi(
    factory,
    ts_args_type = "name: string, size: number, options?: CreateOptions | undefined | null"
  )]
  pub fn create(env: Env, name: Unknown, size: Unknown, options: Option<Unknown>) -> Result<Self> {
    let name = args::object_name(&env, name, "name")?;
    let size = args::size(&env, size, "size")?;
    let options = args::options(&env, options, "options")?;
    let opts = CreateOptions::parse(&env, options.as_ref())?.to_core();
    Self::wrap(&env, Region::create_with(&name, size, &opts).js(&env)?, false)
  }

  /// Opens the existing named object `name` and maps all of it (`size` comes from the
  /// object). Fails with `ENOENT` if there is none. Opening never changes the object, and a
  /// process that only opens should never unlink.
  #[napi(factory, ts_args_type = "name: string, options?: OpenOptions | undefined | null")]
  pub fn open(env: Env, name: Unknown, options: Option<Unknown>) -> Result<Self> {
    let name = args::object_name(&env, name, "name")?;
    let options = args::options(&env, options, "options")?;
    let options = OpenOptions::parse(&env, options.as_ref())?;
    Self::wrap(
      &env,
      Region::open_with(&name, &options.to_core()).js(&env)?,
      options.is_read_only(),
    )
  }

  /// Opens `name` if it exists (keeping its size and mode) or creates it with `size` bytes.
  /// Check `size` afterwards when it matters: an existing object is never resized.
  #[napi(
    factory,
    ts_args_type = "name: string, size: number, options?: CreateOptions | undefined | null"
  )]
  pub fn open_or_create(env: Env, name: Unknown, size: Unknown, options: Option<Unknown>) -> Result<Self> {
    let name = args::object_name(&env, name, "name")?;
    let size = args::size(&env, size, "size")?;
    let options = args::options(&env, options, "options")?;
    let opts = CreateOptions::parse(&env, options.as_ref())?.to_core();
    Self::wrap(&env, Region::open_or_create_with(&name, size, &opts).js(&env)?, false)
  }

  /// Removes the name `name` (`shm_unlink`). Processes that have it mapped keep their
  /// memory until they close it. Fails with `ENOENT` if there is no such name.
  #[napi(js_name = "unlink", ts_args_type = "name: string")]
  pub fn unlink_name(env: Env, name: Unknown) -> Result<()> {
    let name = args::object_name(&env, name, "name")?;
    shmkit::unlink(&name).js(&env)
  }

  /// Maps the file at `path` `MAP_SHARED`. With a `size`, the file is created if missing
  /// (mode `0o600` unless given) and extended to `size` bytes if shorter; without one, the
  /// whole existing file is mapped. `flush()` makes writes durable.
  #[napi(
    factory,
    ts_args_type = "path: string, size?: number | undefined | null, options?: FileOptions | undefined | null"
  )]
  pub fn file(env: Env, path: Unknown, size: Option<Unknown>, options: Option<Unknown>) -> Result<Self> {
    let path = args::string(&env, path, "path")?;
    if path.is_empty() || path.contains('\0') {
      return Err(args::invalid_value(
        &env,
        "path",
        "must be a non-empty string without NUL bytes",
        &format!("'{path}'"),
      ));
    }
    let size = match size {
      Some(size) if !matches!(size.get_type()?, napi::ValueType::Undefined | napi::ValueType::Null) => {
        Some(args::size(&env, size, "size")?)
      }
      _ => None,
    };
    let options = args::options(&env, options, "options")?;
    let options = FileOptions::parse(&env, options.as_ref())?;
    Self::wrap(
      &env,
      Region::file_with(&path, size, &options.to_core()).js(&env)?,
      options.is_read_only(),
    )
  }

  /// Creates an anonymous fd-backed region (`memfd_create` on Linux). It has no name, but
  /// its `fd` can be handed to a spawned child, which maps it with `SharedMemory.fromFd`.
  #[napi(factory, ts_args_type = "size: number, options?: MapOptions | undefined | null")]
  pub fn memfd(env: Env, size: Unknown, options: Option<Unknown>) -> Result<Self> {
    let size = args::size(&env, size, "size")?;
    let options = args::options(&env, options, "options")?;
    let opts = JsMapOptions::parse(&env, options.as_ref())?.to_core();
    Self::wrap(&env, Region::memfd_with(size, &opts).js(&env)?, false)
  }

  /// Maps an inherited descriptor (a memfd, or a shared-memory fd) whole; `size` comes from
  /// the object. The region keeps its own duplicate of `fd`.
  #[napi(factory, ts_args_type = "fd: number, options?: OpenOptions | undefined | null")]
  pub fn from_fd(env: Env, fd: Unknown, options: Option<Unknown>) -> Result<Self> {
    let fd = args::integer(&env, fd, "fd", 0.0, f64::from(i32::MAX))?;
    #[expect(clippy::cast_possible_truncation, reason = "an integer in 0..=i32::MAX")]
    let fd = fd as i32;
    let options = args::options(&env, options, "options")?;
    let options = OpenOptions::parse(&env, options.as_ref())?;
    // The fd must be open for the borrow to be sound; fcntl(F_GETFD) says so without side
    // effects, and EBADF becomes a normal error.
    // SAFETY: F_GETFD only reads descriptor flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
      let e = shmkit::Error::os(shmkit::Errno::last(), "fcntl");
      return Err(crate::error::to_js(&env, &e));
    }
    // SAFETY: the descriptor is open (checked above) and only borrowed for this call, which
    // duplicates it before returning.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    Self::wrap(
      &env,
      Region::from_fd(borrowed, &options.to_core()).js(&env)?,
      options.is_read_only(),
    )
  }

  /// The memory itself: one `ArrayBuffer` over the mapping, the same object on every read.
  /// Wrap it in typed arrays or a `DataView`; nothing is copied. It is not a
  /// `SharedArrayBuffer`, so `Atomics.wait` refuses it (use a `Semaphore` to wait); the other
  /// `Atomics` operations work on it. Throws `ERR_SHM_CLOSED` after `close()`.
  #[napi(getter, ts_return_type = "ArrayBuffer")]
  pub fn buffer(&self, env: Env) -> Result<Unknown<'_>> {
    let (Some(reference), Some(_)) = (self.buffer, &self.region) else {
      return Err(closed(&env, "SharedMemory"));
    };
    let mut value = ptr::null_mut();
    // SAFETY: `reference` is a live strong reference created in this env.
    let status = unsafe { sys::napi_get_reference_value(env.raw(), reference, &raw mut value) };
    if status != sys::Status::napi_ok || value.is_null() {
      return Err(Error::from_status(Status::from(status)));
    }
    // SAFETY: `value` is a valid handle in the current scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
  }

  /// The length in bytes (what was asked for, or the object's size when opening one).
  /// Readable after `close()`.
  #[napi(getter)]
  pub fn size(&self) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "sizes are at most 2**47")]
    let size = self.size as f64;
    size
  }

  /// The shared-memory name with its leading `/` (`'/jobs'`), the file path, or `null`.
  #[napi(getter)]
  pub fn name(&self) -> Option<String> {
    self.name.clone()
  }

  /// Which technique made this region.
  #[napi(getter, ts_return_type = "RegionKind")]
  pub fn kind(&self) -> &'static str {
    self.kind.as_str()
  }

  /// `true` for `MAP_PRIVATE` (copy-on-write) mappings.
  #[napi(getter)]
  pub fn private(&self) -> bool {
    self.private
  }

  /// `true` when opened read-only (writes stay in this process).
  #[napi(getter)]
  pub fn read_only(&self) -> bool {
    self.read_only
  }

  /// `true` once `close()` has run.
  #[napi(getter)]
  pub fn closed(&self) -> bool {
    self.region.is_none()
  }

  /// The descriptor of a `memfd`/`fromFd` region, to pass to a spawned child (for example
  /// in its `stdio` array); `null` for other kinds. Throws `ERR_SHM_CLOSED` after `close()`.
  #[napi(getter)]
  pub fn fd(&self, env: Env) -> Result<Option<i32>> {
    Ok(self.live(&env)?.fd().map(|fd| fd.as_raw_fd()))
  }

  /// Writes changes back to the backing object and waits (`msync(MS_SYNC)`): for files this
  /// makes them durable. Throws `ERR_SHM_CLOSED` after `close()`.
  #[napi]
  pub fn flush(&self, env: Env) -> Result<()> {
    self.live(&env)?.flush().js(&env)
  }

  /// Removes this region's name (`shm_unlink`), for a `named` region. The mapping stays
  /// usable until `close()`. Throws `ERR_SHM_CLOSED` after `close()`, `ENOENT` if the name
  /// is already gone, `ERR_SHM_UNSUPPORTED` for regions without a shared-memory name.
  #[napi(js_name = "unlink")]
  pub fn unlink_self(&self, env: Env) -> Result<()> {
    let region = self.live(&env)?;
    match (region.kind(), region.name()) {
      (shmkit::Kind::Named, Some(name)) => shmkit::unlink(name).js(&env),
      _ => Err(js_error(
        &env,
        Class::Error,
        crate::error::ERR_SHM_UNSUPPORTED,
        "only named regions (SharedMemory.create/open) can be unlinked",
        &[],
      )),
    }
  }

  /// Detaches `buffer` (every view now has length 0), then unmaps. Idempotent. The name, if
  /// any, stays until `unlink()`.
  #[napi]
  pub fn close(&mut self, env: Env) {
    let Some(region) = self.region.take() else {
      return;
    };
    let we_detached = match self.buffer.take() {
      Some(reference) => detach_and_release(&env, reference),
      None => false,
    };
    if we_detached {
      // No view can reach the bytes any more, so the buffer no longer needs the region:
      // unmap now (unless a native user, such as a semaphore in the region, still holds it).
      self.slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
    // Otherwise someone else detached the buffer first (`ArrayBuffer.prototype.transfer`), and
    // a new buffer may own the bytes: the mapping then lives until V8 frees that one.
    drop(region);
  }
}

/// Detaches the referenced buffer and deletes the reference. Returns whether this call did
/// the detaching (false if the buffer was already detached by someone else).
fn detach_and_release(env: &Env, reference: sys::napi_ref) -> bool {
  let raw = env.raw();
  let mut value = ptr::null_mut();
  let mut detached_here = false;
  // SAFETY: `reference` is a live reference created in this env; each call gets valid
  // out-pointers, and the value handle lives in the current scope.
  unsafe {
    if sys::napi_get_reference_value(raw, reference, &raw mut value) == sys::Status::napi_ok && !value.is_null() {
      let mut already = false;
      if sys::napi_is_detached_arraybuffer(raw, value, &raw mut already) == sys::Status::napi_ok && !already {
        detached_here = sys::napi_detach_arraybuffer(raw, value) == sys::Status::napi_ok;
      }
    }
    sys::napi_delete_reference(raw, reference);
  }
  detached_here
}

impl ObjectFinalize for SharedMemory {
  /// GC of a handle that was never closed: release our reference to the buffer. The mapping
  /// lives on while any view of the buffer does, and is unmapped when V8 frees the buffer.
  fn finalize(mut self, env: Env) -> Result<()> {
    if let Some(reference) = self.buffer.take() {
      // SAFETY: `reference` is a live reference created in this env; deleting references
      // is allowed in finalizers.
      unsafe { sys::napi_delete_reference(env.raw(), reference) };
    }
    Ok(())
  }
}
