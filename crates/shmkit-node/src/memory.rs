//! `SharedMemory`: a `shmkit::Region` seen from JavaScript as one external `ArrayBuffer`.
//!
//! Lifetime rules (why this file looks the way it does):
//! - The `ArrayBuffer` is created once per handle, over the handle's own mapping (zero-copy),
//!   and held by a strong reference until `close()` or GC.
//! - Each buffer has a claim in a process-wide table, found by a plain number (never a
//!   pointer, so a finalizer that runs twice, or a runtime that runs it on a failed creation,
//!   cannot free anything twice). The claim holds the handle's mapping while the handle is
//!   alive, and an `AddressPin` on it until V8 has released both the backing store and the
//!   `ArrayBuffer` object.
//! - Users that may outlive the handle (objects placed in the region, `share()` tokens,
//!   waits on its words) get a second mapping of the same memory (`Region::map_again`), made
//!   on first request, so the handle's own mapping is its buffer's alone.
//! - `close()` never detaches the buffer: native work still in flight (a zlib job between
//!   chunks, an `fs.write`) holds raw pointers into it, and a detached input makes Node abort.
//!   Instead it drops the handle's mapping, which, pinned, is replaced in place by private
//!   zero pages: views keep their length, read zeros, and write only to pages nobody else
//!   sees. The addresses are unmapped when the buffer object is collected. (Where no second
//!   mapping can be made, the other users share the handle's, and the blanking waits for the
//!   last of them.)
//! - V8 counts a buffer's length as external memory until the buffer is collected, closed
//!   or not: churning large regions makes it collect more often (the price of never
//!   detaching; see `bench/README.md`).

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use napi::bindgen_prelude::*;
use napi::sys;
use shmkit::{AddressPin, MapOptions, Region};

use crate::args;
use crate::error::{
  closed, js_error, Class, IntoJs, Prop, ERR_SHM_EXTERNAL_BUFFER, ERR_SHM_INVALID_TOKEN, ERR_SHM_TOO_LARGE,
};
use crate::options::read_options;
use crate::raw;

/// One `ArrayBuffer`'s hold on a region, settled by its two finalizers.
struct Claim {
  /// The handle's own mapping, while the handle is neither closed nor collected.
  region: Option<Arc<Region>>,
  /// The mapping users that may outlive the handle hold (see `Claim::shared`), once asked.
  shared: Option<Arc<Region>>,
  /// The buffer's addresses, kept mapped (blank once the handle's mapping is dropped).
  pin: AddressPin,
  /// How many finalizers (backing store, buffer object) have yet to run.
  pending: u8,
}

/// Every live claim, by key. Keys are never reused.
static CLAIMS: Mutex<BTreeMap<usize, Claim>> = Mutex::new(BTreeMap::new());
static NEXT_CLAIM: AtomicUsize = AtomicUsize::new(1);

fn claims() -> std::sync::MutexGuard<'static, BTreeMap<usize, Claim>> {
  CLAIMS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The finalizer of both the backing store and the buffer object: `hint` is the claim's key.
/// The last of the two drops the claim; an unknown key (already settled) is ignored.
unsafe extern "C" fn settle_claim(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
  let key = hint as usize;
  let done = {
    let mut claims = claims();
    match claims.get_mut(&key) {
      Some(claim) if claim.pending > 1 => {
        claim.pending -= 1;
        None
      }
      Some(_) => claims.remove(&key),
      None => None,
    }
  };
  drop(done); // outside the lock: may unmap
}

/// The handle closed: the claim lets go of its mappings (the handle's own is then blanked
/// under the pin).
fn release_region(key: usize) {
  let released = claims()
    .get_mut(&key)
    .map(|claim| (claim.region.take(), claim.shared.take()));
  drop(released); // outside the lock: may blank or unmap
}

impl Claim {
  /// The mapping for users that may outlive the handle: made on first request
  /// (`Region::map_again`), or the handle's own where no second mapping can be made (then
  /// the blanking at close waits for them). `None` once the handle is closed.
  fn shared(&mut self) -> Option<Arc<Region>> {
    let own = self.region.as_ref()?;
    let shared = self.shared.get_or_insert_with(|| match own.map_again() {
      Ok(Some(again)) => Arc::new(again),
      Ok(None) | Err(_) => own.clone(),
    });
    Some(shared.clone())
  }
}

/// What a buffer's claim says about the memory under `address`.
pub(crate) enum Claimed {
  /// Not a claim of this library, or the address lies outside its buffer.
  Unknown,
  /// The handle that made the buffer is closed.
  Closed,
  /// The region, and the address's offset in it.
  Open(Arc<Region>, usize),
}

/// The region behind the buffer of claim `key`, for an `address` inside that buffer.
pub(crate) fn claimed_region(key: usize, address: usize) -> Claimed {
  let mut claims = claims();
  let Some(claim) = claims.get_mut(&key) else {
    return Claimed::Unknown;
  };
  // The end itself counts: an empty view may start there.
  let base = claim.pin.as_ptr() as usize;
  if address < base || address - base > claim.pin.len() {
    return Claimed::Unknown;
  }
  match claim.shared() {
    Some(region) => Claimed::Open(region, address - base),
    None => Claimed::Closed,
  }
}

/// Drops a claim whose buffer was never made.
fn drop_claim(key: usize) {
  let claim = claims().remove(&key);
  drop(claim);
}

/// Tokens from `share()` not yet redeemed, by their random id.
static TOKENS: Mutex<BTreeMap<u128, (Arc<Region>, bool)>> = Mutex::new(BTreeMap::new());

/// Options for `anonymous`, `devZero` and `memfd`.
#[napi(object, object_to_js = false, object_from_js = false, js_name = "MapOptions")]
#[derive(Default)]
pub struct JsMapOptions {
  /// `true` maps `MAP_PRIVATE` (copy-on-write): after a `fork`, the parent's and the child's
  /// writes stay their own. Default `false` (`MAP_SHARED`).
  pub private: Option<bool>,
  /// `memfd` only: leave the object growable. A memfd is sealed against shrinking once sized
  /// (`F_SEAL_SHRINK`), so a process it is shared with cannot truncate it under this mapping,
  /// and against growing too unless this is `true`. Default `false`.
  pub growable: Option<bool>,
}

read_options!(JsMapOptions {
  private: args::boolean,
  growable: args::boolean
});

/// Options for `create` and `openOrCreate`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
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
  /// Whose object to accept when opening an existing one: a user id, or `'any'`. Default:
  /// only objects owned by this process's user; one created by another user (who could
  /// squat the name in the world-writable `/dev/shm`) is refused with
  /// `ERR_SHM_FOREIGN_OWNER`, whose `owner` property is that user's id.
  #[napi(ts_type = "number | 'any'")]
  pub owner: Option<shmkit::Owner>,
}

read_options!(CreateOptions {
  mode: args::mode,
  reserve: args::boolean,
  private: args::boolean,
  owner: args::owner
});

/// Options for `open` and `fromFd`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
pub struct OpenOptions {
  /// `true` opens the object read-only. The mapping is then copy-on-write: writes through
  /// `buffer` stay in this process and never reach the object (so a stray write can never
  /// crash the process). Default `false`. Not available on macOS.
  pub read_only: Option<bool>,
  /// `true` maps `MAP_PRIVATE` (copy-on-write). Default `false`. Not available on macOS.
  pub private: Option<bool>,
  /// Whose object to accept (`open` only): a user id, or `'any'`. Default:
  /// only objects owned by this process's user; one created by another user (who could
  /// squat the name in the world-writable `/dev/shm`) is refused with
  /// `ERR_SHM_FOREIGN_OWNER`, whose `owner` property is that user's id.
  #[napi(ts_type = "number | 'any'")]
  pub owner: Option<shmkit::Owner>,
}

read_options!(OpenOptions {
  read_only: args::boolean,
  private: args::boolean,
  owner: args::owner
});

/// Options for `file`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
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

read_options!(FileOptions {
  mode: args::mode,
  create: args::boolean,
  read_only: args::boolean,
  private: args::boolean
});

/// Memory shared between processes, mapped into this one.
///
/// Make one with a static factory (one per technique), use `buffer` through typed-array
/// views, and `close()` it (or let `using` do it). After `close()`, views that escaped keep
/// their length but read zeros, and their writes reach only private pages of this process,
/// never the shared memory. A name is removed only by `unlink()`.
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
  claim: usize,
  buffer: Option<raw::Strong>,
  kind: shmkit::Kind,
  name: Option<String>,
  size: usize,
  private: bool,
  read_only: bool,
}

impl SharedMemory {
  pub(crate) fn wrap(env: &Env, region: Region, read_only: bool) -> Result<Self> {
    Self::wrap_own(env, Arc::new(region), None, read_only)
  }

  /// A handle over `region`, which other users may hold too (a redeemed `share()` token):
  /// the handle maps it again for itself where it can, so its close cuts off only its own
  /// views.
  fn wrap_shared(env: &Env, region: Arc<Region>, read_only: bool) -> Result<Self> {
    let (own, shared) = match region.map_again().js(env)? {
      Some(again) => (Arc::new(again), Some(region)),
      None => (region, None),
    };
    Self::wrap_own(env, own, shared, read_only)
  }

  /// A handle whose own mapping is `region`; `shared`, if known, is the one other users get.
  fn wrap_own(env: &Env, region: Arc<Region>, shared: Option<Arc<Region>>, read_only: bool) -> Result<Self> {
    let (buffer, claim) = new_buffer(env, &region, shared)?;
    Ok(Self {
      kind: region.kind(),
      name: region.name().map(str::to_owned),
      size: region.len(),
      private: region.is_private(),
      read_only,
      region: Some(region),
      claim,
      buffer: Some(buffer),
    })
  }

  fn live(&self, env: &Env) -> Result<&Arc<Region>> {
    self.region.as_ref().ok_or_else(|| closed(env, "SharedMemory"))
  }

  /// The region for native users that may outlive this handle (objects placed in it,
  /// `share()` tokens): a mapping of their own, so `close()` cuts off only this handle's
  /// views. `ERR_SHM_CLOSED` after `close()`.
  pub fn region(&self, env: &Env) -> Result<Arc<Region>> {
    claims()
      .get_mut(&self.claim)
      .and_then(Claim::shared)
      .ok_or_else(|| closed(env, "SharedMemory"))
  }

  /// The region's own descriptor, borrowed (`None` for kinds without one), or
  /// `ERR_SHM_CLOSED`.
  pub(crate) fn raw_fd(&self, env: &Env) -> Result<Option<i32>> {
    Ok(self.live(env)?.fd().map(|fd| fd.as_raw_fd()))
  }

  /// A `SharedMemory` argument (checked by napi's type tag, so another class or a look-alike
  /// object is `ERR_INVALID_ARG_TYPE`, never a bad cast).
  pub fn from_arg<'a>(env: &Env, value: Unknown<'a>, arg: &str) -> Result<ClassInstance<'a, Self>> {
    let not_ours = || args::invalid_type(env, arg, "an instance of SharedMemory", value);
    if value.get_type()? != napi::ValueType::Object {
      return Err(not_ours());
    }
    // SAFETY: `value` is a live object handle of this env; napi unwraps it only after
    // confirming the SharedMemory type tag and class identity.
    unsafe { ClassInstance::<Self>::from_napi_value(env.raw(), value.raw()) }.map_err(|_| {
      // A failed type-tag check may leave a JS exception pending; ours replaces it.
      let _ = raw::take_exception(env);
      not_ours()
    })
  }

  /// The region of a `SharedMemory` argument, for objects placed in it.
  pub fn region_arg(env: &Env, value: Unknown<'_>, arg: &str) -> Result<Arc<Region>> {
    Self::from_arg(env, value, arg)?.region(env)
  }
}

/// The largest `ArrayBuffer` this runtime makes over external memory: Node's
/// `buffer.constants.MAX_LENGTH` (2**32 on Node 20, whose external buffers go through
/// `Buffer`; 2**53 - 1 from Node 22).
fn buffer_limit(env: &Env) -> f64 {
  static LIMIT: OnceLock<f64> = OnceLock::new();
  *LIMIT.get_or_init(|| query_buffer_limit(env).unwrap_or_else(|| fallback_buffer_limit(env)))
}

fn query_buffer_limit(env: &Env) -> Option<f64> {
  let process = raw::global(env, "process").ok()?;
  let get: Unknown = process.get_named_property("getBuiltinModule").ok()?;
  if get.get_type().ok()? != napi::ValueType::Function {
    return None;
  }
  let name = env.create_string("buffer").ok()?.to_unknown();
  let buffer = raw::call(env, process.to_unknown(), get, &[name]).ok()?;
  // SAFETY: the module is an object (checked by the property reads, which fail otherwise).
  let buffer: Object = unsafe { buffer.cast() }.ok()?;
  let constants: Object = buffer.get_named_property("constants").ok()?;
  let limit: f64 = constants.get_named_property("MAX_LENGTH").ok()?;
  (limit > 0.0).then_some(limit)
}

fn fallback_buffer_limit(env: &Env) -> f64 {
  let mut version = ptr::null();
  // SAFETY: a valid out-pointer; Node owns the returned struct for the life of the process.
  let status = unsafe { sys::napi_get_node_version(env.raw(), &raw mut version) };
  // SAFETY: on success `version` points to Node's static version struct.
  if status == sys::Status::napi_ok && !version.is_null() && unsafe { (*version).major } < 22 {
    4_294_967_296.0
  } else {
    args::MAX_SIZE
  }
}

/// `ERR_SHM_TOO_LARGE` unless this runtime can make a buffer of `size` bytes.
pub(crate) fn check_buffer_size(env: &Env, size: usize) -> Result<()> {
  let limit = buffer_limit(env);
  #[expect(clippy::cast_precision_loss, reason = "sizes are at most 2**47")]
  let wanted = size as f64;
  if wanted <= limit {
    return Ok(());
  }
  let node22 = if limit <= 4_294_967_296.0 {
    "; Node.js 22 and later lift this limit"
  } else {
    ""
  };
  Err(js_error(
    env,
    Class::RangeError,
    ERR_SHM_TOO_LARGE,
    &format!(
      "a region of {size} bytes cannot be exposed: this runtime's largest ArrayBuffer over external memory is {limit} bytes (buffer.constants.MAX_LENGTH){node22}"
    ),
    &[("size", Prop::Num(wanted)), ("limit", Prop::Num(limit))],
  ))
}

/// Creates the handle's external `ArrayBuffer` over `region` (the handle's own mapping), a
/// strong reference to it, and its claim.
fn new_buffer(env: &Env, region: &Arc<Region>, shared: Option<Arc<Region>>) -> Result<(raw::Strong, usize)> {
  check_buffer_size(env, region.len())?;
  let data = region.as_ptr();
  let key = NEXT_CLAIM.fetch_add(1, Ordering::Relaxed);
  claims().insert(
    key,
    Claim {
      region: Some(region.clone()),
      shared,
      pin: region.pin(),
      pending: 1,
    },
  );
  // SAFETY: the pointer and length describe the live mapping, which the claim's pin keeps
  // mapped until `settle_claim` runs for it; the hint is a number, not a pointer.
  let created =
    unsafe { raw::external_arraybuffer(env, data.cast(), region.len(), Some(settle_claim), key as *mut c_void) };
  let value = match created {
    Ok(value) => value,
    Err(status) => return Err(refused_buffer(env, key, status)),
  };
  // The buffer object may outlive its backing store (a buffer detached by `transfer()` still
  // held by native work in flight): the claim also waits for the object. The same wrap lets
  // `wait`/`notify` find the claim from a view.
  if let Some(claim) = claims().get_mut(&key) {
    claim.pending += 1;
  }
  if let Err(e) = raw::wrap_number(env, value, key, Some(settle_claim)) {
    // SAFETY: the object finalizer will never run, so count it as done (the hint is the key).
    unsafe { settle_claim(env.raw(), ptr::null_mut(), key as *mut c_void) };
    return Err(e);
  }
  Ok((raw::Strong::new(env, value)?, key))
}

/// The error for a buffer the runtime did not make, after dropping its claim.
fn refused_buffer(env: &Env, key: usize, status: sys::napi_status) -> Error {
  // Some runtimes (Node 20 past 4 GiB) ran the finalizer already; dropping by key is safe
  // either way.
  drop_claim(key);
  let _ = raw::take_exception(env);
  if status == sys::Status::napi_no_external_buffers_allowed {
    // Electron's V8 sandbox: a copy would not be shared memory, so refuse rather than copy.
    return js_error(
      env,
      Class::Error,
      ERR_SHM_EXTERNAL_BUFFER,
      "this runtime forbids external ArrayBuffers, so shared memory cannot be exposed without copying",
      &[],
    );
  }
  Error::from_status(Status::from(status))
}

/// 128 random bits from the kernel, for share tokens.
fn random_id() -> u128 {
  let mut bytes = [0u8; 16];
  #[cfg(target_os = "linux")]
  {
    let mut filled = 0;
    while filled < bytes.len() {
      // The raw syscall, not libc's wrapper: prebuilt binaries target glibc 2.17, which predates
      // getrandom(3).
      // SAFETY: writes at most the remaining bytes of `bytes`.
      let n = unsafe {
        libc::syscall(
          libc::SYS_getrandom,
          bytes[filled..].as_mut_ptr(),
          bytes.len() - filled,
          0,
        )
      };
      if let Ok(n) = usize::try_from(n) {
        filled += n;
      }
    }
  }
  #[cfg(not(target_os = "linux"))]
  // SAFETY: fills exactly `bytes`.
  unsafe {
    libc::arc4random_buf(bytes.as_mut_ptr().cast(), bytes.len());
  }
  u128::from_ne_bytes(bytes)
}

/// What `share()` returns: a plain object to post to a worker thread of this process, where
/// `SharedMemory.from(token)` turns it into a handle over the same mapping.
#[napi(object)]
pub struct SharedMemoryToken {
  /// A random id naming the shared region in this process; redeemable once.
  pub id: String,
  /// The region's kind.
  #[napi(ts_type = "RegionKind")]
  pub kind: String,
  /// The region's size in bytes.
  pub size: f64,
  /// The region's name or path, or `null`.
  pub name: Option<String>,
}

impl JsMapOptions {
  fn to_core(&self) -> MapOptions {
    MapOptions::new()
      .private(self.private.unwrap_or(false))
      .growable(self.growable.unwrap_or(false))
  }
}

impl OpenOptions {
  fn is_read_only(&self) -> bool {
    self.read_only.unwrap_or(false)
  }

  fn to_core(&self) -> MapOptions {
    // A read-only view is copy-on-write, never PROT_READ: a JS write to PROT_READ memory
    // would kill the process with SIGSEGV.
    let private = self.private.unwrap_or(false) || self.is_read_only();
    MapOptions::new()
      .read_only(self.is_read_only())
      .private(private)
      .owner(self.owner.unwrap_or(shmkit::Owner::Me))
  }
}

impl CreateOptions {
  fn to_core(&self) -> MapOptions {
    MapOptions::new()
      .mode(self.mode.unwrap_or(0o600))
      .reserve(self.reserve.unwrap_or(false))
      .private(self.private.unwrap_or(false))
      .owner(self.owner.unwrap_or(shmkit::Owner::Me))
  }
}

impl FileOptions {
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
    check_buffer_size(&env, size)?;
    Self::wrap(&env, Region::anonymous_with(size, &opts).js(&env)?, false)
  }

  /// Maps `size` bytes of `/dev/zero` `MAP_SHARED` (the descriptor is closed right after).
  /// Shared with children made by `fork()`. Linux only (`ERR_SHM_UNSUPPORTED` on macOS).
  #[napi(factory, ts_args_type = "size: number, options?: MapOptions | undefined | null")]
  pub fn dev_zero(env: Env, size: Unknown, options: Option<Unknown>) -> Result<Self> {
    let size = args::size(&env, size, "size")?;
    let options = args::options(&env, options, "options")?;
    let opts = JsMapOptions::parse(&env, options.as_ref())?.to_core();
    check_buffer_size(&env, size)?;
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
    // No size pre-check: the OS says ENOSPC first when /dev/shm is too small, and a buffer the
    // runtime cannot make fails below, after which the name is removed.
    Self::wrap(&env, Region::create_with(&name, size, &opts).js(&env)?, false).inspect_err(|_| {
      // Ours since O_EXCL succeeded: leave nothing behind.
      let _ = shmkit::unlink(&name);
    })
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
    check_buffer_size(&env, size)?;
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
    if let Some(size) = size {
      check_buffer_size(&env, size)?;
    }
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
    check_buffer_size(&env, size)?;
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
    // SAFETY: the descriptor is only borrowed for this call, which duplicates it before
    // returning; borrow_fd checks that it is open (EBADF otherwise).
    let borrowed = unsafe { shmkit::borrow_fd(fd) }.js(&env)?;
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
    match (&self.buffer, &self.region) {
      (Some(buffer), Some(_)) => buffer.get(&env),
      _ => Err(closed(&env, "SharedMemory")),
    }
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

  /// A duplicate of the descriptor of a `memfd`/`fromFd` region, to pass to a spawned child
  /// (for example in its `stdio` array); `null` for other kinds. Every read makes a new
  /// descriptor (close-on-exec) that the caller owns: close it with `fs.closeSync(fd)` when
  /// done. The region's own descriptor is never handed out. Throws `ERR_SHM_CLOSED` after
  /// `close()`.
  #[napi(getter)]
  pub fn fd(&self, env: Env) -> Result<Option<i32>> {
    let Some(fd) = self.raw_fd(&env)? else {
      return Ok(None);
    };
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor the region owns; the result is a new descriptor.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
      let e = shmkit::Error::os(shmkit::Errno::last(), "fcntl");
      return Err(crate::error::to_js(&env, &e));
    }
    Ok(Some(dup))
  }

  /// `true` when the region's descriptor is sealed against shrinking (`F_SEAL_SHRINK`), so no
  /// process it is shared with can truncate the memory under this mapping. Always `true` for
  /// `memfd()` regions on Linux; for `fromFd()` it depends on who made the object; `false`
  /// for other kinds. Throws `ERR_SHM_CLOSED` after `close()`.
  #[napi(getter)]
  pub fn sealed(&self, env: Env) -> Result<bool> {
    Ok(self.live(&env)?.is_sealed())
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

  /// Cuts `buffer` off from the memory and lets go of the region. Idempotent. The name, if
  /// any, stays until `unlink()`.
  ///
  /// The buffer is not detached: views keep their length, but its memory is replaced in place
  /// by private zero pages, so views read zeros and their writes reach only this process's
  /// blank pages, never the shared object. Native work handed a view before `close()` (an
  /// `fs.write`, a `zlib` or `crypto` job, a socket write in flight) therefore never faults or
  /// aborts. The addresses are released once the buffer is garbage-collected. Handles made
  /// with `share()`/`from()` in other threads, and semaphores in the region, keep the memory
  /// itself alive until they close too. (Private and read-only regions, and systems without
  /// `mremap`, have no separate mapping per user: their views are blanked when the region's
  /// last user lets go.)
  #[napi]
  pub fn close(&mut self, env: Env) {
    let Some(region) = self.region.take() else {
      return;
    };
    if let Some(buffer) = self.buffer.take() {
      buffer.delete(&env);
    }
    drop(region);
    // No view of ours reaches the bytes any more: the claim keeps only the addresses.
    release_region(self.claim);
  }

  /// A token that hands this region to a worker thread of this process without copying:
  /// post it (`worker.postMessage(region.share())`) and call `SharedMemory.from(token)` there.
  /// The new handle maps nothing new; it shares this mapping, which stays until every handle
  /// over it is closed or collected. Each token is redeemable once; one never redeemed keeps
  /// the memory mapped until the process ends. (Posting `region.buffer` itself copies the
  /// bytes: the copy is not shared memory.) Throws `ERR_SHM_CLOSED` after `close()`.
  #[napi]
  pub fn share(&self, env: Env) -> Result<SharedMemoryToken> {
    let region = self.region(&env)?;
    let id = loop {
      let id = random_id();
      let mut tokens = TOKENS.lock().unwrap_or_else(PoisonError::into_inner);
      if let std::collections::btree_map::Entry::Vacant(slot) = tokens.entry(id) {
        slot.insert((region.clone(), self.read_only));
        break id;
      }
    };
    Ok(SharedMemoryToken {
      id: format!("{id:032x}"),
      kind: self.kind.as_str().to_owned(),
      size: self.size(),
      name: self.name.clone(),
    })
  }

  /// Turns a token from `share()` (made in any thread of this process) into a handle over the
  /// same mapping. A token that is not from `share()` in this process, or was already
  /// redeemed, throws `ERR_SHM_INVALID_TOKEN`.
  #[napi(factory, js_name = "from", ts_args_type = "token: SharedMemoryToken")]
  pub fn from_token(env: Env, token: Unknown) -> Result<Self> {
    let invalid = |why: &str| {
      js_error(
        &env,
        Class::TypeError,
        ERR_SHM_INVALID_TOKEN,
        &format!("not a live token from share() in this process: {why}"),
        &[],
      )
    };
    let Some(object) = args::options(&env, Some(token), "token")? else {
      return Err(args::invalid_type(&env, "token", "of type object", token));
    };
    let id = match args::property(&object, "id")? {
      Some(id) if id.get_type()? == napi::ValueType::String => {
        // SAFETY: the type was just checked to be String.
        unsafe { id.cast::<String>() }?
      }
      _ => return Err(invalid("it has no string id")),
    };
    let Some(id) = (id.len() == 32).then(|| u128::from_str_radix(&id, 16).ok()).flatten() else {
      return Err(invalid("its id is not 32 hexadecimal digits"));
    };
    let redeemed = TOKENS.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    let Some((region, read_only)) = redeemed else {
      return Err(invalid("unknown or already redeemed id"));
    };
    Self::wrap_shared(&env, region, read_only)
  }
}

impl ObjectFinalize for SharedMemory {
  /// GC of a handle that was never closed: release our reference to the buffer. The buffer's
  /// claim keeps the region while any view of the buffer lives; it goes when V8 frees it.
  fn finalize(mut self, env: Env) -> Result<()> {
    if let Some(buffer) = self.buffer.take() {
      buffer.delete(&env);
    }
    Ok(())
  }
}
