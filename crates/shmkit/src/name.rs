//! Portable names for POSIX shared-memory objects and named semaphores.
//!
//! POSIX asks for one leading `/` and no other; macOS stops at 31 bytes for `shm_open` and
//! 30 for `sem_open`. We apply the strictest rule everywhere, so a name that works on one
//! platform works on all of them.

use std::ffi::CString;
use std::fmt;

use crate::error::{Error, ErrorKind, Result};

/// The longest name accepted, in bytes, counting the leading `/` (the macOS `sem_open` limit).
pub const MAX_NAME_LEN: usize = 30;

/// A validated object name, always stored with its leading `/`.
///
/// `"jobs"` and `"/jobs"` name the same object; [`ObjectName::as_str`] reports `"/jobs"`.
///
/// ```
/// let name = shmkit::ObjectName::new("jobs").unwrap();
/// assert_eq!(name.as_str(), "/jobs");
/// assert!(shmkit::ObjectName::new("a/b").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectName {
  c_name: CString,
}

impl ObjectName {
  /// Validates `name`: an optional leading `/`, then 1 or more bytes with no `/` and no NUL,
  /// at most [`MAX_NAME_LEN`] bytes in all.
  ///
  /// # Errors
  /// [`ErrorKind::InvalidName`] with the reason.
  pub fn new(name: &str) -> Result<Self> {
    let body = name.strip_prefix('/').unwrap_or(name);
    let reason = if body.is_empty() {
      Some("a name needs at least one character after the leading '/'")
    } else if body.contains('/') {
      Some("a name may contain only one '/', at its start")
    } else if body.contains('\0') {
      Some("a name may not contain NUL bytes")
    } else if body.len() + 1 > MAX_NAME_LEN {
      Some("a name may be at most 30 bytes long, counting the leading '/'")
    } else if body == "." || body == ".." {
      Some("'.' and '..' are not names")
    } else {
      None
    };
    if let Some(reason) = reason {
      return Err(Error::new(ErrorKind::InvalidName, reason).with_name(name));
    }
    let c_name = CString::new(format!("/{body}")).expect("NUL bytes were rejected above");
    Ok(Self { c_name })
  }

  /// The name with its leading `/`.
  #[must_use]
  pub fn as_str(&self) -> &str {
    self.c_name.to_str().expect("built from a &str")
  }

  /// The name as a C string, for `shm_open` and `sem_open`.
  #[must_use]
  pub fn as_c_str(&self) -> &std::ffi::CStr {
    &self.c_name
  }
}

impl fmt::Display for ObjectName {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(self.as_str())
  }
}

impl TryFrom<&str> for ObjectName {
  type Error = Error;
  fn try_from(name: &str) -> Result<Self> {
    Self::new(name)
  }
}

impl TryFrom<&ObjectName> for ObjectName {
  type Error = Error;
  fn try_from(name: &ObjectName) -> Result<Self> {
    Ok(name.clone())
  }
}

/// Makes a fresh portable name, `[A-Za-z][A-Za-z0-9_]*` and at most 14 characters, from
/// `prefix` (truncated to fit) and random letters. Useful for tests and for
/// unnamed-but-fd-backed regions on platforms without `memfd_create`.
#[must_use]
pub fn unique_name(prefix: &str) -> ObjectName {
  use std::sync::atomic::{AtomicU64, Ordering};
  static COUNTER: AtomicU64 = AtomicU64::new(0);
  const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
  let mut seed = u64::from(std::process::id())
    ^ COUNTER
      .fetch_add(1, Ordering::Relaxed)
      .wrapping_mul(0x9E37_79B9_7F4A_7C15)
    ^ std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .map_or(0, |d| u64::from(d.subsec_nanos()) << 20 ^ d.as_secs());
  let prefix: String = prefix.chars().filter(char::is_ascii_alphanumeric).take(6).collect();
  let prefix = if prefix.starts_with(|c: char| c.is_ascii_alphabetic()) {
    prefix
  } else {
    format!("s{prefix}")
  };
  let mut name = prefix;
  while name.len() < 14 {
    // xorshift: cheap, and unique enough together with the pid and counter.
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    name.push(char::from(ALPHABET[usize::try_from(seed % 36).expect("small")]));
  }
  ObjectName::new(&name).expect("generated names are valid")
}
