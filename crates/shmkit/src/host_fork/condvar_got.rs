//! The GOT slots through which loaded objects call `pthread_cond_signal` and
//! `pthread_cond_broadcast`, found with [`dl_iterate_phdr(3)`] and the `DT_JMPREL`/`DT_RELA`
//! relocations of each object, and pointed at a no-op in a forked child.
//!
//! Why: a child made by `fork()` has one thread, but a glibc condvar still counts the waiters
//! that were blocked in it at the moment of fork (threads that no longer exist). The child's
//! first `pthread_cond_signal` may then wait forever for them to leave (glibc's group switch
//! in `__condvar_quiesce_and_switch_g1`); Node's platform posts such signals whenever V8
//! starts a background job (a scavenge, a compile). In a one-thread child nobody can be
//! waiting, so signalling is correctly a no-op.
//!
//! Calls that do not go through a GOT slot (static glibc, a pointer fetched with `dlsym`)
//! are not covered; [`CondvarSlots::find`] reports when no slot exists at all.
//!
//! [`dl_iterate_phdr(3)`]: https://man7.org/linux/man-pages/man3/dl_iterate_phdr.3.html

use crate::error::Result;

/// Every GOT slot of every loaded object that imports `pthread_cond_signal` or
/// `pthread_cond_broadcast`, as found by one walk over the loaded objects.
#[derive(Clone, Debug, Default)]
pub struct CondvarSlots {
  slots: Vec<Slot>,
  objects: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
#[cfg_attr(
  not(all(target_os = "linux", target_pointer_width = "64")),
  expect(dead_code, reason = "slots are only found on 64-bit Linux")
)]
struct Slot {
  /// Address of the pointer-sized GOT entry.
  addr: usize,
  /// The protection of the entry's page (`PROT_*` bits), read from `/proc/self/maps` when the
  /// slot was found, so the child restores it exactly after writing.
  prot: i32,
}

impl CondvarSlots {
  /// Walks the loaded objects and collects the slots, without writing anything: usable as a
  /// dry run when a library loads, to refuse forking later instead of forking unprotected.
  ///
  /// ```
  /// // A program that never calls the two functions may have no slot: both answers are fine.
  /// match shmkit::host_fork::CondvarSlots::find() {
  ///   Ok(slots) => assert!(slots.len() > 0),
  ///   Err(e) => assert_eq!(e.kind(), shmkit::ErrorKind::Unsupported),
  /// }
  /// ```
  ///
  /// # Errors
  /// [`crate::ErrorKind::Unsupported`] when no loaded object imports either function through
  /// a GOT slot, or off 64-bit Linux.
  pub fn find() -> Result<Self> {
    imp::find()
  }

  /// How many slots were found.
  #[must_use]
  pub fn len(&self) -> usize {
    self.slots.len()
  }

  /// Whether no slot was found (never true for a value returned by [`CondvarSlots::find`]).
  #[must_use]
  pub fn is_empty(&self) -> bool {
    self.slots.is_empty()
  }

  /// The objects that have slots, by file name (`""` is the main program).
  #[must_use]
  pub fn objects(&self) -> &[String] {
    &self.objects
  }

  /// Whether every slot currently holds the no-op (true in a child after
  /// [`CondvarSlots::redirect`], false in the parent, which is never changed).
  #[must_use]
  pub fn all_redirected(&self) -> bool {
    !self.slots.is_empty() && self.slots.iter().all(|slot| imp::read(*slot) == imp::noop_address())
  }

  /// Points every slot at a function that returns 0 without touching the condvar. Slots
  /// whose page cannot be made writable are skipped and reported as an error after the
  /// others were done.
  ///
  /// # Safety
  /// Only in a child just made by `fork()` from this process, which has one thread, so no
  /// thread can be waiting on any condvar: from now on, signals and broadcasts made by these
  /// objects are lost, which is only correct when nobody waits. The objects must still be
  /// loaded (no `dlclose` since [`CondvarSlots::find`]).
  ///
  /// # Errors
  /// `mprotect` failures (the slot was left unchanged).
  pub unsafe fn redirect(&self) -> Result<()> {
    let mut result = Ok(());
    for slot in &self.slots {
      // SAFETY: the caller guarantees a one-thread fork child in which the objects are still
      // loaded, so the slot is a live GOT entry nobody else is writing.
      if let Err(e) = unsafe { imp::redirect(*slot) } {
        result = Err(e);
      }
    }
    result
  }
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
mod imp {
  use std::ffi::{c_int, c_void, CStr};
  use std::ptr::NonNull;

  use nix::sys::mman::{mprotect, ProtFlags};

  use super::{CondvarSlots, Slot};
  use crate::error::{Error, ErrorKind, Result, SyscallExt};

  /// The symbols whose call slots are redirected.
  const SYMBOLS: [&str; 2] = ["pthread_cond_signal", "pthread_cond_broadcast"];

  // `<elf.h>` values the libc crate does not carry.
  const DT_NULL: i64 = 0;
  const DT_PLTRELSZ: i64 = 2;
  const DT_STRTAB: i64 = 5;
  const DT_SYMTAB: i64 = 6;
  const DT_RELA: i64 = 7;
  const DT_RELASZ: i64 = 8;
  const DT_PLTREL: i64 = 20;
  const DT_JMPREL: i64 = 23;

  /// Relocation types that store a symbol's address in a slot: `JUMP_SLOT` (PLT calls),
  /// `GLOB_DAT` (calls through the GOT without PLT, and taken addresses), and plain 64-bit
  /// absolute addresses.
  #[cfg(target_arch = "x86_64")]
  const SLOT_TYPES: [u32; 3] = [7, 6, 1]; // R_X86_64_JUMP_SLOT, R_X86_64_GLOB_DAT, R_X86_64_64
  #[cfg(target_arch = "aarch64")]
  const SLOT_TYPES: [u32; 3] = [1026, 1025, 257]; // R_AARCH64_JUMP_SLOT, _GLOB_DAT, _ABS64
  #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
  const SLOT_TYPES: [u32; 0] = [];

  /// `Elf64_Dyn` from `<elf.h>`.
  #[repr(C)]
  struct Dyn {
    tag: i64,
    value: u64,
  }

  extern "C" fn noop(_cond: *mut libc::pthread_cond_t) -> c_int {
    0
  }

  pub(super) fn noop_address() -> usize {
    noop as extern "C" fn(*mut libc::pthread_cond_t) -> c_int as usize
  }

  pub(super) fn read(slot: Slot) -> usize {
    // SAFETY: the slot is a GOT entry of a loaded object: mapped, aligned, pointer-sized, and
    // readable for the life of the object.
    unsafe { std::ptr::read_volatile(slot.addr as *const usize) }
  }

  pub(super) unsafe fn redirect(slot: Slot) -> Result<()> {
    let page = page_size();
    let start = slot.addr & !(page - 1);
    let start = NonNull::new(start as *mut c_void).expect("a GOT entry is never on page 0");
    let original = ProtFlags::from_bits_truncate(slot.prot);
    // SAFETY: the page holds a GOT entry of a loaded object (the caller's contract); adding
    // write permission to its own protection (PROT_EXEC kept: with 64 KiB pages, code may
    // share the page) changes no byte. With full RELRO it was read-only.
    unsafe { mprotect(start, page, original | ProtFlags::PROT_WRITE) }.syscall("mprotect")?;
    // SAFETY: the entry is mapped, aligned, writable now, and only this thread exists.
    unsafe { std::ptr::write_volatile(slot.addr as *mut usize, noop_address()) };
    if !original.contains(ProtFlags::PROT_WRITE) {
      // SAFETY: the same page back to exactly the protection it had.
      unsafe { mprotect(start, page, original) }.syscall("mprotect")?;
    }
    Ok(())
  }

  /// The `PROT_*` bits of the mapping holding `addr`, from the text of `/proc/self/maps`
  /// (`start-end rwxp ...` per line).
  pub(super) fn page_protection(maps: &str, addr: usize) -> Option<i32> {
    maps.lines().find_map(|line| {
      let mut fields = line.split_whitespace();
      let (start, end) = fields.next()?.split_once('-')?;
      let (start, end) = (
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
      );
      if !(start..end).contains(&addr) {
        return None;
      }
      let perms = fields.next()?.as_bytes();
      let mut prot = libc::PROT_NONE;
      for (i, bit) in [libc::PROT_READ, libc::PROT_WRITE, libc::PROT_EXEC]
        .into_iter()
        .enumerate()
      {
        if perms.get(i).is_some_and(|c| *c != b'-') {
          prot |= bit;
        }
      }
      Some(prot)
    })
  }

  fn page_size() -> usize {
    // SAFETY: sysconf only reads a system value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
      .ok()
      .filter(|s| s.is_power_of_two())
      .unwrap_or(4096)
  }

  pub(super) fn find() -> Result<CondvarSlots> {
    let mut found = CondvarSlots::default();
    // SAFETY: the callback only reads the program headers and dynamic sections of loaded
    // objects while the loader holds them, and `data` is `found`, alive for the whole call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut found).cast()) };
    // Some linkers make DT_RELA cover the PLT relocations too.
    found.slots.sort_unstable_by_key(|slot| slot.addr);
    found.slots.dedup_by_key(|slot| slot.addr);
    // The child cannot read files or allocate safely, so learn each page's protection here.
    if let Ok(maps) = std::fs::read_to_string("/proc/self/maps") {
      for slot in &mut found.slots {
        if let Some(prot) = page_protection(&maps, slot.addr) {
          slot.prot = prot;
        }
      }
    }
    if found.slots.is_empty() {
      return Err(Error::new(
        ErrorKind::Unsupported,
        "no loaded object calls pthread_cond_signal or pthread_cond_broadcast through a GOT slot",
      ));
    }
    Ok(found)
  }

  unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _size: usize, data: *mut c_void) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for the duration of this call.
    let info = unsafe { &*info };
    // SAFETY: `data` is the `CondvarSlots` that `find` passed, borrowed by no one else.
    let found = unsafe { &mut *data.cast::<CondvarSlots>() };
    let before = found.slots.len();
    // SAFETY: the loader's own description of a loaded object.
    unsafe { scan_object(info, found) };
    if found.slots.len() > before {
      let name = if info.dlpi_name.is_null() {
        String::new()
      } else {
        // SAFETY: dlpi_name is a NUL-terminated string owned by the loader.
        unsafe { CStr::from_ptr(info.dlpi_name) }.to_string_lossy().into_owned()
      };
      found.objects.push(name);
    }
    0 // keep going: every object that imports the functions gets its slots redirected
  }

  /// Finds the object's slots for [`SYMBOLS`].
  ///
  /// # Safety
  /// `info` describes a loaded object (from `dl_iterate_phdr`).
  unsafe fn scan_object(info: &libc::dl_phdr_info, found: &mut CondvarSlots) {
    #[expect(clippy::cast_possible_truncation, reason = "addresses fit in usize on 64-bit")]
    let base = info.dlpi_addr as usize;
    if info.dlpi_phdr.is_null() {
      return;
    }
    // SAFETY: the loader gives `dlpi_phnum` program headers at `dlpi_phdr`.
    let headers = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let Some(dynamic) = headers.iter().find(|h| h.p_type == libc::PT_DYNAMIC) else {
      return;
    };
    #[expect(clippy::cast_possible_truncation, reason = "addresses fit in usize on 64-bit")]
    let mut entry = (base + dynamic.p_vaddr as usize) as *const Dyn;
    let (mut jmprel, mut pltrelsz, mut pltrel_is_rela) = (0, 0, true);
    let (mut rela, mut relasz, mut symtab, mut strtab) = (0, 0, 0, 0);
    loop {
      // SAFETY: the dynamic section is an array of Dyn terminated by DT_NULL.
      let Dyn { tag, value } = unsafe { entry.read() };
      #[expect(clippy::cast_possible_truncation, reason = "addresses fit in usize on 64-bit")]
      let value = value as usize;
      match tag {
        DT_NULL => break,
        DT_JMPREL => jmprel = value,
        DT_PLTRELSZ => pltrelsz = value,
        DT_PLTREL => pltrel_is_rela = value == 7, // DT_RELA
        DT_RELA => rela = value,
        DT_RELASZ => relasz = value,
        DT_SYMTAB => symtab = value,
        DT_STRTAB => strtab = value,
        _ => {}
      }
      // SAFETY: not past DT_NULL yet, so the next entry exists.
      entry = unsafe { entry.add(1) };
    }
    if symtab == 0 || strtab == 0 {
      return;
    }
    // glibc relocates these addresses in place when it loads an object; the vDSO and musl
    // leave them as offsets from the load address.
    let absolute = |addr: usize| if addr < base { addr + base } else { addr };
    let tables = Tables {
      base,
      symtab: absolute(symtab) as *const libc::Elf64_Sym,
      strtab: absolute(strtab) as *const u8,
    };
    if jmprel != 0 && pltrel_is_rela {
      // SAFETY: DT_JMPREL/DT_PLTRELSZ describe the object's PLT relocation table.
      unsafe { tables.scan(absolute(jmprel), pltrelsz, found) };
    }
    if rela != 0 {
      // SAFETY: DT_RELA/DT_RELASZ describe the object's other RELA relocations.
      unsafe { tables.scan(absolute(rela), relasz, found) };
    }
  }

  struct Tables {
    base: usize,
    symtab: *const libc::Elf64_Sym,
    strtab: *const u8,
  }

  impl Tables {
    /// # Safety
    /// `table..table + size` is a RELA table of the object these tables belong to.
    unsafe fn scan(&self, table: usize, size: usize, found: &mut CondvarSlots) {
      let count = size / std::mem::size_of::<libc::Elf64_Rela>();
      // SAFETY: the caller's contract; RELA tables are aligned arrays.
      let relocations = unsafe { std::slice::from_raw_parts(table as *const libc::Elf64_Rela, count) };
      for relocation in relocations {
        #[expect(clippy::cast_possible_truncation, reason = "ELF64_R_TYPE is the low 32 bits")]
        let kind = relocation.r_info as u32;
        let symbol = usize::try_from(relocation.r_info >> 32).unwrap_or(0); // ELF64_R_SYM
        if symbol == 0 || !SLOT_TYPES.contains(&kind) || relocation.r_addend != 0 {
          continue;
        }
        // SAFETY: a relocation's symbol index is within the object's symbol table.
        let sym = unsafe { self.symtab.add(symbol) };
        // SAFETY: the entry just located, an initialised symbol of the loaded object.
        let name_offset = unsafe { (*sym).st_name } as usize;
        // SAFETY: a symbol's name offset is within the string table.
        let name = unsafe { self.strtab.add(name_offset) };
        // SAFETY: the string table holds NUL-terminated names, alive while the object is loaded.
        let name = unsafe { CStr::from_ptr(name.cast()) };
        if SYMBOLS.iter().any(|s| s.as_bytes() == name.to_bytes()) {
          #[expect(clippy::cast_possible_truncation, reason = "addresses fit in usize on 64-bit")]
          let addr = self.base + relocation.r_offset as usize;
          found.slots.push(Slot {
            addr,
            prot: libc::PROT_READ,
          });
        }
      }
    }
  }
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
mod imp {
  use super::{CondvarSlots, Slot};
  use crate::error::{Error, ErrorKind, Result};

  pub(super) fn find() -> Result<CondvarSlots> {
    Err(Error::new(
      ErrorKind::Unsupported,
      "condvar GOT slots are only looked up on 64-bit Linux",
    ))
  }

  pub(super) fn noop_address() -> usize {
    0
  }

  pub(super) fn read(_slot: Slot) -> usize {
    0
  }

  pub(super) unsafe fn redirect(_slot: Slot) -> Result<()> {
    Err(Error::new(
      ErrorKind::Unsupported,
      "condvar GOT slots are only redirected on 64-bit Linux",
    ))
  }
}

#[cfg(all(test, target_os = "linux", target_pointer_width = "64"))]
mod tests {
  use super::imp::page_protection;

  #[test]
  fn page_protection_reads_every_bit() {
    let maps = "1000-2000 r--p 00000000 00:00 0\n2000-4000 r-xp 00000000 00:00 0 /lib/x.so\n4000-5000 rw-p 0 0:0 0\n";
    assert_eq!(page_protection(maps, 0x1800), Some(libc::PROT_READ));
    assert_eq!(page_protection(maps, 0x2000), Some(libc::PROT_READ | libc::PROT_EXEC));
    assert_eq!(page_protection(maps, 0x4fff), Some(libc::PROT_READ | libc::PROT_WRITE));
    assert_eq!(page_protection(maps, 0x5000), None);
  }

  #[test]
  fn found_slots_know_their_page_protection() {
    let Ok(found) = super::CondvarSlots::find() else {
      eprintln!("skipped: no condvar slots in this test binary");
      return;
    };
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for slot in &found.slots {
      assert_eq!(Some(slot.prot), page_protection(&maps, slot.addr));
    }
  }
}
