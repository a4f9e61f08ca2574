//! Typed errors: every failure is data (kind, errno, syscall, object name) until the
//! caller decides how to show it. The Node binding converts them in exactly one place.

use std::fmt;

use nix::errno::Errno;

/// What went wrong, without the details of where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
  /// An OS call failed; [`Error::errno`] and [`Error::syscall`] say which and why.
  Os,
  /// A shared-memory or semaphore name is not portable (see [`crate::ObjectName`]).
  InvalidName,
  /// A size, offset or length is zero, too large, or out of bounds.
  InvalidSize,
  /// Any other argument is out of its documented range (a mode above `0o777`, say).
  InvalidArgument,
  /// The platform lacks the mechanism (for example `/dev/zero` mappings on macOS).
  Unsupported,
  /// A bounded wait ran out of time.
  TimedOut,
  /// A named object to open belongs to another user than the caller accepts
  /// ([`crate::Owner`]); [`Error::owner`] says whose it is.
  ForeignOwner,
}

/// The error type of every fallible shmkit call.
///
/// Formats like Node's `fs` errors: `EEXIST: file already exists, shm_open '/jobs'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
  kind: ErrorKind,
  errno: Option<Errno>,
  syscall: Option<&'static str>,
  name: Option<String>,
  detail: Option<String>,
  owner: Option<u32>,
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
  /// An OS call `syscall` failed with `errno`.
  #[must_use]
  pub fn os(errno: Errno, syscall: &'static str) -> Self {
    Self {
      kind: ErrorKind::Os,
      errno: Some(errno),
      syscall: Some(syscall),
      name: None,
      detail: None,
      owner: None,
    }
  }

  /// A bounded wait in `syscall` ran out of time (`ETIMEDOUT`).
  #[must_use]
  pub fn timed_out(syscall: &'static str) -> Self {
    Self {
      kind: ErrorKind::TimedOut,
      errno: Some(Errno::ETIMEDOUT),
      syscall: Some(syscall),
      name: None,
      detail: None,
      owner: None,
    }
  }

  /// A failure that is not an errno, explained by `detail`.
  #[must_use]
  pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
    Self {
      kind,
      errno: None,
      syscall: None,
      name: None,
      detail: Some(detail.into()),
      owner: None,
    }
  }

  /// The object to open is owned by user `uid`, whom the caller did not accept.
  #[must_use]
  pub fn foreign_owner(uid: u32) -> Self {
    let me = nix::unistd::geteuid().as_raw();
    Self {
      kind: ErrorKind::ForeignOwner,
      errno: None,
      syscall: None,
      name: None,
      detail: Some(format!(
        "the object is owned by uid {uid}, not by this user (uid {me}); pass owner: {uid} (or 'any') to accept it"
      )),
      owner: Some(uid),
    }
  }

  /// The user id owning the object, for [`ErrorKind::ForeignOwner`].
  #[must_use]
  pub fn owner(&self) -> Option<u32> {
    self.owner
  }

  /// Attaches the name (shared-memory name, semaphore name or file path) the call was about.
  #[must_use]
  pub fn with_name(mut self, name: impl Into<String>) -> Self {
    self.name = Some(name.into());
    self
  }

  /// What kind of failure this is.
  #[must_use]
  pub fn kind(&self) -> ErrorKind {
    self.kind
  }

  /// The OS error number, for [`ErrorKind::Os`] (and timeouts, which carry `ETIMEDOUT`).
  #[must_use]
  pub fn errno(&self) -> Option<Errno> {
    self.errno
  }

  /// The failing system call, such as `"shm_open"` or `"mmap"`.
  #[must_use]
  pub fn syscall(&self) -> Option<&'static str> {
    self.syscall
  }

  /// The object the call was about, when there is one.
  #[must_use]
  pub fn name(&self) -> Option<&str> {
    self.name.as_deref()
  }

  /// A human explanation for errors that are not an errno.
  #[must_use]
  pub fn detail(&self) -> Option<&str> {
    self.detail.as_deref()
  }

  /// The errno's symbolic name (`"ENOENT"`), when there is an errno.
  #[must_use]
  pub fn code(&self) -> Option<String> {
    self.errno.map(|e| format!("{e:?}"))
  }
}

impl fmt::Display for Error {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match (self.errno, &self.detail) {
      (Some(errno), None) => {
        write!(f, "{errno:?}: {}", errno.desc().to_lowercase())?;
        if let Some(syscall) = self.syscall {
          write!(f, ", {syscall}")?;
        }
        if let Some(name) = &self.name {
          write!(f, " '{name}'")?;
        }
        Ok(())
      }
      (_, Some(detail)) => {
        f.write_str(detail)?;
        if let Some(name) = &self.name {
          write!(f, " ('{name}')")?;
        }
        Ok(())
      }
      (None, None) => write!(f, "{:?}", self.kind),
    }
  }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
  fn from(e: Error) -> Self {
    match e.errno {
      Some(errno) => std::io::Error::from_raw_os_error(errno as i32),
      None => std::io::Error::other(e.to_string()),
    }
  }
}

/// Tags a nix result with the syscall that produced it.
pub(crate) trait SyscallExt<T> {
  fn syscall(self, name: &'static str) -> Result<T>;
}

impl<T> SyscallExt<T> for nix::Result<T> {
  fn syscall(self, name: &'static str) -> Result<T> {
    self.map_err(|errno| Error::os(errno, name))
  }
}

impl<T> SyscallExt<T> for std::io::Result<T> {
  fn syscall(self, name: &'static str) -> Result<T> {
    self.map_err(|e| Error::os(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)), name))
  }
}
