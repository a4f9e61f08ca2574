//! Memory a runtime hid from children with `MADV_DONTFORK` ([`madvise(2)`]), found through
//! the `dc` flag in `VmFlags` of [`/proc/self/smaps`][proc_pid_smaps], and shown to a child
//! for the length of one `fork`.
//!
//! Node builds V8 so that every region V8 reserves (the JS heap cage, the code range, cppgc,
//! the pointer tables) is `MADV_DONTFORK`: a plain `fork()` child has no JS heap and crashes
//! on its first JS call. Marking those ranges `MADV_DOFORK` right before `fork()`, and
//! `MADV_DONTFORK` again in the parent right after, gives the child the heap and keeps later
//! `child_process.spawn` calls (a real `fork()` in libuv) as cheap as before.
//!
//! [`madvise(2)`]: https://man7.org/linux/man-pages/man2/madvise.2.html
//! [proc_pid_smaps]: https://man7.org/linux/man-pages/man5/proc_pid_smaps.5.html

use std::ops::Range;

use crate::error::Result;

/// Private anonymous ranges of this process marked `MADV_DONTFORK` (smaps flag `dc`), as
/// found by one scan. Shared and file-backed mappings are never included, and neither is
/// the `MADV_WIPEONFORK` flag (`wf`), which this type never touches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DontForkRanges {
  ranges: Vec<Range<usize>>,
}

impl DontForkRanges {
  /// Reads `/proc/self/smaps` and collects the ranges. The cost grows with the number of
  /// mappings (a few ms for a 50 MB Node heap, tens of ms at 1 GB).
  ///
  /// Another thread can map a new `MADV_DONTFORK` range right after the scan; a child made
  /// then lacks that range. Scan as close to `fork()` as possible.
  ///
  /// # Errors
  /// `open`/`read` failures of `/proc/self/smaps` (no `/proc`);
  /// [`crate::ErrorKind::Unsupported`] off Linux.
  pub fn scan() -> Result<Self> {
    imp::scan()
  }

  /// Parses text in the format of `/proc/<pid>/smaps`. Adjacent ranges are merged.
  ///
  /// ```
  /// let smaps = "\
  /// 7f0000000000-7f0000002000 rw-p 00000000 00:00 0 \n\
  /// Size:                  8 kB\n\
  /// VmFlags: rd wr mr mw me dc ac sd \n\
  /// 7f0000002000-7f0000003000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)\n\
  /// VmFlags: rd wr sh mr mw me ms dc sd \n";
  /// let ranges = shmkit::host_fork::DontForkRanges::parse(smaps);
  /// assert_eq!(ranges.ranges(), &[0x7f00_0000_0000..0x7f00_0000_2000]);
  /// assert_eq!(ranges.bytes(), 8192);
  /// ```
  #[must_use]
  pub fn parse(smaps: &str) -> Self {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut candidate: Option<Range<usize>> = None;
    for line in smaps.lines() {
      if let Some(flags) = line.strip_prefix("VmFlags:") {
        if let Some(range) = candidate.take() {
          if flags.split_whitespace().any(|flag| flag == "dc") {
            match ranges.last_mut() {
              Some(last) if last.end == range.start => last.end = range.end,
              _ => ranges.push(range),
            }
          }
        }
      } else if let Some(header) = Header::parse(line) {
        candidate = header.is_private_anonymous().then_some(header.range);
      }
    }
    Self { ranges }
  }

  /// The ranges, in address order.
  #[must_use]
  pub fn ranges(&self) -> &[Range<usize>] {
    &self.ranges
  }

  /// How many ranges there are.
  #[must_use]
  pub fn len(&self) -> usize {
    self.ranges.len()
  }

  /// Whether no range was found.
  #[must_use]
  pub fn is_empty(&self) -> bool {
    self.ranges.is_empty()
  }

  /// The total size of the ranges in bytes.
  #[must_use]
  pub fn bytes(&self) -> usize {
    self.ranges.iter().map(ExactSizeIterator::len).sum()
  }

  /// Marks every range `MADV_DOFORK`, so a child made by `fork()` gets a copy, until the
  /// returned guard is dropped, which marks them `MADV_DONTFORK` again.
  ///
  /// A range that was unmapped since the scan is skipped (`madvise` fails with `ENOMEM` and
  /// nothing changes). Drop the guard in the parent only: a child that never forks again
  /// gains nothing from it.
  #[must_use = "dropping the guard at once restores MADV_DONTFORK before any fork"]
  pub fn inherit(&self) -> InheritGuard<'_> {
    imp::advise(&self.ranges, true);
    InheritGuard { ranges: self }
  }
}

/// Keeps [`DontForkRanges`] inheritable by children until dropped. See
/// [`DontForkRanges::inherit`].
#[derive(Debug)]
pub struct InheritGuard<'a> {
  ranges: &'a DontForkRanges,
}

impl Drop for InheritGuard<'_> {
  fn drop(&mut self) {
    imp::advise(&self.ranges.ranges, false);
  }
}

/// The first line of a mapping in smaps: `start-end perms offset dev inode [path]`.
struct Header<'a> {
  range: Range<usize>,
  perms: &'a str,
  inode: &'a str,
  path: &'a str,
}

impl<'a> Header<'a> {
  fn parse(line: &'a str) -> Option<Self> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let range = usize::from_str_radix(start, 16).ok()?..usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let _device = fields.next()?;
    let inode = fields.next()?;
    let path = fields.next().unwrap_or("");
    (perms.len() == 4).then_some(Self {
      range,
      perms,
      inode,
      path,
    })
  }

  /// Private, no backing file, and not one of the kernel's special areas ([heap], [stack],
  /// [vdso], …). Named anonymous memory (`[anon:…]`) counts as anonymous.
  fn is_private_anonymous(&self) -> bool {
    self.perms.ends_with('p') && self.inode == "0" && (self.path.is_empty() || self.path.starts_with("[anon:"))
  }
}

#[cfg(target_os = "linux")]
mod imp {
  use std::ops::Range;
  use std::ptr::NonNull;

  use nix::sys::mman::{madvise, MmapAdvise};

  use super::DontForkRanges;
  use crate::error::{Result, SyscallExt};

  pub(super) fn scan() -> Result<DontForkRanges> {
    let text = std::fs::read_to_string("/proc/self/smaps").syscall("open")?;
    Ok(DontForkRanges::parse(&text))
  }

  pub(super) fn advise(ranges: &[Range<usize>], inherit: bool) {
    let advice = if inherit {
      MmapAdvise::MADV_DOFORK
    } else {
      MmapAdvise::MADV_DONTFORK
    };
    for range in ranges {
      let Some(start) = NonNull::new(range.start as *mut std::ffi::c_void) else {
        continue;
      };
      // SAFETY: DOFORK/DONTFORK only decide whether future children get a copy of the range;
      // this process's memory, contents and protection are unchanged. A range unmapped since
      // the scan makes madvise fail with ENOMEM without effect, which is why errors are ignored.
      let _ = unsafe { madvise(start, range.len(), advice) };
    }
  }
}

#[cfg(not(target_os = "linux"))]
mod imp {
  use std::ops::Range;

  use super::DontForkRanges;
  use crate::error::{Error, ErrorKind, Result};

  pub(super) fn scan() -> Result<DontForkRanges> {
    Err(Error::new(
      ErrorKind::Unsupported,
      "MADV_DONTFORK ranges are only listed by Linux (/proc/self/smaps)",
    ))
  }

  pub(super) fn advise(_ranges: &[Range<usize>], _inherit: bool) {}
}
