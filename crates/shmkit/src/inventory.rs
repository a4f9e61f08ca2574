//! What named objects exist: a listing of `/dev/shm` (where Linux keeps POSIX shared-memory
//! objects and, as `sem.NAME`, named semaphores) with size, mode, owner and whether any process
//! still uses them, and an explicit cleanup of the unused ones. Nothing is removed unless
//! asked. Linux only: macOS keeps these objects in the kernel with no way to list them.

use std::time::SystemTime;

use crate::error::Result;

/// What kind of named object an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
  /// A shared-memory object (`shm_open`).
  Segment,
  /// A named semaphore (`sem_open`).
  Semaphore,
}

/// One named object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
  /// The name as `shm_open`/`sem_open` take it, with its leading `/`.
  pub name: String,
  /// Segment or semaphore.
  pub kind: ObjectKind,
  /// Size in bytes.
  pub size: u64,
  /// Permission bits (`0o600`…).
  pub mode: u32,
  /// Owner's user id.
  pub uid: u32,
  /// Last modification.
  pub modified: SystemTime,
  /// Whether some process maps it or holds it open: `Some(true)`, `Some(false)`, or `None`
  /// when some processes could not be inspected (other users', without privileges) and none
  /// of the readable ones uses it.
  pub in_use: Option<bool>,
}

/// Lists named objects whose name (without the leading `/`) starts with `prefix` (all when
/// empty), sorted by name.
///
/// # Errors
/// Reading `/dev/shm` fails; [`crate::ErrorKind::Unsupported`] off Linux.
pub fn list(prefix: &str) -> Result<Vec<ObjectInfo>> {
  imp::list(prefix)
}

/// Removes the objects [`list`] finds for `prefix` that belong to the calling user and that no
/// process is seen using (`in_use != Some(true)`; processes this user cannot inspect are not
/// seen), and returns them. Unlinking only removes a name: a process that still maps the object
/// keeps its memory. With `dry_run` it only returns
/// what it would remove. An empty prefix is refused: cleanup is always about your own names.
///
/// # Errors
/// [`crate::ErrorKind::InvalidName`] for an empty prefix; listing failures. Objects that
/// vanish meanwhile are skipped.
pub fn remove_unused(prefix: &str, dry_run: bool) -> Result<Vec<ObjectInfo>> {
  if prefix.is_empty() || prefix.contains('/') {
    return Err(crate::Error::new(
      crate::ErrorKind::InvalidName,
      "cleanup needs a non-empty prefix without '/' (it never sweeps every name)",
    ));
  }
  let me = nix::unistd::geteuid().as_raw();
  let mut removed = Vec::new();
  for info in list(prefix)? {
    if info.uid != me || info.in_use == Some(true) {
      continue;
    }
    if !dry_run {
      let gone = match info.kind {
        ObjectKind::Segment => crate::posix_shm::unlink(info.name.as_str()),
        ObjectKind::Semaphore => imp::unlink_semaphore(&info.name),
      };
      if gone.is_err() {
        continue; // removed by someone else meanwhile, or not ours after all
      }
    }
    removed.push(info);
  }
  Ok(removed)
}

#[cfg(target_os = "linux")]
mod imp {
  use std::collections::HashSet;
  use std::fs;
  use std::os::unix::fs::MetadataExt;

  use super::{ObjectInfo, ObjectKind};
  use crate::error::{Error, Result, SyscallExt};

  const DIR: &str = "/dev/shm";

  pub(super) fn list(prefix: &str) -> Result<Vec<ObjectInfo>> {
    let (used, complete) = used_paths();
    let mut out = Vec::new();
    for entry in fs::read_dir(DIR).syscall("opendir").map_err(|e| e.with_name(DIR))? {
      let Ok(entry) = entry else { continue };
      let file_name = entry.file_name().to_string_lossy().into_owned();
      let (kind, name) = match file_name.strip_prefix("sem.") {
        Some(rest) => (ObjectKind::Semaphore, rest.to_owned()),
        None => (ObjectKind::Segment, file_name.clone()),
      };
      if !name.starts_with(prefix) {
        continue;
      }
      let Ok(meta) = entry.metadata() else { continue }; // vanished meanwhile
      if !meta.is_file() {
        continue;
      }
      let in_use = if used.contains(&format!("{DIR}/{file_name}")) {
        Some(true)
      } else if complete {
        Some(false)
      } else {
        None
      };
      out.push(ObjectInfo {
        name: format!("/{name}"),
        kind,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
        in_use,
      });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
  }

  /// Every `/dev/shm` path some process maps or holds open, and whether every process could
  /// be inspected.
  fn used_paths() -> (HashSet<String>, bool) {
    let mut used = HashSet::new();
    let mut complete = true;
    let Ok(procs) = fs::read_dir("/proc") else {
      return (used, false);
    };
    for entry in procs.flatten() {
      let pid = entry.file_name();
      if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
        continue;
      }
      let dir = entry.path();
      match fs::read_to_string(dir.join("maps")) {
        Ok(maps) => {
          for line in maps.lines() {
            if let Some(at) = line.find("/dev/shm/") {
              used.insert(line[at..].trim_end_matches(" (deleted)").to_owned());
            }
          }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // exited meanwhile
        Err(_) => complete = false,
      }
      match fs::read_dir(dir.join("fd")) {
        Ok(fds) => {
          for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path()) {
              let target = target.to_string_lossy();
              if target.starts_with("/dev/shm/") {
                used.insert(target.trim_end_matches(" (deleted)").to_owned());
              }
            }
          }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => complete = false,
      }
    }
    (used, complete)
  }

  pub(super) fn unlink_semaphore(name: &str) -> Result<()> {
    let name = crate::ObjectName::new(name)?;
    // SAFETY: a valid NUL-terminated name; sem_unlink only removes the name.
    let ret = unsafe { libc::sem_unlink(name.as_c_str().as_ptr()) };
    nix::errno::Errno::result(ret)
      .map(drop)
      .syscall("sem_unlink")
      .map_err(|e: Error| e.with_name(name.as_str()))
  }
}

#[cfg(not(target_os = "linux"))]
mod imp {
  use super::ObjectInfo;
  use crate::error::{Error, ErrorKind, Result};

  pub(super) fn list(_prefix: &str) -> Result<Vec<ObjectInfo>> {
    Err(Error::new(
      ErrorKind::Unsupported,
      "named objects can only be listed on Linux (/dev/shm)",
    ))
  }
  pub(super) fn unlink_semaphore(_name: &str) -> Result<()> {
    Err(Error::new(
      ErrorKind::Unsupported,
      "named objects can only be listed on Linux (/dev/shm)",
    ))
  }
}
