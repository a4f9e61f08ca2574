//! [`Region`]: one mapped range of memory, whatever technique made it.
//!
//! Every constructor (anonymous, `/dev/zero`, named POSIX shm, file, memfd) ends in this
//! type: a pointer, a length, `flush`, and `munmap` when dropped.

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use nix::sys::mman::{mmap, mmap_anonymous, msync, munmap, MapFlags, MsFlags, ProtFlags};

use crate::error::{Error, ErrorKind, Result, SyscallExt};
use crate::owner::Owner;

/// Which technique made a [`Region`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
  /// `mmap(MAP_SHARED | MAP_ANONYMOUS)`: shared with children made by `fork()`.
  Anonymous,
  /// `mmap` of `/dev/zero`: shared with children made by `fork()` (Linux and BSDs).
  DevZero,
  /// POSIX shared memory (`shm_open`): shared with any process that knows the name.
  Named,
  /// A regular file mapped with memmap2: shared through the file system, persistent.
  File,
  /// An anonymous fd-backed object (`memfd_create` on Linux): shared by passing its fd.
  Memfd,
}

impl Kind {
  /// A short stable identifier: `anonymous`, `devZero`, `named`, `file`, `memfd`.
  #[must_use]
  pub fn as_str(self) -> &'static str {
    match self {
      Kind::Anonymous => "anonymous",
      Kind::DevZero => "devZero",
      Kind::Named => "named",
      Kind::File => "file",
      Kind::Memfd => "memfd",
    }
  }
}

/// How to map a region. Every field has a default; not every field applies to every
/// technique (each constructor says which it reads).
///
/// ```
/// let opts = shmkit::MapOptions::new().mode(0o640).reserve(true);
/// assert_eq!(opts.get_mode(), 0o640);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapOptions {
  private: bool,
  read_only: bool,
  mode: u32,
  reserve: bool,
  create: bool,
  growable: bool,
  owner: Owner,
}

impl Default for MapOptions {
  fn default() -> Self {
    Self {
      private: false,
      read_only: false,
      mode: 0o600,
      reserve: false,
      create: true,
      growable: false,
      owner: Owner::Me,
    }
  }
}

impl MapOptions {
  /// The defaults: `MAP_SHARED`, read-write, mode `0o600`, no reservation, files created.
  #[must_use]
  pub fn new() -> Self {
    Self::default()
  }

  /// `MAP_PRIVATE` (copy-on-write) instead of `MAP_SHARED`: this process's writes, and a
  /// forked child's, stay their own. Default `false`.
  #[must_use]
  pub fn private(mut self, private: bool) -> Self {
    self.private = private;
    self
  }

  /// Open the object `O_RDONLY`. Alone, the mapping is `PROT_READ` (writing through it
  /// faults); together with [`MapOptions::private`] it is a copy-on-write view whose writes
  /// never reach the object. Default `false`. Applies to `open`, `file` and `from_fd`.
  #[must_use]
  pub fn read_only(mut self, read_only: bool) -> Self {
    self.read_only = read_only;
    self
  }

  /// Permission bits for objects this call creates, applied exactly (the umask does not
  /// narrow them). Default `0o600`: owner read/write only.
  #[must_use]
  pub fn mode(mut self, mode: u32) -> Self {
    self.mode = mode;
    self
  }

  /// Allocate every page of a new named or memfd object up front (`posix_fallocate`), so
  /// that touching it later can never fail with `SIGBUS`. Fails with `ENOSPC` instead.
  /// Default `false`: pages are allocated lazily, on first touch.
  #[must_use]
  pub fn reserve(mut self, reserve: bool) -> Self {
    self.reserve = reserve;
    self
  }

  /// For [`Region::file`]: create the file if it is missing. Default `true`.
  #[must_use]
  pub fn create(mut self, create: bool) -> Self {
    self.create = create;
    self
  }

  /// For [`Region::memfd`]: leave the object growable. A memfd is always sealed against
  /// shrinking once sized (`F_SEAL_SHRINK`: a process it is shared with cannot truncate it
  /// under our mapping), and against growing too unless this is `true`. Default `false`.
  #[must_use]
  pub fn growable(mut self, growable: bool) -> Self {
    self.growable = growable;
    self
  }

  /// For opening named objects: whose objects to accept. Default [`Owner::Me`]: an object
  /// another user created under the name is refused with [`ErrorKind::ForeignOwner`].
  #[must_use]
  pub fn owner(mut self, owner: Owner) -> Self {
    self.owner = owner;
    self
  }

  /// Whether [`MapOptions::growable`] is set.
  #[must_use]
  pub fn is_growable(&self) -> bool {
    self.growable
  }

  /// The [`MapOptions::owner`] policy.
  #[must_use]
  pub fn get_owner(&self) -> Owner {
    self.owner
  }

  /// Whether [`MapOptions::private`] is set.
  #[must_use]
  pub fn is_private(&self) -> bool {
    self.private
  }

  /// Whether [`MapOptions::read_only`] is set.
  #[must_use]
  pub fn is_read_only(&self) -> bool {
    self.read_only
  }

  /// The permission bits for new objects.
  #[must_use]
  pub fn get_mode(&self) -> u32 {
    self.mode
  }

  /// Whether [`MapOptions::reserve`] is set.
  #[must_use]
  pub fn is_reserve(&self) -> bool {
    self.reserve
  }

  /// Whether [`MapOptions::create`] is set.
  #[must_use]
  pub fn is_create(&self) -> bool {
    self.create
  }

  pub(crate) fn check_mode(&self) -> Result<nix::sys::stat::Mode> {
    if self.mode > 0o777 {
      return Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("mode {:#o} is above 0o777", self.mode),
      ));
    }
    let bits = nix::libc::mode_t::try_from(self.mode).expect("at most 0o777");
    Ok(nix::sys::stat::Mode::from_bits_truncate(bits))
  }

  pub(crate) fn prot(&self) -> ProtFlags {
    if self.read_only && !self.private {
      ProtFlags::PROT_READ
    } else {
      ProtFlags::PROT_READ | ProtFlags::PROT_WRITE
    }
  }

  pub(crate) fn flags(&self) -> MapFlags {
    let sharing = if self.private {
      MapFlags::MAP_PRIVATE
    } else {
      MapFlags::MAP_SHARED
    };
    // Without `reserve`, mapping costs nothing until pages are touched: no commit charge for
    // anonymous shared memory or copy-on-write pages, so an 8 GiB region maps on a small host.
    #[cfg(target_os = "linux")]
    if !self.reserve {
      return sharing | MapFlags::MAP_NORESERVE;
    }
    sharing
  }
}

/// The address range of one mapping, unmapped exactly once: when its last holder (the
/// [`Region`] and any [`AddressPin`]s) lets go.
struct AddressRange {
  ptr: NonNull<c_void>,
  len: usize,
}

// SAFETY: the range is only an address and a length; the bytes are reached through raw
// pointers whose users take responsibility for races (see `Region`).
unsafe impl Send for AddressRange {}
// SAFETY: as for `Send`: nothing here is mutated through `&AddressRange`.
unsafe impl Sync for AddressRange {}

impl AddressRange {
  /// Replaces the mapping in place with private zero pages that reserve no memory, so the
  /// object's memory is released while the addresses stay valid: a late reader sees zeros, a
  /// late writer writes into pages nobody else sees.
  fn blank(&self) -> Result<()> {
    let len = NonZeroUsize::new(self.len).expect("a mapping is never empty");
    let flags = MapFlags::MAP_PRIVATE | MapFlags::MAP_ANONYMOUS | MapFlags::MAP_FIXED | MapFlags::MAP_NORESERVE;
    // SAFETY: MAP_FIXED over exactly the range this value owns: it replaces our own mapping
    // and nothing else; the addresses stay owned by this value, which unmaps them once.
    unsafe {
      mmap_anonymous(
        Some(self.ptr.addr()),
        len,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        flags,
      )
    }
    .syscall("mmap")
    .map(drop)
  }
}

impl Drop for AddressRange {
  fn drop(&mut self) {
    // SAFETY: `ptr` and `len` describe exactly the mapping we own, and nothing uses it after
    // the last holder is gone. munmap only fails for arguments we never pass, so the result is
    // ignored (Drop cannot report).
    let _ = unsafe { munmap(self.ptr, self.len) };
  }
}

/// Keeps a region's addresses mapped after the [`Region`] itself is gone.
///
/// Native code that was handed a raw pointer into a region (a thread-pool job reading a
/// buffer, say) may still touch it after the owner closed the region. While a pin exists,
/// dropping the region does not unmap: it replaces the range in place with private zero pages
/// (`MAP_FIXED | MAP_ANONYMOUS | MAP_NORESERVE`), so the shared memory is released at once
/// and late accesses read zeros or write nowhere instead of faulting or reaching another
/// mapping that reused the addresses. The range is unmapped when the last pin is dropped.
///
/// ```
/// let region = shmkit::Region::anonymous(4096).unwrap();
/// region.write_at(0, b"hi").unwrap();
/// let pin = region.pin();
/// let ptr = region.as_ptr();
/// drop(region);
/// // SAFETY: the pin keeps the range mapped; it now holds zeros.
/// assert_eq!(unsafe { ptr.read() }, 0);
/// drop(pin); // unmapped here
/// ```
#[derive(Clone)]
pub struct AddressPin {
  range: Arc<AddressRange>,
}

impl AddressPin {
  /// The first address of the pinned range.
  #[must_use]
  pub fn as_ptr(&self) -> *mut u8 {
    self.range.ptr.as_ptr().cast()
  }

  /// The length of the pinned range in bytes.
  #[must_use]
  pub fn len(&self) -> usize {
    self.range.len
  }

  /// Always `false`: a range holds at least one byte.
  #[must_use]
  pub fn is_empty(&self) -> bool {
    self.range.len == 0
  }
}

impl std::fmt::Debug for AddressPin {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("AddressPin")
      .field("len", &self.range.len)
      .finish_non_exhaustive()
  }
}

/// A second mapping of a region's memory at addresses of its own (see [`Region::alias`]).
///
/// It can be cut off from the memory without touching the region or other aliases:
/// [`Alias::blank`] replaces its range in place with private zero pages, so a late reader
/// sees zeros and a late writer writes only to pages nobody else sees. Dropping it unmaps it.
pub struct Alias {
  range: AddressRange,
}

impl Alias {
  /// The first address of the alias.
  #[must_use]
  pub fn as_ptr(&self) -> *mut u8 {
    self.range.ptr.as_ptr().cast()
  }

  /// The length of the alias in bytes.
  #[must_use]
  pub fn len(&self) -> usize {
    self.range.len
  }

  /// Always `false`: an alias holds at least one byte.
  #[must_use]
  pub fn is_empty(&self) -> bool {
    self.range.len == 0
  }

  /// Cuts the alias off from the shared memory, keeping its addresses mapped (to private
  /// zero pages) until it is dropped.
  ///
  /// # Errors
  /// The `mmap` failure; the alias then still reaches the memory.
  pub fn blank(&self) -> Result<()> {
    self.range.blank()
  }
}

impl std::fmt::Debug for Alias {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Alias")
      .field("len", &self.range.len)
      .finish_non_exhaustive()
  }
}

/// A mapped range of memory that other processes can share.
///
/// Constructors, one per technique: [`Region::anonymous`], [`Region::dev_zero`],
/// [`Region::create`], [`Region::open`], [`Region::open_or_create`], [`Region::file`],
/// [`Region::memfd`], [`Region::from_fd`]. Dropping a region unmaps it; it never removes
/// a name (see [`crate::unlink`]).
///
/// The bytes can change at any time when another process writes them, so safe access goes
/// through copies ([`Region::read_at`], [`Region::write_at`]) or raw pointers; the slice
/// views are `unsafe`.
pub struct Region {
  ptr: NonNull<u8>,
  len: usize,
  range: Arc<AddressRange>,
  /// Set once the memory was released (blanked), so Drop does not blank it again.
  released: bool,
  kind: Kind,
  name: Option<String>,
  /// Shared with the regions [`Region::map_again`] makes, so a second mapping costs no `dup`.
  fd: Option<Arc<OwnedFd>>,
  private: bool,
  writable: bool,
}

// SAFETY: a Region owns its mapping; the pointer is valid for `len` bytes on every thread
// until Drop, and all shared access is through raw pointers or `unsafe` views whose
// callers take responsibility for races, exactly as with memory another process writes.
unsafe impl Send for Region {}
// SAFETY: see `Send`: `&Region` exposes no interior state besides the mapped bytes.
unsafe impl Sync for Region {}

impl std::fmt::Debug for Region {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Region")
      .field("kind", &self.kind)
      .field("name", &self.name)
      .field("len", &self.len)
      .field("private", &self.private)
      .field("writable", &self.writable)
      .finish_non_exhaustive()
  }
}

impl Drop for Region {
  fn drop(&mut self) {
    // A failed blank leaves the shared mapping in place until the last pin goes: a leak of
    // addresses, never an unmap under a pin.
    let _ = self.release();
  }
}

/// Takes over a mapping made elsewhere (memmap2): the range unmaps it from now on.
fn adopt(ptr: *mut u8, len: usize) -> Arc<AddressRange> {
  Arc::new(AddressRange {
    ptr: NonNull::new(ptr.cast()).expect("mmap never returns null"),
    len,
  })
}

/// Checks that `len` can be mapped and returns it as a `NonZeroUsize`.
pub(crate) fn check_len(len: usize) -> Result<NonZeroUsize> {
  let Some(len) = NonZeroUsize::new(len) else {
    return Err(Error::new(
      ErrorKind::InvalidSize,
      "a region needs a size of at least 1 byte",
    ));
  };
  if isize::try_from(len.get()).is_err() {
    return Err(Error::new(
      ErrorKind::InvalidSize,
      "the size is larger than the address space",
    ));
  }
  Ok(len)
}

impl Region {
  /// Maps `len` bytes of `fd` from offset 0 with `opts`' protection and sharing.
  pub(crate) fn map_fd(fd: BorrowedFd<'_>, len: NonZeroUsize, opts: &MapOptions) -> Result<NonNull<c_void>> {
    // SAFETY: no address hint, so the kernel picks a fresh range that aliases nothing we own;
    // the result is owned by the Region built from it, which unmaps it once.
    unsafe { mmap(None, len, opts.prot(), opts.flags(), fd, 0) }.syscall("mmap")
  }

  pub(crate) fn from_raw(ptr: NonNull<c_void>, len: NonZeroUsize, kind: Kind, opts: &MapOptions) -> Self {
    Self {
      ptr: ptr.cast(),
      len: len.get(),
      range: Arc::new(AddressRange { ptr, len: len.get() }),
      released: false,
      kind,
      name: None,
      fd: None,
      private: opts.private,
      writable: opts.prot().contains(ProtFlags::PROT_WRITE),
    }
  }

  pub(crate) fn from_file_shared(map: memmap2::MmapRaw, path: String, writable: bool) -> Self {
    let range = adopt(map.as_mut_ptr(), map.len());
    // The range owns the unmapping from now on (memmap2 would unmap in its Drop).
    std::mem::forget(map);
    Self {
      ptr: range.ptr.cast(),
      len: range.len,
      range,
      released: false,
      kind: Kind::File,
      name: Some(path),
      fd: None,
      private: false,
      writable,
    }
  }

  pub(crate) fn from_file_private(mut map: memmap2::MmapMut, path: String) -> Self {
    let range = adopt(map.as_mut_ptr(), map.len());
    // The range owns the unmapping from now on (memmap2 would unmap in its Drop).
    std::mem::forget(map);
    Self {
      ptr: range.ptr.cast(),
      len: range.len,
      range,
      released: false,
      kind: Kind::File,
      name: Some(path),
      fd: None,
      private: true,
      writable: true,
    }
  }

  pub(crate) fn with_name(mut self, name: String) -> Self {
    self.name = Some(name);
    self
  }

  pub(crate) fn with_fd(mut self, fd: OwnedFd) -> Self {
    self.fd = Some(Arc::new(fd));
    self
  }

  /// The first byte of the mapping.
  #[must_use]
  pub fn as_ptr(&self) -> *mut u8 {
    self.ptr.as_ptr()
  }

  /// The length in bytes: what was asked for, or the object's size when opening one.
  #[must_use]
  pub fn len(&self) -> usize {
    self.len
  }

  /// Always `false`: a region holds at least one byte.
  #[must_use]
  pub fn is_empty(&self) -> bool {
    self.len == 0
  }

  /// Which technique made this region.
  #[must_use]
  pub fn kind(&self) -> Kind {
    self.kind
  }

  /// The shared-memory name (with its leading `/`) or the file path, if the region has one.
  #[must_use]
  pub fn name(&self) -> Option<&str> {
    self.name.as_deref()
  }

  /// Whether the mapping is `MAP_PRIVATE` (copy-on-write).
  #[must_use]
  pub fn is_private(&self) -> bool {
    self.private
  }

  /// Whether the mapping may be written (a read-only shared mapping is `PROT_READ`).
  #[must_use]
  pub fn is_writable(&self) -> bool {
    self.writable
  }

  /// The descriptor behind a memfd (or `from_fd`) region, to hand to a spawned child.
  #[must_use]
  pub fn fd(&self) -> Option<BorrowedFd<'_>> {
    self.fd.as_deref().map(AsFd::as_fd)
  }

  /// The 32-bit word at `offset`, for atomics and [`crate::futex`] wait/wake shared with
  /// every process that maps the same memory.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidSize`] if the word does not fit; [`ErrorKind::InvalidArgument`] if
  /// `offset` is not a multiple of 4.
  pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32> {
    self.check_range(offset, 4)?;
    if !offset.is_multiple_of(4) {
      return Err(Error::new(
        ErrorKind::InvalidArgument,
        format!("offset {offset} is not a multiple of 4"),
      ));
    }
    // SAFETY: the offset is inside the live mapping (checked above).
    let word = unsafe { self.as_ptr().add(offset) };
    // SAFETY: the 4 bytes are inside the live mapping (checked above), 4-aligned (the
    // mapping is page-aligned and the offset a multiple of 4), and only ever accessed
    // atomically by shmkit; the borrow keeps the mapping alive.
    Ok(unsafe { AtomicU32::from_ptr(word.cast()) })
  }

  /// Copies `buf.len()` bytes starting at `offset` out of the region.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidSize`] if the range does not fit in the region.
  pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
    self.check_range(offset, buf.len())?;
    // SAFETY: the range is inside the live mapping (checked above).
    let from = unsafe { self.as_ptr().add(offset) };
    // SAFETY: the range is inside the live mapping, and `buf` is a distinct Rust
    // allocation, so the two never overlap.
    unsafe { std::ptr::copy_nonoverlapping(from, buf.as_mut_ptr(), buf.len()) };
    Ok(())
  }

  /// Copies `data` into the region starting at `offset`.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidSize`] if the range does not fit; [`ErrorKind::Os`] with `EACCES`
  /// if the region is read-only.
  pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
    self.check_range(offset, data.len())?;
    if !self.writable {
      return Err(Error::os(nix::errno::Errno::EACCES, "write"));
    }
    // SAFETY: the range is inside the live mapping (checked above).
    let to = unsafe { self.as_ptr().add(offset) };
    // SAFETY: the range is inside the live, writable mapping, and `data` is a distinct Rust
    // allocation.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), to, data.len()) };
    Ok(())
  }

  /// Views the whole region as a byte slice.
  ///
  /// # Safety
  /// No process (this one included) may write the region while the slice is alive, or the
  /// slice observes a data race.
  #[must_use]
  pub unsafe fn as_slice(&self) -> &[u8] {
    // SAFETY: the mapping is valid for `len` bytes while `self` lives; the caller promises
    // no concurrent writes.
    unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
  }

  /// Views the whole region as a mutable byte slice.
  ///
  /// # Safety
  /// The region must be writable, and no other process may read or write it while the slice
  /// is alive (synchronise with a [`crate::Semaphore`]).
  #[must_use]
  pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
    // SAFETY: the mapping is valid for `len` bytes while `self` lives and `&mut self` is
    // unique in this process; the caller promises the rest.
    unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
  }

  /// Writes changes back to the backing object and waits for it (`msync(MS_SYNC)`). For
  /// files this makes them durable; for shared memory it is cheap and rarely needed.
  ///
  /// # Errors
  /// The `msync` failure.
  pub fn flush(&self) -> Result<()> {
    // SAFETY: `ptr` and `len` describe exactly the live mapping this region owns.
    unsafe { msync(self.range.ptr, self.range.len, MsFlags::MS_SYNC) }
      .syscall("msync")
      .map_err(|e| self.named(e))
  }

  /// Unmaps the region now (or, while an [`AddressPin`] exists, replaces its memory with
  /// zero pages) and reports a failure, which `Drop` cannot.
  ///
  /// # Errors
  /// The `mmap` failure of the replacement; the region is gone either way.
  pub fn close(mut self) -> Result<()> {
    self.release()
  }

  /// A pin that keeps this region's addresses mapped after the region is dropped (see
  /// [`AddressPin`]).
  #[must_use]
  pub fn pin(&self) -> AddressPin {
    AddressPin {
      range: self.range.clone(),
    }
  }

  /// A second mapping of the same memory at fresh addresses, which can be blanked or
  /// unmapped on its own (see [`Alias`]). Writes through either are seen through the other.
  ///
  /// Linux only, and only for shared mappings (`mremap` with an old size of 0): `Ok(None)`
  /// for private (copy-on-write) regions, on other systems, which have no such call, and when
  /// `mremap` answers `ENOMEM` (out of mappings, or qemu-user, which does not implement it).
  ///
  /// # Errors
  /// Any other `mremap` failure.
  pub fn alias(&self) -> Result<Option<Alias>> {
    Ok(self.alias_range(0, self.len)?.map(|(alias, _)| alias))
  }

  /// The same memory mapped again at fresh addresses, as a region of its own: same kind,
  /// name, descriptor and flags. Closing either region leaves the other mapped, so one user's
  /// close (which blanks its range under an [`AddressPin`]) never cuts off another's.
  ///
  /// Where [`Region::alias`] can make no second mapping (private regions, systems other than
  /// Linux, qemu-user), `Ok(None)`: callers then share this region instead.
  ///
  /// # Errors
  /// The `mremap` failure.
  pub fn map_again(&self) -> Result<Option<Region>> {
    let Some(Alias { range }) = self.alias()? else {
      return Ok(None);
    };
    Ok(Some(Region {
      ptr: range.ptr.cast(),
      len: self.len,
      range: Arc::new(range),
      released: false,
      kind: self.kind,
      name: self.name.clone(),
      fd: self.fd.clone(),
      private: self.private,
      writable: self.writable,
    }))
  }

  /// Like [`Region::alias`], for the bytes `offset..offset + len` only: the alias covers the
  /// whole pages holding them, and the second value is where `offset` lies in it.
  ///
  /// # Errors
  /// `InvalidSize` for an empty range or one outside the region; the `mremap` failure.
  pub fn alias_range(&self, offset: usize, len: usize) -> Result<Option<(Alias, usize)>> {
    self.check_range(offset, len)?;
    if len == 0 {
      return Err(Error::new(ErrorKind::InvalidSize, "an alias needs at least 1 byte"));
    }
    #[cfg(target_os = "linux")]
    if !self.private {
      // SAFETY: sysconf only reads a system value.
      let page = usize::try_from(unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) }).unwrap_or(4096);
      let start = offset - offset % page;
      let end = (offset + len).div_ceil(page).saturating_mul(page).min(self.len);
      let from = self.range.ptr.map_addr(|addr| addr.saturating_add(start));
      // SAFETY: an old size of 0 asks for a new mapping of the same pages (`from`, page
      // aligned, inside this mapping) at an address the kernel picks (MREMAP_MAYMOVE), so
      // nothing we own is moved or replaced; the new range is owned by the returned Alias,
      // which unmaps it once.
      let ptr = match unsafe {
        nix::sys::mman::mremap(from, 0, end - start, nix::sys::mman::MRemapFlags::MREMAP_MAYMOVE, None)
      } {
        Ok(ptr) => ptr,
        // No second mapping to be had (out of mappings, or a user-mode emulator such as
        // qemu-user, which refuses an old size of 0): the caller pins the region instead.
        Err(nix::errno::Errno::ENOMEM) => return Ok(None),
        Err(e) => return Err(e).syscall("mremap").map_err(|e| self.named(e)),
      };
      let alias = Alias {
        range: AddressRange { ptr, len: end - start },
      };
      return Ok(Some((alias, offset - start)));
    }
    Ok(None)
  }

  /// Releases the memory: with pins outstanding the range is blanked in place, and the last
  /// holder of the range unmaps it.
  fn release(&mut self) -> Result<()> {
    if std::mem::replace(&mut self.released, true) {
      return Ok(());
    }
    // Nobody can add a pin now (a pin is only made through a live region, and we hold
    // `&mut self`), so a count of 1 stays 1.
    if Arc::strong_count(&self.range) > 1 {
      return self.range.blank();
    }
    Ok(())
  }

  fn check_range(&self, offset: usize, len: usize) -> Result<()> {
    match offset.checked_add(len) {
      Some(end) if end <= self.len => Ok(()),
      _ => Err(Error::new(
        ErrorKind::InvalidSize,
        format!(
          "range {offset}..{offset}+{len} is outside the region of {} bytes",
          self.len
        ),
      )),
    }
  }

  pub(crate) fn named(&self, e: Error) -> Error {
    match &self.name {
      Some(name) => e.with_name(name.clone()),
      None => e,
    }
  }
}
