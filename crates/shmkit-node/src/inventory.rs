//! `SharedMemory.list` and `SharedMemory.removeUnused`: which named objects exist, and an
//! explicit cleanup of your own unused ones.

use napi::bindgen_prelude::*;

use crate::args;
use crate::error::IntoJs;
use crate::memory::SharedMemory;
use crate::options::read_options;

/// One named object in `/dev/shm`.
#[napi(object)]
pub struct NamedObjectInfo {
  /// The name with its leading `/`, as `SharedMemory.open` or `Semaphore.open` take it.
  pub name: String,
  /// `'segment'` (shared memory) or `'semaphore'` (a named semaphore).
  #[napi(ts_type = "'segment' | 'semaphore'")]
  pub kind: String,
  /// Size in bytes.
  pub size: f64,
  /// Permission bits, such as `0o600`.
  pub mode: u32,
  /// The owner's user id.
  pub uid: u32,
  /// Last modification, in milliseconds since the epoch.
  pub modified_ms: f64,
  /// Whether some process maps it or holds it open; `null` when some processes could not be
  /// inspected (other users', without privileges) and none of the others uses it.
  pub in_use: Option<bool>,
}

impl From<shmkit::ObjectInfo> for NamedObjectInfo {
  #[expect(clippy::cast_precision_loss, reason = "sizes and times fit a double")]
  fn from(info: shmkit::ObjectInfo) -> Self {
    Self {
      name: info.name,
      kind: match info.kind {
        shmkit::ObjectKind::Segment => "segment",
        shmkit::ObjectKind::Semaphore => "semaphore",
      }
      .to_owned(),
      size: info.size as f64,
      mode: info.mode,
      uid: info.uid,
      modified_ms: info
        .modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64),
      in_use: info.in_use,
    }
  }
}

/// Options for `SharedMemory.list`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
pub struct ListOptions {
  /// Only the names that start with it (`'jobs'` or `'/jobs'`). Default: every name.
  pub prefix: Option<String>,
}

read_options!(ListOptions { prefix: prefix });

/// Options for `SharedMemory.removeUnused`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
pub struct RemoveUnusedOptions {
  /// `true` only reports what would be removed. Default `false`.
  pub dry_run: Option<bool>,
}

read_options!(RemoveUnusedOptions { dry_run: args::boolean });

fn prefix(env: &Env, value: Unknown<'_>, arg: &str) -> Result<String> {
  let prefix = args::string(env, value, arg)?;
  let bare = prefix.strip_prefix('/').unwrap_or(&prefix).to_owned();
  if bare.contains('/') || bare.contains('\0') {
    return Err(args::invalid_value(
      env,
      arg,
      "must not contain '/' after the first character",
      &format!("'{prefix}'"),
    ));
  }
  Ok(bare)
}

#[napi]
impl SharedMemory {
  /// Lists named shared-memory objects and semaphores (Linux: the entries of `/dev/shm`),
  /// optionally only those whose name starts with `prefix`, with size, mode, owner and whether
  /// any process still uses them. Removes nothing. `ERR_SHM_UNSUPPORTED` on macOS.
  #[napi]
  pub fn list(env: Env, options: Option<ListOptions>) -> Result<Vec<NamedObjectInfo>> {
    let prefix = options.and_then(|o| o.prefix).unwrap_or_default();
    Ok(shmkit::list(&prefix).js(&env)?.into_iter().map(Into::into).collect())
  }

  /// Removes the named objects whose name starts with `prefix` (required, non-empty) that
  /// belong to you and that no process is seen mapping or holding open (processes of other
  /// users may not be inspectable), and returns them. Unlinking removes only the name: a
  /// process that still maps an object keeps its memory. Use it for names
  /// left behind by crashed programs. `{ dryRun: true }` only reports what it would remove.
  #[napi(ts_args_type = "prefix: string, options?: RemoveUnusedOptions | undefined | null")]
  pub fn remove_unused(env: Env, prefix: Unknown, options: Option<Unknown>) -> Result<Vec<NamedObjectInfo>> {
    let prefix = self::prefix(&env, prefix, "prefix")?;
    if prefix.is_empty() {
      return Err(args::invalid_value(
        &env,
        "prefix",
        "must not be empty (cleanup never sweeps every name)",
        "''",
      ));
    }
    let dry_run = RemoveUnusedOptions::from_arg(&env, options)?.dry_run.unwrap_or(false);
    Ok(
      shmkit::remove_unused(&prefix, dry_run)
        .js(&env)?
        .into_iter()
        .map(Into::into)
        .collect(),
    )
  }
}
