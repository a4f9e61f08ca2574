//! `Channel`: a `shmkit::Channel` seen from JavaScript: bytes or structured-clone objects in,
//! `Uint8Array`s out, with a zero-copy view for large messages.
//!
//! The common path (a free slot to send to, a ready message to take) runs in JavaScript
//! (`channel.js`) over the region's own buffer; these methods do the rest: waiting, the end
//! of the stream, recovering slots of dead processes, argument errors, and everything when
//! the handle has no buffer to work through.
//!
//! Lifetime rules (why this file looks the way it does):
//! - Sent bytes are read straight from the caller's `ArrayBufferView`/`ArrayBuffer` into the
//!   ring (one copy); received bytes are copied into a fresh `ArrayBuffer` (one copy).
//! - A view (`tryReceiveView`/`receiveViewSync`) is an external `ArrayBuffer` over the
//!   message's slot, through an alias of the slot's pages where the region allows one. Its
//!   finaliser holds an `Arc<Region>` and the alias, so the mapping outlives every view; the
//!   slot is held (producers cannot reuse it) until `release()`, the next receive, `close()`
//!   or GC of the channel object, which first blank the alias in place (views keep their
//!   length and read zeros; native work still holding the view, such as a zlib job, reads
//!   zeros instead of aborting), or, without an alias, detach the buffer.
//! - Object mode serialises with Node's own `v8.serialize` / `v8.deserialize` (the
//!   structured clone that `process.send` uses with `serialization: 'advanced'`).

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::{sys, ValueType};
use shmkit::{Alias, Recv, Region, SendStatus};

use crate::args;
use crate::error::{abort_error, closed, IntoJs};
use crate::options::read_options;
use crate::promise::{abort_reason, settled, signal_option, AbortHook, Deferred};
use crate::raw::{self, call, global};
use crate::waiter::{self, WaitId, Word};

/// Options for `Channel.init`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code, reason = "declares the TypeScript type; options are parsed by hand")]
pub struct ChannelInitOptions {
  /// Slots in the ring: how many messages can wait unreceived before senders wait. A power
  /// of two from 2 to 1048576.
  pub capacity: u32,
  /// The largest message in bytes (after serialisation in object mode), from 1 to 2^30.
  /// Every slot reserves this much: the channel takes
  /// `Channel.size(capacity, maxMessageSize)` bytes of the region.
  pub max_message_size: u32,
  /// `true`: this handle sends any value `v8.serialize` accepts (not `undefined`) and
  /// receives the deserialised values, like `process.send`. Default `false`: bytes.
  pub object_mode: Option<bool>,
}

/// Options for `Channel.at`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default)]
pub struct ChannelOptions {
  /// As in `ChannelInitOptions`. Default `false`.
  pub object_mode: Option<bool>,
}

read_options!(ChannelOptions {
  object_mode: args::boolean
});

/// Options for the blocking `sendSync` and `receiveSync` forms.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code, reason = "declares the TypeScript type; options are parsed by hand")]
pub struct ChannelWaitOptions {
  /// The longest to wait, in milliseconds (fractions allowed). `0` tries once; `Infinity`
  /// or absent waits as long as it takes.
  pub timeout: Option<f64>,
}

/// Options for the async `send` and `receive`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code, reason = "declares the TypeScript type; options are parsed by hand")]
pub struct ChannelAsyncOptions {
  /// The longest to wait, in milliseconds (fractions allowed). `0` tries once; `Infinity`
  /// or absent waits as long as it takes.
  pub timeout: Option<f64>,
  /// Aborting it rejects the pending operation with an `AbortError` (`code` `'ABORT_ERR'`,
  /// `cause` the signal's reason), unless it already completed.
  #[napi(ts_type = "AbortSignal")]
  pub signal: Option<()>,
}

/// How long a receive may wait.
#[derive(Clone, Copy)]
enum Wait {
  /// Not at all: `try*` forms.
  No,
  /// At most this long (`None`: as long as it takes).
  Up(Option<Duration>),
}

/// A held zero-copy view: the message's slot and the external buffer over it.
struct View {
  held: shmkit::Held,
  buffer: raw::Strong,
  /// The view's own mapping of the slot's pages, blanked on release; `None` where the region
  /// cannot be aliased (the buffer is then detached on release).
  alias: Option<Arc<Alias>>,
}

/// What a view's buffer keeps alive until V8 frees it.
type ViewHold = (Arc<Region>, Option<Arc<Alias>>);

/// The message a handle holds for a view made in `channel.js`, in memory JavaScript reads and
/// writes through `_heldCell()` (two 32-bit words), so that holding the next message there
/// needs no call into this binding. Only the JS thread touches it.
#[repr(C)]
#[derive(Default)]
struct HeldCell {
  /// 1 while a message is held, else 0.
  held: AtomicU32,
  /// The held message's position (its low 32 bits, all a release needs).
  position: AtomicU32,
}

impl HeldCell {
  fn hold(&self, position: u32) {
    self.position.store(position, Relaxed);
    self.held.store(1, Relaxed);
  }

  /// The held position, if any, which the caller must release: the cell is empty after.
  fn take(&self) -> Option<u64> {
    (self.held.swap(0, Relaxed) == 1).then(|| u64::from(self.position.load(Relaxed)))
  }
}

/// The cell's buffer finaliser: drops the `Arc<HeldCell>` that kept its memory.
unsafe extern "C" fn drop_held_cell(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
  // SAFETY: `hint` is the `Box<Arc<HeldCell>>` leaked in `held_cell`, reclaimed once here.
  drop(unsafe { Box::from_raw(hint.cast::<Arc<HeldCell>>()) });
}

/// A bounded message queue inside a `SharedMemory` region, shared by every process that
/// maps it: many senders, many receivers, each message received exactly once, in order per
/// sender. The layout is in docs/layout.md, so Rust (`shmkit::Channel`) and other languages
/// can be on the other end.
///
/// - A full channel makes `sendSync` wait (and `trySend` return `false`); memory never grows.
/// - Every receive form returns `null` when there is no message: nothing yet, the
///   timeout passed, or the end of the stream (then `ended` is `true`).
/// - `close()`, by anyone, ends the stream: sends throw `ERR_SHM_CLOSED`, and receivers get
///   every message sent before, then the end.
/// - A process killed while sending never delivers half a message, and one killed while
///   holding a message frees its slot for the others.
///
/// ```ts
/// const shm = SharedMemory.anonymous(Channel.size(64, 4096))
/// const channel = Channel.init(shm, 0, { capacity: 64, maxMessageSize: 4096 })
/// fork(() => { Channel.at(shm, 0).sendSync('hello'); return 0 })
/// const message = channel.receiveSync()   // Uint8Array [104, 101, 108, 108, 111]
/// ```
#[napi(custom_finalize)]
pub struct Channel {
  inner: Arc<shmkit::Channel>,
  object_mode: bool,
  /// Shared with this handle's pending async receives, which may find the end.
  ended: Rc<Cell<bool>>,
  view: Option<View>,
  /// The message held for a zero-copy view that `channel.js` makes through its own buffer
  /// (claimed there, or by `_receiveHeldSync`), freed with the native view: on `release()`,
  /// the next native receive, `close()` or GC.
  held: Arc<HeldCell>,
  /// A strong reference to the `SharedMemory` handle it was made with.
  memory: raw::Strong,
  offset: usize,
}

/// The external buffer's finaliser: drops the `Arc<Region>` that kept the mapping alive.
unsafe extern "C" fn drop_region(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
  // SAFETY: `hint` is the `Box<ViewHold>` leaked in `view_of`, reclaimed exactly once here.
  drop(unsafe { Box::from_raw(hint.cast::<ViewHold>()) });
}

/// `process.getBuiltinModule('node:v8')[name]`, for object mode.
fn v8_function<'e>(env: &'e Env, name: &str) -> Result<(Object<'e>, Unknown<'e>)> {
  let process: Object = global(env, "process")?;
  let get_builtin: Unknown = process.get_named_property_unchecked("getBuiltinModule")?;
  if get_builtin.get_type()? != ValueType::Function {
    return Err(Error::from_reason(
      "object mode needs process.getBuiltinModule (Node 20.16 or later)",
    ));
  }
  let module_name = env.create_string("node:v8")?.to_unknown();
  let v8 = call(env, process.to_unknown(), get_builtin, &[module_name])?;
  // SAFETY: getBuiltinModule returned the module object.
  let v8: Object = unsafe { v8.cast() }?;
  let function: Unknown = v8.get_named_property_unchecked(name)?;
  Ok((v8, function))
}

/// `timeout` from an options object: `None` waits as long as it takes.
fn wait_timeout(env: &Env, options: Option<Unknown<'_>>) -> Result<Option<Duration>> {
  let options = args::options(env, options, "options")?;
  args::timeout_option(env, options.as_ref(), "options")
}

fn object_mode_option(env: &Env, options: Option<&Object<'_>>) -> Result<bool> {
  Ok(ChannelOptions::parse(env, options)?.object_mode.unwrap_or(false))
}

#[napi]
impl Channel {
  /// Bytes a channel of `capacity` slots for messages of up to `maxMessageSize` bytes takes
  /// in a region: a 512-byte header plus `capacity` slots of `16 + maxMessageSize` bytes
  /// rounded up to 64.
  #[napi(ts_args_type = "capacity: number, maxMessageSize: number")]
  pub fn size(env: Env, capacity: Unknown, max_message_size: Unknown) -> Result<f64> {
    let capacity = args::integer(&env, capacity, "capacity", 2.0, f64::from(shmkit::CHANNEL_MAX_CAPACITY))?;
    let max = args::integer(
      &env,
      max_message_size,
      "maxMessageSize",
      1.0,
      f64::from(shmkit::CHANNEL_MAX_MESSAGE_SIZE),
    )?;
    #[expect(
      clippy::cast_possible_truncation,
      clippy::cast_sign_loss,
      reason = "integers range-checked above"
    )]
    let size = shmkit::Channel::size(capacity as u32, max as u32).js(&env)?;
    #[expect(clippy::cast_precision_loss, reason = "at most 2^50, exact in a double")]
    Ok(size as f64)
  }

  /// Creates an empty, open channel at `offset` (a multiple of 64) of `memory`, overwriting
  /// those bytes. Do it once, before other processes attach with `Channel.at`.
  #[napi(
    factory,
    ts_args_type = "memory: SharedMemory, offset: number, options: ChannelInitOptions"
  )]
  pub fn init(env: Env, memory: Unknown, offset: Unknown, options: Unknown) -> Result<Self> {
    let memory_value = memory.raw();
    let region = crate::memory::SharedMemory::region_arg(&env, memory, "memory")?;
    let offset = args::offset(&env, offset, "offset")?;
    let Some(options) = args::options(&env, Some(options), "options")? else {
      return Err(args::invalid_type(&env, "options", "of type object", options));
    };
    let required = |key: &str, max: u32| -> Result<u32> {
      let value = args::integer_option(&env, Some(&options), key, "options", 1.0, f64::from(max))?;
      let Some(value) = value else {
        return Err(args::invalid_type(
          &env,
          &format!("options.{key}"),
          "of type number",
          undefined(&env)?,
        ));
      };
      #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "an integer range-checked above"
      )]
      Ok(value as u32)
    };
    let capacity = required("capacity", shmkit::CHANNEL_MAX_CAPACITY)?;
    let max = required("maxMessageSize", shmkit::CHANNEL_MAX_MESSAGE_SIZE)?;
    let object_mode = object_mode_option(&env, Some(&options))?;
    Ok(Self {
      inner: Arc::new(shmkit::Channel::init_in(region, offset, capacity, max).js(&env)?),
      object_mode,
      ended: Rc::default(),
      view: None,
      held: Arc::default(),
      memory: raw::Strong::new(&env, memory_value)?,
      offset,
    })
  }

  /// Attaches to the channel another process (or this one) created at `offset` of `memory`.
  /// Throws `ERR_OUT_OF_RANGE` if the bytes there are not a channel.
  #[napi(
    factory,
    ts_args_type = "memory: SharedMemory, offset?: number, options?: ChannelOptions | undefined | null"
  )]
  pub fn at(env: Env, memory: Unknown, offset: Option<Unknown>, options: Option<Unknown>) -> Result<Self> {
    let memory_value = memory.raw();
    let region = crate::memory::SharedMemory::region_arg(&env, memory, "memory")?;
    let offset = match offset {
      Some(o) if o.get_type()? != ValueType::Undefined => args::offset(&env, o, "offset")?,
      _ => 0,
    };
    let options = args::options(&env, options, "options")?;
    let object_mode = object_mode_option(&env, options.as_ref())?;
    Ok(Self {
      inner: Arc::new(shmkit::Channel::at(region, offset).js(&env)?),
      object_mode,
      ended: Rc::default(),
      view: None,
      held: Arc::default(),
      memory: raw::Strong::new(&env, memory_value)?,
      offset,
    })
  }

  /// The `SharedMemory` the channel lives in (the handle passed to `init` or `at`).
  #[napi(getter, ts_return_type = "SharedMemory")]
  pub fn memory(&self, env: Env) -> Result<Unknown<'_>> {
    self.memory.get(&env)
  }

  /// The channel's offset in its memory, in bytes.
  #[napi(getter)]
  pub fn offset(&self) -> f64 {
    #[expect(clippy::cast_precision_loss, reason = "offsets are below 2^53")]
    let offset = self.offset as f64;
    offset
  }

  /// Slots in the ring.
  #[napi(getter)]
  pub fn capacity(&self) -> u32 {
    self.inner.capacity()
  }

  /// The largest message in bytes.
  #[napi(getter)]
  pub fn max_message_size(&self) -> u32 {
    self.inner.max_message_size()
  }

  /// Whether some process closed the channel (messages sent before may still be waiting).
  #[napi(getter)]
  pub fn closed(&self) -> bool {
    self.inner.is_closed()
  }

  /// Whether a receive on this handle found the end of the stream: closed, and every
  /// message sent before received.
  #[napi(getter)]
  pub fn ended(&self) -> bool {
    self.ended.get()
  }

  /// Whether this handle sends and receives values (`v8.serialize`) instead of bytes.
  #[napi(getter)]
  pub fn object_mode(&self) -> bool {
    self.object_mode
  }

  fn payload(&self, env: &Env, data: Unknown<'_>) -> Result<args::Bytes> {
    if !self.object_mode {
      return args::Bytes::of(env, data);
    }
    if data.get_type()? == ValueType::Undefined {
      return Err(args::invalid_type(
        env,
        "value",
        "defined (undefined means no message)",
        data,
      ));
    }
    let (v8, serialize) = v8_function(env, "serialize")?;
    let buffer = call(env, v8.to_unknown(), serialize, &[data])?;
    args::Bytes::of(env, buffer).map(|bytes| args::Bytes::Owned(bytes.as_slice().to_vec()))
  }

  fn sent(env: &Env, status: SendStatus) -> Result<bool> {
    match status {
      SendStatus::Sent => Ok(true),
      SendStatus::Full => Ok(false),
      SendStatus::Closed => Err(closed(env, "Channel")),
    }
  }

  /// Sends a message if a slot is free now: `true` if sent, `false` if the channel is full.
  /// Throws `ERR_SHM_CLOSED` once the channel is closed, `ERR_OUT_OF_RANGE` for a message
  /// longer than `maxMessageSize`.
  #[napi(ts_args_type = "data: string | ArrayBufferView | ArrayBuffer | unknown")]
  pub fn try_send(&self, env: Env, data: Unknown) -> Result<bool> {
    let bytes = self.payload(&env, data)?;
    let status = self.inner.try_send(bytes.as_slice()).js(&env)?;
    Self::sent(&env, status)
  }

  /// Sends a message, blocking this thread (and the event loop) while the channel is full,
  /// at most `timeout` milliseconds: `true` if sent, `false` if the time ran out.
  #[napi(
    ts_args_type = "data: string | ArrayBufferView | ArrayBuffer | unknown, options?: ChannelWaitOptions | undefined | null"
  )]
  pub fn send_sync(&self, env: Env, data: Unknown, options: Option<Unknown>) -> Result<bool> {
    let timeout = wait_timeout(&env, options)?;
    let bytes = self.payload(&env, data)?;
    let status = self.inner.send(bytes.as_slice(), timeout).js(&env)?;
    Self::sent(&env, status)
  }

  /// Gives back the slot of the view from the last `tryReceiveView`/`receiveViewSync`: from
  /// now on the view is no longer the message (it may read zeros, or later messages in that
  /// slot). Does nothing if no view is held.
  #[napi]
  pub fn release(&mut self, env: Env) {
    if let Some(position) = self.held.take() {
      self.inner.release_claim(position);
    }
    if let Some(view) = self.view.take() {
      // Blanking in place, not detaching, where possible: native work still holding the view
      // (a zlib job between chunks) aborts the process when its input is detached.
      let blanked = view.alias.as_ref().is_some_and(|alias| alias.blank().is_ok());
      if !blanked {
        if let Ok(buffer) = view.buffer.get(&env) {
          // Detaching (without an alias) means no JS view reaches the slot once it is freed.
          // SAFETY: `buffer` is a live ArrayBuffer handle of this env.
          let _ = unsafe { sys::napi_detach_arraybuffer(env.raw(), buffer.raw()) };
        }
      }
      view.buffer.delete(&env);
      self.inner.release(view.held);
    }
  }

  /// For `channel.js`: an `ArrayBuffer` over this handle's held cell (a `Uint32Array` of two:
  /// 1 while a message is held for a view, and its position's low 32 bits). JavaScript that
  /// claims a message for a view records it there; `release()`, the next native receive,
  /// `close()` and GC free it, so the slot comes back even when the memory handle the view
  /// was made through has been closed meanwhile. `null` where the runtime forbids external
  /// buffers (and so has no JavaScript path either).
  #[napi(js_name = "_heldCell", skip_typescript)]
  pub fn held_cell(&self, env: Env) -> Result<Option<Unknown<'_>>> {
    // Atomics inside, so JavaScript's writes go through interior mutability.
    let data = Arc::as_ptr(&self.held).cast_mut().cast::<c_void>();
    let hint: *mut Arc<HeldCell> = Box::into_raw(Box::new(self.held.clone()));
    // SAFETY: `data` is valid for the cell's 8 bytes until the finaliser drops `hint`.
    let created =
      unsafe { raw::external_arraybuffer(&env, data, size_of::<HeldCell>(), Some(drop_held_cell), hint.cast()) };
    match created {
      // SAFETY: a live ArrayBuffer handle of this env.
      Ok(buffer) => Ok(Some(unsafe { Unknown::from_raw_unchecked(env.raw(), buffer) })),
      Err(status) => {
        // SAFETY: napi did not take the hint, so it is still ours to free.
        drop(unsafe { Box::from_raw(hint) });
        if status == sys::Status::napi_no_external_buffers_allowed {
          return Ok(None);
        }
        Err(Error::from_status(Status::from(status)))
      }
    }
  }

  /// For `channel.js`: as `receiveViewSync`, but the message is recorded in the held cell as
  /// one claimed in JavaScript is (`_heldCell`), and the call returns its position (low 32
  /// bits) for JavaScript to view through its own buffer: no external buffer and no alias
  /// per message. `null` as `receiveViewSync`.
  #[napi(
    js_name = "_receiveHeldSync",
    skip_typescript,
    ts_args_type = "options?: ChannelWaitOptions | undefined | null"
  )]
  pub fn receive_held_sync(&mut self, env: Env, options: Option<Unknown>) -> Result<Option<u32>> {
    let timeout = wait_timeout(&env, options)?;
    let Some(held) = self.next_held(&env, Wait::Up(timeout))? else {
      return Ok(None);
    };
    #[expect(clippy::cast_possible_truncation, reason = "a release needs only the low 32 bits")]
    let position = held.into_position() as u32;
    self.held.hold(position);
    Ok(Some(position))
  }

  /// One receive: the outcome as a JS value (a copy, a view, or a deserialised value), or
  /// `null` when there is no message.
  fn take<'e>(&mut self, env: &'e Env, wait: Wait, as_view: bool) -> Result<Unknown<'e>> {
    let Some(held) = self.next_held(env, wait)? else {
      return null(env);
    };
    if as_view && !self.object_mode {
      match self.view_of(env, &held) {
        Ok(Some((view, buffer, alias))) => {
          self.view = Some(View { held, buffer, alias });
          return Ok(view);
        }
        // The runtime forbids external buffers (Electron's V8 sandbox): copy instead.
        Ok(None) => return copy_out(env, &self.inner, held),
        Err(e) => {
          self.inner.release(held);
          return Err(e);
        }
      }
    }
    message_value(env, &self.inner, held, self.object_mode)
  }

  /// `take` for a method's return value, which napi ties to the handle's borrow.
  fn take_out(&mut self, env: Env, wait: Wait, as_view: bool) -> Result<Unknown<'_>> {
    let value = self.take(&env, wait, as_view)?;
    // SAFETY: the value lives in the current handle scope, which outlives this call's return.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value.raw()) })
  }

  /// The start of every receive: lets the view this handle holds go, then takes the next
  /// message (`None`: nothing before the timeout, or the end of the stream, which it records).
  fn next_held(&mut self, env: &Env, wait: Wait) -> Result<Option<shmkit::Held>> {
    self.release(*env);
    let outcome = match wait {
      Wait::No => self.inner.try_recv(),
      Wait::Up(timeout) => self.inner.recv(timeout),
    }
    .js(env)?;
    Ok(match outcome {
      Recv::Message(message) => Some(message.into_held()),
      Recv::Empty => None,
      Recv::Closed => {
        self.ended.set(true);
        None
      }
    })
  }

  /// An external `ArrayBuffer` over the held message's payload (through an alias of its
  /// pages where the region allows one), wrapped in a `Uint8Array`, a strong reference to the
  /// buffer and the alias (to cut it off on release); `None` where the runtime forbids
  /// external buffers, or no alias can be made now (out of mappings): the caller copies.
  #[expect(clippy::type_complexity, reason = "a private helper's three results")]
  fn view_of<'e>(
    &self,
    env: &'e Env,
    held: &shmkit::Held,
  ) -> Result<Option<(Unknown<'e>, raw::Strong, Option<Arc<Alias>>)>> {
    let region = self.inner.region();
    let payload = self.inner.held_ptr(held);
    let (data, alias) = if held.is_empty() {
      (payload, None)
    } else {
      match region.alias_range(payload as usize - region.as_ptr() as usize, held.len()) {
        // SAFETY: `at` is the payload's offset inside the alias, which covers its pages.
        Ok(Some((alias, at))) => (unsafe { alias.as_ptr().add(at) }, Some(Arc::new(alias))),
        Ok(None) => (payload, None),
        Err(_) => return Ok(None),
      }
    };
    let hint: *mut ViewHold = Box::into_raw(Box::new((region.clone(), alias.clone())));
    // SAFETY: the pointer and length are the held message's payload inside the mapping or
    // its alias, which the `Arc`s in `hint` keep mapped until `drop_region` runs.
    let created = unsafe { raw::external_arraybuffer(env, data.cast(), held.len(), Some(drop_region), hint.cast()) };
    let array_buffer = match created {
      Ok(array_buffer) => array_buffer,
      Err(status) => {
        // SAFETY: napi did not take the hint, so it is still ours to free.
        drop(unsafe { Box::from_raw(hint) });
        if status == sys::Status::napi_no_external_buffers_allowed {
          return Ok(None);
        }
        return Err(Error::from_status(Status::from(status)));
      }
    };
    let reference = raw::Strong::new(env, array_buffer)?;
    match uint8_array(env, array_buffer, held.len()) {
      Ok(view) => Ok(Some((view, reference, alias))),
      Err(e) => {
        reference.delete(env);
        Err(e)
      }
    }
  }

  /// The next message if one is ready now (a copy, or a value in object mode), else
  /// `null` (see `ended`).
  #[napi(ts_return_type = "Uint8Array | any | null")]
  pub fn try_receive(&mut self, env: Env) -> Result<Unknown<'_>> {
    self.take_out(env, Wait::No, false)
  }

  /// The next message, blocking this thread (and the event loop) at most `timeout`
  /// milliseconds for one; `null` if the time ran out or the stream ended (see `ended`).
  #[napi(
    ts_args_type = "options?: ChannelWaitOptions | undefined | null",
    ts_return_type = "Uint8Array | any | null"
  )]
  pub fn receive_sync(&mut self, env: Env, options: Option<Unknown>) -> Result<Unknown<'_>> {
    let timeout = wait_timeout(&env, options)?;
    self.take_out(env, Wait::Up(timeout), false)
  }

  /// The next message if one is ready now, copied into `target` (an `ArrayBufferView` or
  /// `ArrayBuffer` of at least `maxMessageSize` bytes, from its start): the message's length
  /// in bytes, or `null` (see `ended`). No new buffer per message, so many small messages
  /// cost no allocation; the bytes are the message as sent (serialised in object mode).
  #[napi(
    ts_args_type = "target: ArrayBufferView | ArrayBuffer",
    ts_return_type = "number | null"
  )]
  pub fn try_receive_into(&mut self, env: Env, target: Unknown) -> Result<Unknown<'_>> {
    let value = self.take_into(&env, target, Wait::No)?;
    // SAFETY: as in `try_receive`.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value.raw()) })
  }

  /// As `tryReceiveInto`, blocking this thread (and the event loop) at most `timeout`
  /// milliseconds for a message; `null` if the time ran out or the stream ended.
  #[napi(
    ts_args_type = "target: ArrayBufferView | ArrayBuffer, options?: ChannelWaitOptions | undefined | null",
    ts_return_type = "number | null"
  )]
  pub fn receive_into_sync(&mut self, env: Env, target: Unknown, options: Option<Unknown>) -> Result<Unknown<'_>> {
    let timeout = wait_timeout(&env, options)?;
    let value = self.take_into(&env, target, Wait::Up(timeout))?;
    // SAFETY: as in `try_receive`.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value.raw()) })
  }

  /// One receive into the caller's memory: the length as a JS number, or `null`.
  fn take_into<'e>(&mut self, env: &'e Env, target: Unknown<'_>, wait: Wait) -> Result<Unknown<'e>> {
    let args::Bytes::Borrowed(into, room) = args::Bytes::memory_of(
      env,
      target,
      "target",
      "an instance of ArrayBuffer, TypedArray or DataView",
    )?
    else {
      return Err(args::invalid_type(
        env,
        "target",
        "an instance of ArrayBuffer, TypedArray or DataView",
        target,
      ));
    };
    let max = self.inner.max_message_size() as usize;
    if room < max {
      return Err(args::out_of_range(
        env,
        "target.byteLength",
        &format!(">= maxMessageSize ({max})"),
        &room.to_string(),
      ));
    }
    let Some(held) = self.next_held(env, wait)? else {
      return null(env);
    };
    let len = held.len();
    // SAFETY: source: the held payload, `len` bytes inside the mapping; destination: the
    // caller's `room >= max >= len` writable bytes, which no JS can detach during this call.
    // The target may itself be a view of the region, so the copy allows overlap.
    unsafe { std::ptr::copy(self.inner.held_ptr(&held), into.cast_mut(), len) };
    self.inner.release(held);
    #[expect(clippy::cast_precision_loss, reason = "at most 2^30")]
    env.create_double(len as f64).map(|n| n.to_unknown())
  }

  /// As `tryReceive`, without a copy: a `Uint8Array` over the message inside the ring, valid
  /// until `release()` or the next receive on this handle; after that it may read zeros or a
  /// later message, so copy what you keep. Its slot stays taken until then, so release
  /// views promptly. Bytes mode only (object mode returns the value, as `tryReceive`).
  #[napi(ts_return_type = "Uint8Array | null")]
  pub fn try_receive_view(&mut self, env: Env) -> Result<Unknown<'_>> {
    self.take_out(env, Wait::No, true)
  }

  /// As `receiveSync`, without a copy: see `tryReceiveView`.
  #[napi(
    ts_args_type = "options?: ChannelWaitOptions | undefined | null",
    ts_return_type = "Uint8Array | null"
  )]
  pub fn receive_view_sync(&mut self, env: Env, options: Option<Unknown>) -> Result<Unknown<'_>> {
    let timeout = wait_timeout(&env, options)?;
    self.take_out(env, Wait::Up(timeout), true)
  }

  /// Sends a message without blocking: resolves `true` once it is in the channel, `false`
  /// if `options.timeout` milliseconds passed while the channel stayed full. Rejects with
  /// `ERR_SHM_CLOSED` once the channel is closed and with an `AbortError` when
  /// `options.signal` aborts first. The bytes are copied at the call, so the caller may
  /// reuse its buffer at once. A pending send keeps the process alive.
  #[napi(
    ts_args_type = "data: string | ArrayBufferView | ArrayBuffer | unknown, options?: ChannelAsyncOptions | undefined | null",
    ts_return_type = "Promise<boolean>"
  )]
  pub fn send<'e>(&self, env: &'e Env, data: Unknown, options: Option<Unknown>) -> Result<Object<'e>> {
    let bytes = self.payload(env, data)?.as_slice().to_vec();
    self.start(env, Work::Send(bytes), options)
  }

  /// The next message without blocking: resolves with it (a copy, or the value in object
  /// mode), or `null` when `options.timeout` milliseconds pass first or the stream
  /// ended (then `ended` is `true`). Rejects with an `AbortError` when `options.signal`
  /// aborts first. Releases this handle's view. A wake from another process lands in the
  /// event loop without a thread in between where the kernel allows (see `waitAsync`).
  /// `for await (const message of channel)` receives until the end of the stream.
  #[napi(
    ts_args_type = "options?: ChannelAsyncOptions | undefined | null",
    ts_return_type = "Promise<Uint8Array | any | null>"
  )]
  pub fn receive<'e>(&mut self, env: &'e Env, options: Option<Unknown>) -> Result<Object<'e>> {
    self.release(*env);
    let work = Work::Receive {
      object_mode: self.object_mode,
      ended: self.ended.clone(),
    };
    self.start(env, work, options)
  }

  fn start<'e>(&self, env: &'e Env, work: Work, options: Option<Unknown>) -> Result<Object<'e>> {
    let options = args::options(env, options, "options")?;
    let timeout = args::timeout_option(env, options.as_ref(), "options")?;
    let signal = signal_option(env, options.as_ref(), "options")?;
    if let Some(signal) = &signal {
      if let Some(reason) = abort_reason(signal)? {
        return settled::<bool>(env, Err(abort_error(env, Some(reason))));
      }
    }
    let (deferred, promise) = Deferred::new(env)?;
    let op = Rc::new(RefCell::new(Op {
      channel: self.inner.clone(),
      work,
      deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
      deferred: Some(deferred),
      abort: None,
      armed: None,
    }));
    if let Some(signal) = &signal {
      let on_abort = Rc::downgrade(&op);
      let hook = AbortHook::listen(env, signal, move |env, reason| {
        if let Some(op) = on_abort.upgrade() {
          finish(env, &op, Err(abort_error(env, Some(reason))));
        }
      });
      match hook {
        Ok(hook) => op.borrow_mut().abort = Some(hook),
        Err(e) => {
          finish(env, &op, Err(e));
          return Ok(promise);
        }
      }
    }
    step(env, &op);
    Ok(promise)
  }

  /// Ends the stream for everyone: sends throw `ERR_SHM_CLOSED` from now on, and receivers
  /// get every message sent before, then the end. Also releases this handle's view.
  /// Idempotent.
  #[napi]
  pub fn close(&mut self, env: Env) {
    self.release(env);
    self.inner.close();
  }
}

/// A wait the channel counts this process in, given back when dropped: when the armed wait
/// ends, is cancelled, or goes with its env.
struct Planned {
  channel: Arc<shmkit::Channel>,
  plan: Option<shmkit::WaitPlan>,
}

impl Drop for Planned {
  fn drop(&mut self) {
    if let Some(plan) = self.plan.take() {
      // A header overwritten meanwhile is reported by the next poll, not here.
      let _ = self.channel.end_wait(plan);
    }
  }
}

/// What an async operation moves.
enum Work {
  Send(Vec<u8>),
  Receive { object_mode: bool, ended: Rc<Cell<bool>> },
}

/// One pending `send()` or `receive()`. JS thread only.
struct Op {
  channel: Arc<shmkit::Channel>,
  work: Work,
  deadline: Option<Instant>,
  deferred: Option<Deferred>,
  abort: Option<AbortHook>,
  armed: Option<WaitId>,
}

/// Settles the operation (once: later calls find nothing left to settle) and lets go of its
/// wait and its abort listener.
fn finish(env: &Env, op: &Rc<RefCell<Op>>, outcome: Result<Unknown<'_>>) {
  let (deferred, abort, armed) = {
    let mut op = op.borrow_mut();
    (op.deferred.take(), op.abort.take(), op.armed.take())
  };
  if let Some(id) = armed {
    waiter::cancel(env, id);
  }
  if let Some(hook) = abort {
    hook.release(env);
  }
  if let Some(deferred) = deferred {
    deferred.settle(env, outcome);
  }
}

/// Looks once: settles the operation when it can end, else arms the wait the channel planned.
fn step(env: &Env, op: &Rc<RefCell<Op>>) {
  let (channel, deadline) = {
    let op = op.borrow();
    if op.deferred.is_none() {
      return; // settled meanwhile (aborted)
    }
    (op.channel.clone(), op.deadline)
  };
  let plan = match poll(env, op, &channel) {
    Ok(Some(plan)) => plan,
    Ok(None) => return,
    Err(e) => return finish(env, op, Err(e)),
  };
  let planned = Planned {
    channel: channel.clone(),
    plan: Some(plan),
  };
  let Some(plan) = planned.plan.as_ref() else { return };
  let (offset, expected, until) = (plan.offset, plan.expected, plan.until);
  if deadline.is_some_and(|d| Instant::now() >= d) {
    drop(planned);
    let sending = matches!(op.borrow().work, Work::Send(_));
    let timed_out = if sending { boolean(env, false) } else { null(env) };
    return finish(env, op, timed_out);
  }
  let word = match Word::in_region(channel.region().clone(), offset) {
    Ok(word) => word,
    Err(e) => return finish(env, op, Err(crate::error::to_js(env, &e))),
  };
  let next = op.clone();
  let armed = waiter::arm(
    env,
    word,
    expected,
    Some(deadline.map_or(until, |d| d.min(until))),
    Box::new(move |env, outcome| {
      drop(planned);
      next.borrow_mut().armed = None;
      match outcome {
        Ok(_) => step(env, &next),
        Err(e) => finish(env, &next, Err(crate::error::to_js(env, &e))),
      }
    }),
  );
  match armed {
    Ok(id) => op.borrow_mut().armed = Some(id),
    Err(e) => finish(env, op, Err(e)),
  }
}

/// Polls the channel once. Settles the operation and returns `None` when it is done.
fn poll(env: &Env, op: &Rc<RefCell<Op>>, channel: &shmkit::Channel) -> Result<Option<shmkit::WaitPlan>> {
  let receiving = match &op.borrow().work {
    Work::Send(_) => None,
    Work::Receive { object_mode, ended } => Some((*object_mode, ended.clone())),
  };
  let Some((object_mode, ended)) = receiving else {
    let polled = match &op.borrow().work {
      Work::Send(bytes) => channel.poll_send(bytes),
      Work::Receive { .. } => return Ok(None),
    }
    .js(env)?;
    return match polled {
      shmkit::Poll::Ready(status) => {
        let value = Channel::sent(env, status).and_then(|sent| boolean(env, sent));
        finish(env, op, value);
        Ok(None)
      }
      shmkit::Poll::Wait(plan) => Ok(Some(plan)),
    };
  };
  match channel.poll_recv().js(env)? {
    shmkit::Poll::Ready(Recv::Message(message)) => {
      let value = message_value(env, channel, message.into_held(), object_mode);
      finish(env, op, value);
      Ok(None)
    }
    shmkit::Poll::Ready(Recv::Closed) => {
      ended.set(true);
      finish(env, op, null(env));
      Ok(None)
    }
    shmkit::Poll::Ready(Recv::Empty) => {
      finish(env, op, null(env));
      Ok(None)
    }
    shmkit::Poll::Wait(plan) => Ok(Some(plan)),
  }
}

fn boolean(env: &Env, value: bool) -> Result<Unknown<'_>> {
  let mut raw = ptr::null_mut();
  // SAFETY: a valid env and out-pointer.
  raw::check(unsafe { sys::napi_get_boolean(env.raw(), value, &raw mut raw) })?;
  // SAFETY: napi_get_boolean succeeded, so `raw` is a valid handle.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
}

fn null(env: &Env) -> Result<Unknown<'_>> {
  let mut value = ptr::null_mut();
  // SAFETY: a valid env and out-pointer.
  raw::check(unsafe { sys::napi_get_null(env.raw(), &raw mut value) })?;
  // SAFETY: napi_get_null succeeded, so `value` is a valid handle.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
}

fn undefined(env: &Env) -> Result<Unknown<'_>> {
  let mut value = ptr::null_mut();
  // SAFETY: a valid env and out-pointer.
  raw::check(unsafe { sys::napi_get_undefined(env.raw(), &raw mut value) })?;
  // SAFETY: napi_get_undefined succeeded, so `value` is a valid handle.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), value) })
}

/// What a receive returns for a held message: a copy, or in object mode the deserialised
/// value. Frees the slot.
fn message_value<'e>(
  env: &'e Env,
  channel: &shmkit::Channel,
  held: shmkit::Held,
  object_mode: bool,
) -> Result<Unknown<'e>> {
  let array = copy_out(env, channel, held)?;
  if !object_mode {
    return Ok(array);
  }
  let (v8, deserialize) = v8_function(env, "deserialize")?;
  call(env, v8.to_unknown(), deserialize, &[array])
}

/// The held message copied into a new `Uint8Array`; frees the slot.
fn copy_out<'e>(env: &'e Env, channel: &shmkit::Channel, held: shmkit::Held) -> Result<Unknown<'e>> {
  let len = held.len();
  let mut data: *mut c_void = ptr::null_mut();
  let mut array_buffer = ptr::null_mut();
  // SAFETY: a new ArrayBuffer of `len` bytes; valid out-pointers.
  let created =
    raw::check(unsafe { sys::napi_create_arraybuffer(env.raw(), len, &raw mut data, &raw mut array_buffer) });
  if created.is_ok() && len > 0 && !data.is_null() {
    // SAFETY: source: the held payload, `len` bytes inside the mapping; destination: the new
    // buffer's `len` bytes, private to this process.
    unsafe { std::ptr::copy_nonoverlapping(channel.held_ptr(&held), data.cast::<u8>(), len) };
  }
  channel.release(held);
  created?;
  uint8_array(env, array_buffer, len)
}

/// A `Uint8Array` over all `len` bytes of `array_buffer`.
fn uint8_array(env: &Env, array_buffer: sys::napi_value, len: usize) -> Result<Unknown<'_>> {
  let mut array = ptr::null_mut();
  // SAFETY: `array_buffer` is a live ArrayBuffer of `len` bytes in this env.
  raw::check(unsafe {
    sys::napi_create_typedarray(
      env.raw(),
      sys::TypedarrayType::uint8_array,
      len,
      array_buffer,
      0,
      &raw mut array,
    )
  })?;
  // SAFETY: napi_create_typedarray succeeded, so `array` is a valid handle.
  Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), array) })
}

impl ObjectFinalize for Channel {
  /// GC of the handle: free a held view's slot, so producers can reuse it.
  fn finalize(mut self, env: Env) -> Result<()> {
    self.release(env);
    self.memory.delete(&env);
    Ok(())
  }
}
