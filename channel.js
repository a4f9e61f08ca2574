// The common path of `Channel` in JavaScript: a message that finds a free slot (send) or a
// ready one (receive) is moved with a few `Atomics` operations on the region's own
// `ArrayBuffer`, with no call into the native binding. Everything else (a full or empty
// channel, the end of the stream, a slot held by a process that may have died, words that
// are not a channel any more, arguments to check) goes to the native methods, which run the
// whole protocol of docs/layout.md ("Channel"). Both follow that protocol to the letter, so
// they mix freely, within a process and across processes and languages.
//
// Why this keeps every guarantee of the native path:
// - The JavaScript path only takes the steps of the protocol it fully checks (a slot word
//   exactly `(p, 0)` to claim, or a known "taken, move on" state); any other word, a counter
//   beyond 2^53 or a missing magic number sends the call to the native code, which reports
//   corruption as a typed error. Typed arrays are bounds-checked and the loops are bounded.
// - A slot is claimed by a 32-bit compare-and-swap of its owner half that names this
//   process's pid, and published and released in the two steps the protocol allows, so a
//   process killed at any point leaves states the native waiters recover. No `BigInt` on the
//   common path: a counter moves on with a 32-bit compare-and-swap of its low half after a
//   claim (the 64-bit one only when it carries, or to move past a slot someone else took).
// - Sleepers are woken with `notify` (a futex wake) whenever the waiting counts say someone
//   sleeps, as the native code does.
'use strict'

const MAGIC = 0x434d4853
// Header words, in 32-bit units from the start of the channel.
const W_MAGIC = 0
const W_CLOSED = 16
const W_ENQUEUE = 32
const W_DEQUEUE = 48
const W_NOT_EMPTY = 64
const W_CONSUMERS_WAITING = 65
const W_NOT_FULL = 80
const W_PRODUCERS_WAITING = 81
const W_SLOTS = 128
const WRITING = 0x4000_0000
const READING = 0x8000_0000
const PID_MASK = 0x3fff_ffff
/** Counters at or beyond 2^53 are left to the native code (a double holds them exactly below). */
const HIGH_LIMIT = 0x20_0000
/** Attempts of one call before it leaves the rest to the native code. */
const TRIES = 16
/** Looks at an empty channel before a blocking receive sleeps in the native code. */
const RECEIVE_SPINS = 64

const TAKEN = -1 // a sentinel: no slot, ask the native code
const EMPTY = -2 // nothing ready now (channel open, slot free): no need to ask

const FAST = Symbol('shmkit.channel.fast')

/** The JavaScript view of one channel: typed arrays over the region's buffer. */
class Fast {
  constructor(memory, offset, capacity, maxMessageSize, objectMode, heldCell) {
    const buffer = memory.buffer
    const stride = Math.ceil((16 + maxMessageSize) / 64) * 64
    const size = 512 + capacity * stride
    this.memory = memory // keeps the handle, and so its buffer, reaching the memory
    this.buffer = buffer
    this.offset = offset
    this.u32 = new Uint32Array(buffer, offset, size / 4)
    this.b64 = new BigUint64Array(buffer, offset, size / 8)
    this.i32 = new Int32Array(buffer, offset, W_SLOTS)
    this.u8 = new Uint8Array(buffer, offset, size)
    this.capacity = capacity
    this.mask = capacity - 1
    this.max = maxMessageSize
    this.objectMode = objectMode
    this.strideWords = stride / 4
    /**
     * The handle's held cell, shared with the native handle: `[1, position]` while a message
     * is held for a view made through this buffer, `[0, …]` otherwise. The native handle
     * frees what it records on release, close and GC.
     */
    this.held = new Uint32Array(heldCell, 0, 2)
    /** Whether the native handle may hold a view of its own (an external buffer it made). */
    this.holding = false
  }

  usable() {
    return this.u32[W_MAGIC] === MAGIC
  }
}

/** A 64-bit counter as a double, or -1 if it is beyond 2^53 or moved while read. */
function counter(u32, index) {
  const high = Atomics.load(u32, index + 1)
  const low = Atomics.load(u32, index)
  if (high >= HIGH_LIMIT || Atomics.load(u32, index + 1) !== high) return -1
  return high * 0x1_0000_0000 + low
}

/**
 * Moves a counter on from the position whose low half is `low` (failure is fine: someone
 * else moved it; a counter beyond 2^53 is left to the native code).
 */
function advance(fast, index, low) {
  const pos = counter(fast.u32, index)
  if (pos >= 0 && pos >>> 0 === low) {
    Atomics.compareExchange(fast.b64, index >> 1, BigInt(pos), BigInt(pos + 1))
  }
}

/**
 * `advance` after this process claimed the slot of position `low`: a 32-bit
 * compare-and-swap of the counter's low half, unless it carries into the high half
 * (docs/layout.md, "Channel", says why that is the same move).
 */
function advanceClaimed(fast, index, low) {
  if (low === 0xffff_ffff) advance(fast, index, low)
  else Atomics.compareExchange(fast.u32, index, low, low + 1)
}

/** The owner half of a slot nobody holds: the sequence number's low 30 bits. */
const unowned = (seq) => seq & PID_MASK

/** A whole slot word, for the rare 64-bit compare-and-swap (the halves as numbers). */
const word64 = (seq, owner) => BigInt(seq * 0x1_0000_0000) | BigInt(owner)

/**
 * The process object: the global `process` is an accessor, so reading it costs a call. Its
 * `pid` is read for each claim, since shmkit's `fork()` gives a child its own.
 */
const proc = process
/** The owner halves of this process's claims (a forked child has another pid). */
let ownerPid = -1
let writingOwner = 0
let readingOwner = 0
/** Brings `writingOwner` and `readingOwner` up to date with this process's pid. */
function updateOwners() {
  const pid = proc.pid & PID_MASK
  if (pid !== ownerPid) {
    ownerPid = pid
    writingOwner = WRITING + pid
    readingOwner = READING + pid
  }
}

/** Whether an owner half names a live-looking claimant of the given kind (1 writing, 2 reading). */
const claimedBy = (owner, kind) => owner >>> 30 === kind && (owner & PID_MASK) !== 0
/** Whether an owner half is valid for sequence number `seq`: nobody, or a claimant. */
const validOwner = (owner, seq) => owner === unowned(seq) || claimedBy(owner, 1) || claimedBy(owner, 2)

/** Adds 1 to a futex word and wakes its sleepers, if its waiting count says there are any. */
function wake(fast, index, waiting) {
  if (Atomics.load(fast.u32, waiting) === 0) return
  Atomics.add(fast.u32, index, 1)
  try {
    notify(fast.i32, index)
  } catch {
    // A failed wake changes nothing: sleepers look again after their time slice. (Never
    // throw here: the message is already sent or the slot already freed.)
  }
}

/** The word index of the slot of `position` (its low 32 bits). */
const slotOf = (fast, position) => W_SLOTS + (position & fast.mask) * fast.strideWords
/** The byte offset, from the channel's start, of the message in the slot at word index `c`. */
const payloadOf = (c) => c * 4 + 16

/** The sequence number of the slot claimed last (it does not move while this process holds it). */
let claimedSeq = 0

/**
 * Claims the slot at the enqueue counter (`send`) or the dequeue counter: its word index
 * (`claimedSeq` its sequence number), EMPTY (a receive found nothing written yet) or TAKEN.
 */
function claim(fast, send) {
  const { u32, capacity } = fast
  const index = send ? W_ENQUEUE : W_DEQUEUE
  const mine = send ? writingOwner : readingOwner
  for (let tries = 0; tries < TRIES; tries++) {
    // The low half of the position is all this needs: a slot's sequence number holds the
    // same 32 bits. The owner half is read after the sequence number (an atomic load, which
    // nothing after it passes), so it is of that state or a later one. Plain reads where a
    // stale value only fails a check: `Atomics` calls are what costs here.
    const low = u32[index]
    const c = slotOf(fast, low)
    const seq = Atomics.load(u32, c + 1)
    const owner = u32[c]
    // Distance from the number the slot holds when it is ready for this side.
    const d = (send ? seq - low : seq - low - 1) | 0
    const free = unowned(seq)
    if (d === 0 && owner === free) {
      // A hint only (checked again after the claim): a plain read.
      if (send && u32[W_CLOSED] !== 0) return TAKEN
      // The owner half alone: it repeats 30 bits of the sequence number, so it only matches
      // this slot in this phase (layout.md).
      if (Atomics.compareExchange(u32, c, free, mine) !== free) continue
      // Only the holder moves a held slot's sequence number: this read is stable.
      claimedSeq = u32[c + 1]
      if (claimedSeq === seq) advanceClaimed(fast, index, low)
      if (send && Atomics.load(u32, W_CLOSED) !== 0) {
        // Closed meanwhile: withdraw, so a receiver that saw the close never waits for it.
        skip(fast, c, claimedSeq)
        return TAKEN
      }
      return c
    }
    if (!send && d === -1 && owner === free) {
      // Nothing written yet. Only the native code decides the end of the stream.
      return Atomics.load(u32, W_CLOSED) === 0 ? EMPTY : TAKEN
    }
    // Positions someone else took (layout.md lists them); anything else (full, empty, a
    // hand-over under way, a state only the native code judges) goes to the native code.
    const movedOn = send
      ? (d === 0 && claimedBy(owner, 1)) || ((d === 1 || d === capacity) && validOwner(owner, seq))
      : (d === 0 && claimedBy(owner, 2)) || ((d === capacity - 1 || d === capacity) && validOwner(owner, seq))
    if (!movedOn) return TAKEN
    advance(fast, index, low)
  }
  return TAKEN
}

/** A slot this process claimed for writing (at `seq`) becomes a hole receivers skip. */
function skip(fast, c, seq) {
  const claimed = word64(seq, writingOwner)
  const next = (seq + fast.capacity) >>> 0
  if (Atomics.compareExchange(fast.b64, c >> 1, claimed, word64(next, unowned(next))) === claimed) {
    wake(fast, W_NOT_EMPTY, W_CONSUMERS_WAITING)
    wake(fast, W_NOT_FULL, W_PRODUCERS_WAITING)
  }
}

/** Frees the slot of a message this process took (at `seq`): free for the next lap. */
function releaseSlot(fast, c, seq) {
  const u32 = fast.u32
  // Does nothing if the words were overwritten meanwhile: then there is nothing to free.
  if (u32[c + 1] !== seq) return
  const next = (seq + fast.capacity - 1) >>> 0
  // The sequence number, then the owner half: the atomic store keeps the reads of the
  // message and this store before it, and only it lets a producer claim the slot.
  u32[c + 1] = next
  Atomics.store(u32, c, unowned(next))
  wake(fast, W_NOT_FULL, W_PRODUCERS_WAITING)
}

function corrupted() {
  const error = new RangeError('channel corrupted: message length')
  error.code = 'ERR_OUT_OF_RANGE'
  return error
}

/** The length of the message in slot `c`, freeing the slot and throwing if it is impossible. */
function lengthOf(fast, c, seq) {
  // Written before the message was published, which the claim's compare-and-swap saw.
  const length = fast.u32[c + 2]
  if (length > fast.max) {
    releaseSlot(fast, c, seq)
    throw corrupted()
  }
  return length
}

/** Sends `bytes` if a slot is free now: true, or false to leave it to the native code. */
function trySendFast(fast, bytes) {
  if (bytes.length > fast.max || !fast.usable()) return false
  updateOwners()
  const c = claim(fast, true)
  if (c < 0) return false
  const seq = claimedSeq
  try {
    fast.u8.set(bytes, payloadOf(c))
  } catch (error) {
    skip(fast, c, seq)
    throw error
  }
  const u32 = fast.u32
  // Published by the atomic store of the owner half below.
  u32[c + 2] = bytes.length
  // Publish: the sequence number first, then the owner half (layout.md: a reader that sees
  // the new number with this owner waits; only the holder moves a held slot on). The atomic
  // store keeps every write before it, and only it lets a consumer claim the message.
  const next = (seq + 1) >>> 0
  u32[c + 1] = next
  Atomics.store(u32, c, unowned(next))
  wake(fast, W_NOT_EMPTY, W_CONSUMERS_WAITING)
  return true
}

/**
 * A blocking view receive that waits in the native code: the native handle takes the message
 * and holds it, and the view is made here through this path's buffer, as for a message
 * claimed in JavaScript (a view of its own per message would cost an external buffer, and
 * an alias of the slot's pages, each time the channel runs empty).
 */
function heldView(channel, fast, options) {
  const position = channel._receiveHeldSync(options)
  if (position === null) return null
  const c = slotOf(fast, position)
  // Checked again: the words may have been overwritten since the native code read them.
  const length = fast.u32[c + 2]
  if (length > fast.max) {
    letGo(channel, fast)
    throw corrupted()
  }
  return new Uint8Array(fast.buffer, fast.offset + payloadOf(c), length)
}

let v8
const serializer = () => (v8 ??= require('node:v8'))
const encoder = new TextEncoder()

/** The bytes a send puts in the ring, or null to leave the call to the native code. */
function bytesOf(fast, data) {
  if (fast.objectMode) {
    if (data === undefined) return null
    try {
      return serializer().serialize(data)
    } catch {
      return null // the native call throws the same error
    }
  }
  if (data instanceof Uint8Array) return data
  if (typeof data === 'string') return encoder.encode(data)
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  return null
}

/** Options a fast path may ignore: none, or a valid timeout (and, for async, no signal). */
function plain(options) {
  if (options === undefined || options === null) return true
  if (typeof options !== 'object' || options.signal !== undefined) return false
  const timeout = options.timeout
  return timeout === undefined || timeout === null || (typeof timeout === 'number' && timeout >= 0)
}

/** Frees the view this handle holds, if any: here when the buffer can, else natively. */
function letGo(channel, fast) {
  const held = fast.held
  if (held[0] === 1 && fast.usable()) {
    held[0] = 0
    const position = held[1]
    const c = slotOf(fast, position)
    // Only a slot this process holds (a forked child has another pid); only the holder moves
    // a held slot on, so the check stays true through the release.
    updateOwners()
    if (fast.u32[c] === readingOwner) releaseSlot(fast, c, (position + 1) >>> 0)
  }
  if (fast.holding || held[0] === 1) {
    fast.holding = false
    native.release.call(channel)
  }
}

/** A `Uint8Array` over the memory of `target` if it can take any message, else null. */
function roomOf(fast, target) {
  let room = null
  if (target instanceof Uint8Array) room = target
  else if (ArrayBuffer.isView(target)) room = new Uint8Array(target.buffer, target.byteOffset, target.byteLength)
  else if (target instanceof ArrayBuffer) room = new Uint8Array(target)
  return room !== null && room.length >= fast.max ? room : null
}

/** Takes the next message into `room`: its length, EMPTY, or TAKEN. */
function receiveIntoFast(channel, fast, room, spins) {
  letGo(channel, fast)
  if (!fast.usable()) return TAKEN
  updateOwners()
  let c = claim(fast, false)
  for (let spin = 0; c === EMPTY && spin < spins; spin++) c = claim(fast, false)
  if (c < 0) return c
  const seq = claimedSeq
  const length = lengthOf(fast, c, seq)
  const start = fast.offset + payloadOf(c)
  room.set(new Uint8Array(fast.buffer, start, length))
  releaseSlot(fast, c, seq)
  return length
}

/**
 * Takes the next message in JavaScript: the value (a copy, a view or the deserialised
 * object), EMPTY, or TAKEN to leave the call to the native code.
 */
function receiveFast(channel, fast, asView, spins) {
  letGo(channel, fast)
  if (!fast.usable()) return TAKEN
  updateOwners()
  let c = claim(fast, false)
  for (let spin = 0; c === EMPTY && spin < spins; spin++) c = claim(fast, false)
  if (c < 0) return c
  const seq = claimedSeq
  const length = lengthOf(fast, c, seq)
  const start = payloadOf(c)
  if (asView && !fast.objectMode) {
    // Recorded in the held cell: the native handle frees it too (on release, the next native
    // receive, close or GC), also once the memory handle, and with it this buffer, is closed.
    const held = fast.held
    held[1] = (seq - 1) >>> 0
    held[0] = 1
    return new Uint8Array(fast.buffer, fast.offset + start, length)
  }
  // Object mode deserialises from a buffer of its own: typed arrays in the object may keep
  // views of it.
  const copy = fast.objectMode ? fast.u8.slice(start, start + length) : copyOut(fast, start, length)
  releaseSlot(fast, c, seq)
  return fast.objectMode ? serializer().deserialize(copy) : copy
}

/** Bytes of the buffers small copies are carved from, and the largest copy carved. */
const SLAB_SIZE = 64 * 1024
const SLAB_MAX = 8 * 1024
let slab = null
let slabUsed = SLAB_SIZE

/**
 * A copy of `length` bytes at `start` of the channel: a new `Uint8Array` whose bytes nothing
 * else writes. Copies of up to `SLAB_MAX` bytes share a larger `ArrayBuffer`, as Node's
 * `Buffer.allocUnsafe` pool does (a new buffer per message costs more than the message).
 */
function copyOut(fast, start, length) {
  if (length > SLAB_MAX) return fast.u8.slice(start, start + length)
  if (slabUsed + length > SLAB_SIZE) {
    slab = new ArrayBuffer(SLAB_SIZE)
    slabUsed = 0
  }
  const copy = new Uint8Array(slab, slabUsed, length)
  copy.set(new Uint8Array(fast.buffer, fast.offset + start, length))
  // 8-aligned, so a copy can be viewed as any typed array its length allows.
  slabUsed += (length + 7) & ~7
  return copy
}

let notify
/** The native methods of `Channel`, which the JavaScript ones fall back on. */
const native = {}

/** Puts the JavaScript path in front of the native methods of `Channel`. */
function install(binding) {
  const { Channel } = binding
  notify = binding.notify
  const proto = Channel.prototype
  for (const name of [
    'trySend',
    'sendSync',
    'send',
    'tryReceive',
    'receiveSync',
    'receive',
    'tryReceiveView',
    'receiveViewSync',
    'tryReceiveInto',
    'receiveIntoSync',
    'release',
    'close',
  ]) {
    native[name] = proto[name]
  }

  /** The handle's JavaScript path, made on first use; null where it has none. */
  const fastOf = (channel) => {
    let fast = channel[FAST]
    if (fast !== undefined) return fast
    fast = null
    try {
      // (null where the runtime refuses external buffers: then it has no buffer either.)
      const heldCell = channel._heldCell()
      if (heldCell !== null) {
        const { memory, offset, capacity, maxMessageSize, objectMode } = channel
        fast = new Fast(memory, offset, capacity, maxMessageSize, objectMode, heldCell)
        if (!fast.usable()) fast = null
      }
    } catch {
      // No buffer (closed, refused by the runtime, or too large): native only.
      fast = null
    }
    Object.defineProperty(channel, FAST, { value: fast })
    return fast
  }

  /** Before a native call that frees the handle's view itself. */
  const releasedBy = (fast) => {
    fast.holding = false
  }

  const methods = {
    trySend(data) {
      const fast = fastOf(this)
      if (fast !== null) {
        const bytes = bytesOf(fast, data)
        if (bytes !== null && trySendFast(fast, bytes)) return true
      }
      return native.trySend.call(this, data)
    },
    sendSync(data, options) {
      const fast = fastOf(this)
      if (fast !== null && plain(options)) {
        const bytes = bytesOf(fast, data)
        if (bytes !== null && trySendFast(fast, bytes)) return true
      }
      return native.sendSync.call(this, data, options)
    },
    send(data, options) {
      const fast = fastOf(this)
      if (fast !== null && plain(options)) {
        const bytes = bytesOf(fast, data)
        if (bytes !== null && trySendFast(fast, bytes)) return Promise.resolve(true)
      }
      return native.send.call(this, data, options)
    },
    tryReceive() {
      return receiveVia(this, false, 0, native.tryReceive, undefined)
    },
    receiveSync(options) {
      return receiveVia(this, false, RECEIVE_SPINS, native.receiveSync, options)
    },
    receive(options) {
      const fast = fastOf(this)
      if (fast !== null && plain(options)) {
        const value = receiveFast(this, fast, false, 0)
        if (value !== TAKEN && value !== EMPTY) return Promise.resolve(value)
      }
      if (fast !== null) releasedBy(fast)
      return native.receive.call(this, options)
    },
    tryReceiveView() {
      return receiveVia(this, true, 0, native.tryReceiveView, undefined)
    },
    receiveViewSync(options) {
      return receiveVia(this, true, RECEIVE_SPINS, native.receiveViewSync, options)
    },
    tryReceiveInto(target) {
      return receiveIntoVia(this, target, 0, native.tryReceiveInto, undefined)
    },
    receiveIntoSync(target, options) {
      return receiveIntoVia(this, target, RECEIVE_SPINS, native.receiveIntoSync, options)
    },
    release() {
      const fast = fastOf(this)
      if (fast === null) return native.release.call(this)
      letGo(this, fast)
    },
    close() {
      const fast = fastOf(this)
      if (fast !== null) releasedBy(fast)
      return native.close.call(this)
    },
  }

  /** One receive: in JavaScript if a message is ready, else through the native `method`. */
  function receiveVia(channel, asView, spins, method, options) {
    const fast = fastOf(channel)
    if (fast === null) return method.call(channel, options)
    if (plain(options)) {
      const value = receiveFast(channel, fast, asView, spins)
      if (value === EMPTY && method !== native.receiveSync && method !== native.receiveViewSync) return null
      if (value !== TAKEN && value !== EMPTY) return value
    }
    releasedBy(fast)
    // (A buffer that reads zeros, its handle closed, cannot show the message: native view.)
    if (method === native.receiveViewSync && !fast.objectMode && fast.usable()) {
      return heldView(channel, fast, options)
    }
    const value = method.call(channel, options)
    if (asView && value !== null) fast.holding = true
    return value
  }

  /** One receive into `target`: in JavaScript if a message is ready, else natively. */
  function receiveIntoVia(channel, target, spins, method, options) {
    const fast = fastOf(channel)
    const room = fast !== null && plain(options) ? roomOf(fast, target) : null
    if (room !== null) {
      const length = receiveIntoFast(channel, fast, room, spins)
      if (length === EMPTY && spins === 0) return null
      if (length >= 0) return length
    }
    if (fast !== null) releasedBy(fast)
    return method.call(channel, target, options)
  }

  for (const [name, value] of Object.entries(methods)) {
    Object.defineProperty(proto, name, { value, configurable: true, writable: true })
  }
  // `using` disposes through the same close as a call.
  if (typeof Symbol.dispose === 'symbol') {
    Object.defineProperty(proto, Symbol.dispose, { value: methods.close, configurable: true, writable: true })
  }
}

module.exports = { install }
