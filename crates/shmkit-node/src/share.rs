//! Handing regions to a spawned Node child: `shareWith(regions, spawnOptions)` in the
//! parent, `inherited()` in the child. fd-backed regions travel as extra `stdio`
//! descriptors, named regions and files by name; the list rides in one environment
//! variable. Anonymous and `/dev/zero` regions cannot cross `exec` and are refused.
//!
//! Named semaphores travel by name too (`{ kind: 'semaphore', name }`); a semaphore inside a
//! region travels with its region.

use std::os::fd::{AsRawFd, BorrowedFd};

use napi::bindgen_prelude::*;
use napi::{sys, ValueType};
use shmkit::{Kind, MapOptions, Region};

use crate::args;
use crate::error::{js_error, Class, IntoJs, ERR_INVALID_ARG_VALUE};
use crate::js::{call, global};
use crate::memory::SharedMemory;
use crate::semaphore::Semaphore;

/// The environment variable that carries the list to the child.
pub const ENV_VAR: &str = "SHMKIT_INHERITED";

fn global_function<'e>(env: &'e Env, object: &str, name: &str) -> Result<(Object<'e>, Unknown<'e>)> {
  let owner = global(env, object)?;
  let function: Unknown = owner.get_named_property_unchecked(name)?;
  Ok((owner, function))
}

/// `Object.assign({}, value)`, or `{}` for `undefined`/`null`.
fn shallow_copy<'e>(env: &'e Env, value: Option<Object<'_>>) -> Result<Object<'e>> {
  let (object, assign) = global_function(env, "Object", "assign")?;
  let target = Object::new(env)?;
  let mut call_args = vec![target.to_unknown()];
  call_args.extend(value.map(|v| v.to_unknown()));
  let copy = call(env, object.to_unknown(), assign, &call_args)?;
  // SAFETY: Object.assign returns its first argument, an object.
  unsafe { copy.cast() }
}

/// Describes one region for the child, and its descriptor when it travels in `stdio`.
fn entry_for<'e>(
  env: &'e Env,
  region: &Region,
  read_only: bool,
  index: usize,
  stdio_slot: u32,
) -> Result<(Object<'e>, Option<i32>)> {
  let arg = format!("regions[{index}]");
  let refuse = |reason: &str| args::invalid_value(env, &arg, reason, &format!("kind '{}'", region.kind().as_str()));
  if region.is_private() && !read_only {
    return Err(refuse(
      "is private (MAP_PRIVATE): it is this process's own copy, so a child would never share it",
    ));
  }
  let mut entry = Object::new(env)?;
  entry.set_named_property("readOnly", read_only)?;
  let fd = match (region.kind(), region.name(), region.fd()) {
    (Kind::Memfd, _, Some(fd)) => {
      entry.set_named_property("kind", "memfd")?;
      entry.set_named_property("fd", stdio_slot)?;
      Some(fd.as_raw_fd())
    }
    (Kind::Named, Some(name), _) => {
      entry.set_named_property("kind", "named")?;
      entry.set_named_property("name", name)?;
      None
    }
    (Kind::File, Some(path), _) => {
      entry.set_named_property("kind", "file")?;
      entry.set_named_property("name", path)?;
      None
    }
    _ => {
      return Err(refuse(
        "cannot cross exec: anonymous and /dev/zero memory has no descriptor or name a spawned process could map. \
         Create it with SharedMemory.memfd() (handed over as a descriptor) or SharedMemory.create() (opened by name), \
         or run the child with fork()",
      ))
    }
  };
  Ok((entry, fd))
}

/// Returns a copy of `options` for `child_process.spawn`/`fork` that hands `regions` to the
/// child: fd-backed regions (`memfd`, `fromFd`) are appended to `stdio` as descriptors,
/// named regions, files and named semaphores go by name, and the list is put in the `SHMKIT_INHERITED`
/// environment variable (added to `options.env`, or to a copy of `process.env`). In the
/// child, `inherited()` maps them in the same order. Both processes then see each other's
/// writes.
///
/// Anonymous and `devZero` regions cannot cross `exec` (no descriptor, no name): they throw
/// `ERR_INVALID_ARG_VALUE`, pointing to `SharedMemory.memfd()`, `SharedMemory.create()` or
/// `fork()`. So do private (copy-on-write) regions, which are this process's own copy.
///
/// ```ts
/// import { spawn } from 'node:child_process'
/// const jobs = SharedMemory.memfd(1 << 20)
/// const child = spawn(process.execPath, ['child.mjs'], shareWith([jobs], { stdio: 'inherit' }))
/// // child.mjs: const [jobs] = inherited()
/// ```
#[napi(
  ts_generic_types = "T extends object = {}",
  ts_args_type = "regions: Array<SharedMemory | Semaphore>, options?: T",
  ts_return_type = "Omit<T, 'stdio' | 'env'> & { stdio: Array<'pipe' | 'overlapped' | 'ignore' | 'inherit' | 'ipc' | number | null | undefined>; env: Record<string, string | undefined> }"
)]
pub fn share_with<'e>(env: &'e Env, regions: Unknown<'e>, options: Option<Unknown<'e>>) -> Result<Object<'e>> {
  let mut is_array = false;
  // SAFETY: a type query with a valid out-pointer.
  unsafe { sys::napi_is_array(env.raw(), regions.raw(), &raw mut is_array) };
  if !is_array {
    return Err(args::invalid_type(env, "regions", "an instance of Array", regions));
  }
  let options = args::options(env, options, "options")?;
  let mut result = shallow_copy(env, options)?;

  // stdio, normalised as Node does: a string is used for 0..2; missing entries are undefined.
  let stdio_value: Unknown = result.get_named_property_unchecked("stdio")?;
  let mut stdio: Vec<Unknown> = Vec::new();
  match stdio_value.get_type()? {
    ValueType::Undefined | ValueType::Null => {}
    ValueType::String => stdio.extend([stdio_value; 3]),
    ValueType::Object => {
      // SAFETY: the type was just checked.
      let array: Object = unsafe { stdio_value.cast() }?;
      let length: u32 = array.get_named_property_unchecked("length")?;
      for i in 0..length {
        stdio.push(array.get_element::<Unknown>(i)?);
      }
    }
    _ => {
      return Err(args::invalid_type(
        env,
        "options.stdio",
        "of type string or Array",
        stdio_value,
      ))
    }
  }
  let undefined = ().into_unknown(env)?;
  while stdio.len() < 3 {
    stdio.push(undefined);
  }

  // SAFETY: checked to be an array above.
  let regions: Object = unsafe { regions.cast() }?;
  let count: u32 = regions.get_named_property_unchecked("length")?;
  let mut entries = env.create_array(count)?;
  let mut fds: Vec<i32> = Vec::new();
  for i in 0..count {
    let value: Unknown = regions.get_element(i)?;
    let index = i as usize;
    let arg = format!("regions[{index}]");
    let is_object = value.get_type()? == ValueType::Object;
    if is_object && Semaphore::instance_of(env, &value)? {
      // SAFETY: `value` is a Semaphore instance (checked above; the type tag is checked too).
      let semaphore = unsafe { ClassInstance::<Semaphore>::from_napi_value(env.raw(), value.raw()) }?;
      let Some(name) = semaphore.name() else {
        return Err(args::invalid_value(
          env,
          &arg,
          "is a semaphore inside a region: it travels with its region. Hand over the region and \
           attach in the child with Semaphore.at(region, offset)",
          "an in-region Semaphore",
        ));
      };
      let mut entry = Object::new(env)?;
      entry.set_named_property("kind", "semaphore")?;
      entry.set_named_property("name", name)?;
      entries.set(i, entry)?;
      continue;
    }
    let is_region = is_object && SharedMemory::instance_of(env, &value)?;
    if !is_region {
      return Err(args::invalid_type(
        env,
        &arg,
        "an instance of SharedMemory or Semaphore",
        value,
      ));
    }
    // SAFETY: `value` is a SharedMemory instance (checked above; the type tag is checked too).
    let memory = unsafe { ClassInstance::<SharedMemory>::from_napi_value(env.raw(), value.raw()) }?;
    let region = memory.region(env)?;
    let slot = u32::try_from(stdio.len() + fds.len()).map_err(|_| Error::from_reason("too many descriptors"))?;
    let (entry, fd) = entry_for(env, &region, memory.read_only(), index, slot)?;
    entries.set(i, entry)?;
    fds.extend(fd);
  }
  let mut stdio_array = env.create_array(0)?;
  for value in &stdio {
    stdio_array.insert(*value)?;
  }
  for fd in &fds {
    stdio_array.insert(*fd)?;
  }
  result.set_named_property("stdio", stdio_array)?;

  let env_value: Unknown = result.get_named_property_unchecked("env")?;
  let source = match env_value.get_type()? {
    ValueType::Undefined | ValueType::Null => {
      let process: Object = global(env, "process")?;
      process.get_named_property_unchecked::<Object>("env")?
    }
    // SAFETY: the type was just checked.
    ValueType::Object => unsafe { env_value.cast() }?,
    _ => return Err(args::invalid_type(env, "options.env", "of type object", env_value)),
  };
  let mut child_env = shallow_copy(env, Some(source))?;
  let (json, stringify) = global_function(env, "JSON", "stringify")?;
  let text = call(env, json.to_unknown(), stringify, &[entries.to_unknown()])?;
  child_env.set_named_property(ENV_VAR, text)?;
  result.set_named_property("env", child_env)?;
  Ok(result)
}

/// In a child started with `shareWith(...)` options: maps the regions (and opens the named
/// semaphores) handed over, in the order given to `shareWith`, and returns them (an empty array when there are none). The
/// inherited descriptors are closed after mapping (each region keeps its own) and
/// `SHMKIT_INHERITED` is removed from `process.env`, so call it once.
#[napi(ts_return_type = "Array<SharedMemory | Semaphore>")]
pub fn inherited(env: Env) -> Result<Vec<Either<SharedMemory, Semaphore>>> {
  let process: Object = global(&env, "process")?;
  let mut process_env: Object = process.get_named_property_unchecked("env")?;
  let value: Unknown = process_env.get_named_property_unchecked(ENV_VAR)?;
  if value.get_type()? != ValueType::String {
    return Ok(Vec::new());
  }
  let bad = |reason: &str| {
    js_error(
      &env,
      Class::TypeError,
      ERR_INVALID_ARG_VALUE,
      &format!("The environment variable {ENV_VAR} is invalid: {reason}"),
      &[],
    )
  };
  let (json, parse) = global_function(&env, "JSON", "parse")?;
  let list = call(&env, json.to_unknown(), parse, &[value]).map_err(|_| bad("not JSON"))?;
  let mut is_array = false;
  // SAFETY: a type query with a valid out-pointer.
  unsafe { sys::napi_is_array(env.raw(), list.raw(), &raw mut is_array) };
  if !is_array {
    return Err(bad("not an array"));
  }
  // SAFETY: checked to be an array.
  let list: Object = unsafe { list.cast() }?;
  let count: u32 = list.get_named_property_unchecked("length")?;
  let mut regions = Vec::new();
  for i in 0..count {
    let entry: Unknown = list.get_element(i)?;
    if entry.get_type()? != ValueType::Object {
      return Err(bad("an entry is not an object"));
    }
    // SAFETY: the type was just checked.
    let entry: Object = unsafe { entry.cast() }?;
    regions.push(open_entry(&env, &entry).map_err(|e| match e.status {
      Status::InvalidArg => bad(&e.reason),
      _ => e,
    })?);
  }
  process_env.delete_named_property(ENV_VAR)?;
  Ok(regions)
}

/// Maps one entry of the list (or opens its semaphore); malformed entries fail with
/// `Status::InvalidArg`.
fn open_entry(env: &Env, entry: &Object) -> Result<Either<SharedMemory, Semaphore>> {
  let malformed = |what: &str| Error::new(Status::InvalidArg, format!("an entry has no valid {what}"));
  let kind: Unknown = entry.get_named_property_unchecked("kind")?;
  let kind = (kind.get_type()? == ValueType::String)
    .then(|| args::string(env, kind, "kind"))
    .transpose()?
    .ok_or_else(|| malformed("kind"))?;
  let read_only: Option<bool> = entry.get_named_property_unchecked("readOnly")?;
  let read_only = read_only.unwrap_or(false);
  // A read-only view is copy-on-write, never PROT_READ (as in SharedMemory.open).
  let options = MapOptions::new().read_only(read_only).private(read_only);
  let name = || -> Result<String> {
    let name: Unknown = entry.get_named_property_unchecked("name")?;
    if name.get_type()? != ValueType::String {
      return Err(malformed("name"));
    }
    args::string(env, name, "name")
  };
  let region = match kind.as_str() {
    "memfd" => {
      let fd: Unknown = entry.get_named_property_unchecked("fd")?;
      if fd.get_type()? != ValueType::Number {
        return Err(malformed("fd"));
      }
      let fd = args::integer(env, fd, "fd", 3.0, f64::from(i32::MAX)).map_err(|_| malformed("fd"))?;
      #[expect(clippy::cast_possible_truncation, reason = "an integer in 3..=i32::MAX")]
      let fd = fd as i32;
      // SAFETY: F_GETFD only reads descriptor flags.
      if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(crate::error::to_js(
          env,
          &shmkit::Error::os(shmkit::Errno::last(), "fcntl"),
        ));
      }
      // SAFETY: the descriptor is open (checked above) and only borrowed; from_fd dups it.
      let region = Region::from_fd(unsafe { BorrowedFd::borrow_raw(fd) }, &options).js(env)?;
      // The handed-over descriptor was ours to consume: the region holds its own duplicate.
      // SAFETY: closes a descriptor this process received for exactly this purpose.
      unsafe { libc::close(fd) };
      region
    }
    "named" => {
      let name = name()?;
      let name = shmkit::ObjectName::new(&name).map_err(|_| malformed("name"))?;
      Region::open_with(&name, &options).js(env)?
    }
    "file" => Region::file_with(&name()?, None, &options.create(false)).js(env)?,
    "semaphore" => {
      let name = shmkit::ObjectName::new(&name()?).map_err(|_| malformed("name"))?;
      return Ok(Either::B(Semaphore::wrap(
        env,
        shmkit::Semaphore::open(&name).js(env)?,
      )?));
    }
    other => {
      return Err(Error::new(
        Status::InvalidArg,
        format!("unknown kind '{other}' (was the parent using a newer shmkit?)"),
      ))
    }
  };
  Ok(Either::A(SharedMemory::wrap(env, region, read_only)?))
}
