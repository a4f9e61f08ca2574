/** Every `code` a shmkit error can carry besides an errno name such as `'ENOENT'`. */
export type ShmErrorCode =
  | 'ERR_SHM_CLOSED'
  | 'ERR_SHM_UNSUPPORTED'
  | 'ERR_SHM_EXTERNAL_BUFFER'
  | 'ERR_SHM_FORK_UNSAFE'
  | 'ERR_SHM_TOO_LARGE'
  | 'ERR_SHM_FOREIGN_OWNER'
  | 'ERR_SHM_INVALID_TOKEN'
  | 'ERR_SHM_INTERNAL'
  | 'ERR_SHM_UNSUPPORTED_PLATFORM'
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_INVALID_ARG_VALUE'
  | 'ERR_OUT_OF_RANGE'
  | 'ERR_UNKNOWN_SIGNAL'
  | 'ABORT_ERR'

/**
 * Which technique made a region: `'anonymous'` (`MAP_SHARED | MAP_ANONYMOUS`), `'devZero'`
 * (a `MAP_SHARED` mapping of `/dev/zero`), `'named'` (POSIX `shm_open`), `'file'` (a regular
 * file), `'memfd'` (an anonymous fd-backed object).
 */
export type RegionKind = 'anonymous' | 'devZero' | 'named' | 'file' | 'memfd'

/** An OS failure, shaped like Node's `fs` errors. */
export interface ShmSystemError extends Error {
  /** The errno name, such as `'EEXIST'` or `'ENOENT'`. */
  code: string
  /** The negative errno, as in Node's `fs` errors. */
  errno: number
  /** The failing call: `'shm_open'`, `'mmap'`, `'sem_open'`, … */
  syscall: string
  /** The object's name or path, when the call had one. */
  path?: string
}

// `close()` is also installed as `[Symbol.dispose]()`, so `using` works.
export interface SharedMemory extends Disposable {}
export interface RobustMutex extends Disposable {}
export interface Semaphore extends Disposable {}
export interface Channel extends Disposable {}
// `for await (const message of channel)` receives until the end of the stream.
export interface Channel extends AsyncIterable<any> {}

// shareWith and inherited are written in JavaScript (share.js); their declarations live here.

/**
 * Returns a copy of `options` for `child_process.spawn`/`fork` that hands `regions` to the
 * child: fd-backed regions (`memfd`, `fromFd`) are appended to `stdio` as descriptors,
 * named regions, files and named semaphores go by name, and the list is put in the `SHMKIT_INHERITED`
 * environment variable (added to `options.env`, or to a copy of `process.env`). In the
 * child, `inherited()` maps them in the same order. Both processes then see each other's
 * writes. The list's format is in docs/layout.md, so a child in another language can read it
 * (Rust: `shmkit::inherited()`).
 *
 * Anonymous and `devZero` regions cannot cross `exec` (no descriptor, no name): they throw
 * `ERR_INVALID_ARG_VALUE`, pointing to `SharedMemory.memfd()`, `SharedMemory.create()` or
 * `fork()`. So do private (copy-on-write) regions, which are this process's own copy.
 *
 * ```ts
 * import { spawn } from 'node:child_process'
 * const jobs = SharedMemory.memfd(1 << 20)
 * const child = spawn(process.execPath, ['child.mjs'], shareWith([jobs], { stdio: 'inherit' }))
 * // child.mjs: const [jobs] = inherited()
 * ```
 */
export declare function shareWith<T extends object = {}>(
  regions: Array<SharedMemory | Semaphore>,
  options?: T,
): Omit<T, 'stdio' | 'env'> & {
  stdio: Array<'pipe' | 'overlapped' | 'ignore' | 'inherit' | 'ipc' | number | null | undefined>
  env: Record<string, string | undefined>
}

/**
 * In a child started with `shareWith(...)` options: maps the regions (and opens the named
 * semaphores) handed over, in the order given to `shareWith`, and returns them (an empty array when there are none). The
 * inherited descriptors are closed after mapping (each region keeps its own) and
 * `SHMKIT_INHERITED` is removed from `process.env`, so call it once.
 */
export declare function inherited(): Array<SharedMemory | Semaphore>

/** Static members of `Semaphore`, for laying out a region. */
export declare namespace Semaphore {
  /**
   * Bytes an in-region semaphore occupies (`sizeof(sem_t)`: 32 on 64-bit Linux). Lay out
   * shared memory so that each semaphore gets this many bytes at an offset that is a
   * multiple of `Semaphore.ALIGN`.
   */
  const SIZE: number
  /** The alignment an in-region semaphore's offset needs (8 on 64-bit Linux). */
  const ALIGN: number
  /**
   * The largest value a semaphore can hold (`SEM_VALUE_MAX`: 2147483647 on Linux, 32767 on
   * macOS). `post()` beyond it throws `EOVERFLOW`.
   */
  const VALUE_MAX: number
}

/** Static members of `RobustMutex`, for laying out a region. */
export declare namespace RobustMutex {
  /**
   * Bytes a `RobustMutex` occupies in a region (32 on every platform; offsets are multiples
   * of 8). The byte protocol is in docs/layout.md.
   */
  const SIZE: number
}

export type TypedArray =
  | Int8Array
  | Uint8Array
  | Uint8ClampedArray
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array
  | BigInt64Array
  | BigUint64Array

/**
 * Which binding artifact the generated loader actually loaded: `'native'` for
 * a native addon, otherwise the `platformArchABI` of the WASI flavor. Every
 * flavor napi-rs can build is listed, because `NAPI_RS_NATIVE_LIBRARY_PATH`
 * can point the loader at a WASI artifact this package does not build itself.
 */
export declare const __napiBindingTarget: 'native' | 'wasm32-wasi' | 'wasm32-wasip1'

/**
 * A bounded message queue inside a `SharedMemory` region, shared by every process that
 * maps it: many senders, many receivers, each message received exactly once, in order per
 * sender. The layout is in docs/layout.md, so Rust (`shmkit::Channel`) and other languages
 * can be on the other end.
 *
 * - A full channel makes `sendSync` wait (and `trySend` return `false`); memory never grows.
 * - Every receive form returns `null` when there is no message: nothing yet, the
 *   timeout passed, or the end of the stream (then `ended` is `true`).
 * - `close()`, by anyone, ends the stream: sends throw `ERR_SHM_CLOSED`, and receivers get
 *   every message sent before, then the end.
 * - A process killed while sending never delivers half a message, and one killed while
 *   holding a message frees its slot for the others.
 *
 * ```ts
 * const shm = SharedMemory.anonymous(Channel.size(64, 4096))
 * const channel = Channel.init(shm, 0, { capacity: 64, maxMessageSize: 4096 })
 * fork(() => { Channel.at(shm, 0).sendSync('hello'); return 0 })
 * const message = channel.receiveSync()   // Uint8Array [104, 101, 108, 108, 111]
 * ```
 */
export declare class Channel {
  /**
   * Bytes a channel of `capacity` slots for messages of up to `maxMessageSize` bytes takes
   * in a region: a 512-byte header plus `capacity` slots of `16 + maxMessageSize` bytes
   * rounded up to 64.
   */
  static size(capacity: number, maxMessageSize: number): number
  /**
   * Creates an empty, open channel at `offset` (a multiple of 64) of `memory`, overwriting
   * those bytes. Do it once, before other processes attach with `Channel.at`.
   */
  static init(memory: SharedMemory, offset: number, options: ChannelInitOptions): Channel
  /**
   * Attaches to the channel another process (or this one) created at `offset` of `memory`.
   * Throws `ERR_OUT_OF_RANGE` if the bytes there are not a channel.
   */
  static at(memory: SharedMemory, offset?: number, options?: ChannelOptions | undefined | null): Channel
  /** The `SharedMemory` the channel lives in (the handle passed to `init` or `at`). */
  get memory(): SharedMemory
  /** The channel's offset in its memory, in bytes. */
  get offset(): number
  /** Slots in the ring. */
  get capacity(): number
  /** The largest message in bytes. */
  get maxMessageSize(): number
  /** Whether some process closed the channel (messages sent before may still be waiting). */
  get closed(): boolean
  /**
   * Whether a receive on this handle found the end of the stream: closed, and every
   * message sent before received.
   */
  get ended(): boolean
  /** Whether this handle sends and receives values (`v8.serialize`) instead of bytes. */
  get objectMode(): boolean
  /**
   * Sends a message if a slot is free now: `true` if sent, `false` if the channel is full.
   * Throws `ERR_SHM_CLOSED` once the channel is closed, `ERR_OUT_OF_RANGE` for a message
   * longer than `maxMessageSize`.
   */
  trySend(data: string | ArrayBufferView | ArrayBuffer | unknown): boolean
  /**
   * Sends a message, blocking this thread (and the event loop) while the channel is full,
   * at most `timeout` milliseconds: `true` if sent, `false` if the time ran out.
   */
  sendSync(data: string | ArrayBufferView | ArrayBuffer | unknown, options?: ChannelWaitOptions | undefined | null): boolean
  /**
   * Gives back the slot of the view from the last `tryReceiveView`/`receiveViewSync`: from
   * now on the view is no longer the message (it may read zeros, or later messages in that
   * slot). Does nothing if no view is held.
   */
  release(): void
  /**
   * The next message if one is ready now (a copy, or a value in object mode), else
   * `null` (see `ended`).
   */
  tryReceive(): Uint8Array | any | null
  /**
   * The next message, blocking this thread (and the event loop) at most `timeout`
   * milliseconds for one; `null` if the time ran out or the stream ended (see `ended`).
   */
  receiveSync(options?: ChannelWaitOptions | undefined | null): Uint8Array | any | null
  /**
   * The next message if one is ready now, copied into `target` (an `ArrayBufferView` or
   * `ArrayBuffer` of at least `maxMessageSize` bytes, from its start): the message's length
   * in bytes, or `null` (see `ended`). No new buffer per message, so many small messages
   * cost no allocation; the bytes are the message as sent (serialised in object mode).
   */
  tryReceiveInto(target: ArrayBufferView | ArrayBuffer): number | null
  /**
   * As `tryReceiveInto`, blocking this thread (and the event loop) at most `timeout`
   * milliseconds for a message; `null` if the time ran out or the stream ended.
   */
  receiveIntoSync(target: ArrayBufferView | ArrayBuffer, options?: ChannelWaitOptions | undefined | null): number | null
  /**
   * As `tryReceive`, without a copy: a `Uint8Array` over the message inside the ring, valid
   * until `release()` or the next receive on this handle; after that it may read zeros or a
   * later message, so copy what you keep. Its slot stays taken until then, so release
   * views promptly. Bytes mode only (object mode returns the value, as `tryReceive`).
   */
  tryReceiveView(): Uint8Array | null
  /** As `receiveSync`, without a copy: see `tryReceiveView`. */
  receiveViewSync(options?: ChannelWaitOptions | undefined | null): Uint8Array | null
  /**
   * Sends a message without blocking: resolves `true` once it is in the channel, `false`
   * if `options.timeout` milliseconds passed while the channel stayed full. Rejects with
   * `ERR_SHM_CLOSED` once the channel is closed and with an `AbortError` when
   * `options.signal` aborts first. The bytes are copied at the call, so the caller may
   * reuse its buffer at once. A pending send keeps the process alive.
   */
  send(data: string | ArrayBufferView | ArrayBuffer | unknown, options?: ChannelAsyncOptions | undefined | null): Promise<boolean>
  /**
   * The next message without blocking: resolves with it (a copy, or the value in object
   * mode), or `null` when `options.timeout` milliseconds pass first or the stream
   * ended (then `ended` is `true`). Rejects with an `AbortError` when `options.signal`
   * aborts first. Releases this handle's view. A wake from another process lands in the
   * event loop without a thread in between where the kernel allows (see `waitAsync`).
   * `for await (const message of channel)` receives until the end of the stream.
   */
  receive(options?: ChannelAsyncOptions | undefined | null): Promise<Uint8Array | any | null>
  /**
   * Ends the stream for everyone: sends throw `ERR_SHM_CLOSED` from now on, and receivers
   * get every message sent before, then the end. Also releases this handle's view.
   * Idempotent.
   */
  close(): void
}

/**
 * A child made by `fork()`. Wait for it with `wait()` (blocking) or `exited` (a Promise);
 * a child that is still running when this process exits is killed and reaped.
 */
export declare class ForkedChild {
  /** The child's process id (what `getpid()` returns in the child). */
  get pid(): number
  /**
   * Blocks until the child ends, reaps it, and returns how it ended. Waits for this pid
   * only, so Node's own `child_process` children are unaffected. With `timeout` (ms),
   * returns `null` when it runs out, leaving the child running. Calling it again after the
   * child ended returns the same status.
   */
  wait(options?: WaitSyncOptions | undefined | null): ExitStatus | null
  /** Reaps the child if it has ended and returns how; `null` while it runs. Never blocks. */
  tryWait(): ExitStatus | null
  /**
   * A Promise of how the child ended. Waiting happens on a small thread of its own (never
   * the libuv thread pool); the child is reaped on the main thread when the Promise
   * settles. The same Promise is returned on every read. While it is pending it keeps the
   * event loop alive, like a `child_process` child.
   */
  get exited(): Promise<ExitStatus>
  /**
   * Sends a signal (`'SIGTERM'` by default; a name like `'SIGKILL'` or a number). Returns
   * `false` if the child was already reaped (nothing is sent: the pid may be reused).
   * Throws `ERR_UNKNOWN_SIGNAL` for an unknown signal.
   */
  kill(signal?: string | number): boolean
}

/**
 * A robust, process-shared mutex living at an offset inside a `SharedMemory` region, so
 * every process that maps the region can use it (and C or Rust programs too: the byte
 * protocol is in docs/layout.md).
 *
 * If the thread holding it dies (its process killed, its worker terminated), the next locker
 * is told (`ownerDied: true`) instead of hanging forever. Locks belong to the calling thread:
 * lock and unlock from the same thread. Locking it twice is `EDEADLK`, unlocking someone
 * else's lock is `EPERM`. Closing or collecting a handle never unlocks.
 *
 * ```ts
 * const shm = SharedMemory.create('state', 4096)
 * const mutex = RobustMutex.init(shm, 0)        // once; other processes use RobustMutex.at(shm, 0)
 * if (mutex.lockSync().ownerDied) { repair(); mutex.markConsistent() }
 * try { update() } finally { mutex.unlock() }
 * ```
 */
export declare class RobustMutex {
  /**
   * Initialises a new, unlocked mutex at `offset` (a multiple of 8) inside `memory`. Do it
   * once, before other processes attach with `RobustMutex.at`.
   */
  static init(memory: SharedMemory, offset: number): RobustMutex
  /** Attaches to the mutex another process initialised at `offset` inside `memory`. */
  static at(memory: SharedMemory, offset: number): RobustMutex
  /**
   * Blocks this thread (and the event loop) until the lock is held (`{ ownerDied }`), or
   * until `timeout` milliseconds pass on the monotonic clock (then returns `null`: running out
   * of time is an answer, not an error). A holder that died is noticed within about 20 ms.
   * Keep critical sections short.
   */
  lockSync(options?: WaitSyncOptions | undefined | null): LockResult | null
  /**
   * Takes the lock without blocking the event loop: resolves `{ ownerDied }` once this JS
   * thread holds it (as with `lockSync`, the lock belongs to this thread), or `null` when
   * `timeout` milliseconds pass first. Rejects with an `AbortError` when `signal` aborts (the
   * lock is then not taken), or with the errors of `lockSync`. A holder that died is
   * noticed within about 20 ms. Uses no thread of its own and never the libuv threadpool.
   */
  lock(options?: WaitOptions | undefined | null): Promise<LockResult | null>
  /** Takes the lock if it is free (or its holder is dead); `null` if a live thread holds it. */
  tryLock(): LockResult | null
  /** Releases the lock (`EPERM` if this thread does not hold it). */
  unlock(): void
  /**
   * After `ownerDied: true`, by the thread holding the lock: declares the protected data
   * consistent again, so the mutex goes back to normal use when unlocked (`EPERM` from a
   * thread that does not hold it, `EINVAL` when there is nothing to repair).
   */
  markConsistent(): void
  /** `true` while this thread holds the lock (through any handle). */
  get held(): boolean
  /** The mutex's offset inside its region. */
  get offset(): number
  /** `true` once `close()` has run. */
  get closed(): boolean
  /**
   * Lets go of this handle. It never unlocks: a lock this thread holds stays held (unlock it
   * through another handle, or it is reported as `ownerDied` when the thread ends). Pending
   * `lock()` calls reject with `ERR_SHM_CLOSED` without taking the lock. The mutex itself
   * stays in the region for other processes. Idempotent.
   */
  close(): void
}

/**
 * A POSIX semaphore shared between processes: named (any process that knows the name) or
 * placed inside a `SharedMemory` region (processes that map the same region).
 *
 * `wait()` never blocks the event loop and never occupies a libuv threadpool thread;
 * `waitSync()` blocks this thread. Signals that interrupt a wait are retried.
 *
 * ```ts
 * import { Semaphore } from 'shmkit'
 * using lock = Semaphore.openOrCreate('jobs-lock', { initial: 1 })
 * if (await lock.wait({ timeout: 5000 })) {
 *   try {
 *     // the critical section
 *   } finally {
 *     lock.post()
 *   }
 * }
 * ```
 */
export declare class Semaphore {
  /**
   * Creates the named semaphore `name` (`'jobs'` or `'/jobs'`; on Linux the file
   * `/dev/shm/sem.jobs`). Fails with `EEXIST` if it exists (`O_CREAT | O_EXCL`). C, Rust and
   * Python programs open the same semaphore by name (`sem_open`).
   */
  static create(name: string, options?: SemaphoreOptions | undefined | null): Semaphore
  /** Opens the existing named semaphore `name`. Fails with `ENOENT` if there is none. */
  static open(name: string, options?: SemaphoreOpenOptions | undefined | null): Semaphore
  /**
   * Opens `name` if it exists (keeping its value and mode) or creates it with
   * `options.initial`.
   */
  static openOrCreate(name: string, options?: SemaphoreOptions | undefined | null): Semaphore
  /**
   * Removes the name `name` (`sem_unlink`). Processes that have it open keep using it.
   * Fails with `ENOENT` if there is no such name.
   */
  static unlink(name: string): void
  /**
   * Initialises a process-shared semaphore (`sem_init(pshared = 1)`) with value `initial`
   * (default `0`) at byte `offset` of `memory`. Other processes that map the same memory
   * (a named or memfd region, or a forked child) use it through `Semaphore.at`.
   *
   * The `Semaphore.SIZE` bytes at `offset` belong to the semaphore: do not write over them
   * through `buffer` (operations on a damaged semaphore throw `EINVAL`). `offset` must be a
   * multiple of `Semaphore.ALIGN`, and the region shared and writable. The semaphore
   * keeps the mapping alive: closing `memory` does not affect it. The bytes are glibc's
   * `sem_t`, so on glibc C programs use it with `sem_post`/`sem_wait` too.
   */
  static init(memory: SharedMemory, offset: number, initial?: number | undefined | null): Semaphore
  /**
   * Uses the semaphore that `Semaphore.init` (in this or another process) placed at byte
   * `offset` of `memory` (or a C program's `sem_init(pshared = 1)` on glibc), without
   * initialising anything. Throws `EINVAL` when the bytes there hold no semaphore.
   */
  static at(memory: SharedMemory, offset: number): Semaphore
  /**
   * Adds one to the value (`sem_post`), waking one waiter in any process. Throws
   * `EOVERFLOW` at `Semaphore.VALUE_MAX`.
   */
  post(): void
  /**
   * Takes one from the value if it is above zero, without waiting (`sem_trywait`).
   * Returns whether it did. (It may take a permit before this object's pending `wait()`s.)
   */
  tryWait(): boolean
  /**
   * Blocks this thread until it takes one from the value (`sem_wait`), or until
   * `options.timeout` milliseconds have passed (`sem_timedwait`). Returns `true` when it
   * took one, `false` when the time ran out. Signals that arrive meanwhile are handled
   * after it returns; they do not end the wait. Prefer `wait()` on the main thread.
   */
  waitSync(options?: WaitSyncOptions | undefined | null): boolean
  /**
   * Waits without blocking: resolves `true` once it took one from the value, `false` when
   * `options.timeout` milliseconds passed first. Rejects with an `AbortError`
   * (`code: 'ABORT_ERR'`) when `options.signal` aborts first, and with `ERR_SHM_CLOSED`
   * when `close()` is called first. Pending waits of one semaphore object are served in
   * the order they were made; they use no thread of their own and none of the libuv pool
   * (on Linux ≥ 6.7 a post from any process completes straight into the event loop). A
   * pending wait keeps the process alive.
   */
  wait(options?: WaitOptions | undefined | null): Promise<boolean>
  /**
   * The current value (`sem_getvalue`): a snapshot, since other processes may change it
   * at any time. Throws `ERR_SHM_UNSUPPORTED` on macOS.
   */
  get value(): number
  /** The name with its leading `/` (`'/jobs'`), or `null` for an in-region semaphore. */
  get name(): string | null
  /** The byte offset of an in-region semaphore in its region, or `null` for a named one. */
  get offset(): number | null
  /** `true` once `close()` (or `destroy()`) has run. */
  get closed(): boolean
  /**
   * Removes this semaphore's name (`sem_unlink`); the handle stays usable until `close()`.
   * Throws `ERR_SHM_UNSUPPORTED` for an in-region semaphore.
   */
  unlink(): void
  /**
   * Releases this handle: pending `wait()`s reject with `ERR_SHM_CLOSED`, and the
   * semaphore is no longer usable through this object. Idempotent. The semaphore itself
   * stays (a name until `unlink()`, an in-region semaphore until `destroy()` or unmap).
   */
  close(): void
  /**
   * Destroys an in-region semaphore (`sem_destroy`) and closes this handle. No process may
   * use it afterwards until `Semaphore.init` initialises it again. Throws
   * `ERR_SHM_UNSUPPORTED` for a named semaphore (use `unlink()`).
   */
  destroy(): void
}

/**
 * Memory shared between processes, mapped into this one.
 *
 * Make one with a static factory (one per technique), use `buffer` through typed-array
 * views, and `close()` it (or let `using` do it). After `close()`, views that escaped keep
 * their length but read zeros, and their writes reach only private pages of this process,
 * never the shared memory. A name is removed only by `unlink()`.
 *
 * ```ts
 * import { SharedMemory } from 'shmkit'
 * using shm = SharedMemory.create('jobs', 1 << 20)   // O_CREAT | O_EXCL, mode 0o600
 * const view = new Uint8Array(shm.buffer)            // zero-copy
 * view[0] = 1
 * ```
 */
export declare class SharedMemory {
  /**
   * Lists named shared-memory objects and semaphores (Linux: the entries of `/dev/shm`),
   * optionally only those whose name starts with `prefix`, with size, mode, owner and whether
   * any process still uses them. Removes nothing. `ERR_SHM_UNSUPPORTED` on macOS.
   */
  static list(options?: ListOptions | undefined | null): Array<NamedObjectInfo>
  /**
   * Removes the named objects whose name starts with `prefix` (required, non-empty) that
   * belong to you and that no process is seen mapping or holding open (processes of other
   * users may not be inspectable), and returns them. Unlinking removes only the name: a
   * process that still maps an object keeps its memory. Use it for names
   * left behind by crashed programs. `{ dryRun: true }` only reports what it would remove.
   */
  static removeUnused(prefix: string, options?: RemoveUnusedOptions | undefined | null): Array<NamedObjectInfo>
  /**
   * Maps `size` bytes of zeroed anonymous memory (`MAP_SHARED | MAP_ANONYMOUS`): no file,
   * no name. Shared with children made by `fork()`; a spawned process cannot see it.
   */
  static anonymous(size: number, options?: MapOptions | undefined | null): SharedMemory
  /**
   * Maps `size` bytes of `/dev/zero` `MAP_SHARED` (the descriptor is closed right after).
   * Shared with children made by `fork()`. Linux only (`ERR_SHM_UNSUPPORTED` on macOS).
   */
  static devZero(size: number, options?: MapOptions | undefined | null): SharedMemory
  /**
   * Creates the named shared-memory object `name` (`'jobs'` or `'/jobs'`) with `size` zero
   * bytes and maps it. Fails with `EEXIST` if the name exists (`O_CREAT | O_EXCL`). The
   * object holds exactly your bytes, so C, Rust and Python programs can open it by name.
   */
  static create(name: string, size: number, options?: CreateOptions | undefined | null): SharedMemory
  /**
   * Opens the existing named object `name` and maps all of it (`size` comes from the
   * object). Fails with `ENOENT` if there is none. Opening never changes the object, and a
   * process that only opens should never unlink.
   */
  static open(name: string, options?: OpenOptions | undefined | null): SharedMemory
  /**
   * Opens `name` if it exists (keeping its size and mode) or creates it with `size` bytes.
   * Check `size` afterwards when it matters: an existing object is never resized.
   */
  static openOrCreate(name: string, size: number, options?: CreateOptions | undefined | null): SharedMemory
  /**
   * Removes the name `name` (`shm_unlink`). Processes that have it mapped keep their
   * memory until they close it. Fails with `ENOENT` if there is no such name.
   */
  static unlink(name: string): void
  /**
   * Maps the file at `path` `MAP_SHARED`. With a `size`, the file is created if missing
   * (mode `0o600` unless given) and extended to `size` bytes if shorter; without one, the
   * whole existing file is mapped. `flush()` makes writes durable.
   */
  static file(path: string, size?: number | undefined | null, options?: FileOptions | undefined | null): SharedMemory
  /**
   * Creates an anonymous fd-backed region (`memfd_create` on Linux). It has no name, but
   * its `fd` can be handed to a spawned child, which maps it with `SharedMemory.fromFd`.
   */
  static memfd(size: number, options?: MapOptions | undefined | null): SharedMemory
  /**
   * Maps an inherited descriptor (a memfd, or a shared-memory fd) whole; `size` comes from
   * the object. The region keeps its own duplicate of `fd`.
   */
  static fromFd(fd: number, options?: OpenOptions | undefined | null): SharedMemory
  /**
   * The memory itself: one `ArrayBuffer` over the mapping, the same object on every read.
   * Wrap it in typed arrays or a `DataView`; nothing is copied. It is not a
   * `SharedArrayBuffer`, so `Atomics.wait` refuses it (use a `Semaphore` to wait); the other
   * `Atomics` operations work on it. Throws `ERR_SHM_CLOSED` after `close()`.
   */
  get buffer(): ArrayBuffer
  /**
   * The length in bytes (what was asked for, or the object's size when opening one).
   * Readable after `close()`.
   */
  get size(): number
  /** The shared-memory name with its leading `/` (`'/jobs'`), the file path, or `null`. */
  get name(): string | null
  /** Which technique made this region. */
  get kind(): RegionKind
  /** `true` for `MAP_PRIVATE` (copy-on-write) mappings. */
  get private(): boolean
  /** `true` when opened read-only (writes stay in this process). */
  get readOnly(): boolean
  /** `true` once `close()` has run. */
  get closed(): boolean
  /**
   * A duplicate of the descriptor of a `memfd`/`fromFd` region, to pass to a spawned child
   * (for example in its `stdio` array); `null` for other kinds. Every read makes a new
   * descriptor (close-on-exec) that the caller owns: close it with `fs.closeSync(fd)` when
   * done. The region's own descriptor is never handed out. Throws `ERR_SHM_CLOSED` after
   * `close()`.
   */
  get fd(): number | null
  /**
   * `true` when the region's descriptor is sealed against shrinking (`F_SEAL_SHRINK`), so no
   * process it is shared with can truncate the memory under this mapping. Always `true` for
   * `memfd()` regions on Linux; for `fromFd()` it depends on who made the object; `false`
   * for other kinds. Throws `ERR_SHM_CLOSED` after `close()`.
   */
  get sealed(): boolean
  /**
   * Writes changes back to the backing object and waits (`msync(MS_SYNC)`): for files this
   * makes them durable. Throws `ERR_SHM_CLOSED` after `close()`.
   */
  flush(): void
  /**
   * Removes this region's name (`shm_unlink`), for a `named` region. The mapping stays
   * usable until `close()`. Throws `ERR_SHM_CLOSED` after `close()`, `ENOENT` if the name
   * is already gone, `ERR_SHM_UNSUPPORTED` for regions without a shared-memory name.
   */
  unlink(): void
  /**
   * Cuts `buffer` off from the memory and lets go of the region. Idempotent. The name, if
   * any, stays until `unlink()`.
   *
   * The buffer is not detached: views keep their length, but its memory is replaced in place
   * by private zero pages, so views read zeros and their writes reach only this process's
   * blank pages, never the shared object. Native work handed a view before `close()` (an
   * `fs.write`, a `zlib` or `crypto` job, a socket write in flight) therefore never faults or
   * aborts. The addresses are released once the buffer is garbage-collected. Handles made
   * with `share()`/`from()` in other threads, and semaphores in the region, keep the memory
   * itself alive until they close too. (Private and read-only regions, and systems without
   * `mremap`, have no separate mapping per user: their views are blanked when the region's
   * last user lets go.)
   */
  close(): void
  /**
   * A token that hands this region to a worker thread of this process without copying:
   * post it (`worker.postMessage(region.share())`) and call `SharedMemory.from(token)` there.
   * The new handle maps nothing new; it shares this mapping, which stays until every handle
   * over it is closed or collected. Each token is redeemable once; one never redeemed keeps
   * the memory mapped until the process ends. (Posting `region.buffer` itself copies the
   * bytes: the copy is not shared memory.) Throws `ERR_SHM_CLOSED` after `close()`.
   */
  share(): SharedMemoryToken
  /**
   * Turns a token from `share()` (made in any thread of this process) into a handle over the
   * same mapping. A token that is not from `share()` in this process, or was already
   * redeemed, throws `ERR_SHM_INVALID_TOKEN`.
   */
  static from(token: SharedMemoryToken): SharedMemory
}

/** Options for the async `send` and `receive`. */
export interface ChannelAsyncOptions {
  /**
   * The longest to wait, in milliseconds (fractions allowed). `0` tries once; `Infinity`
   * or absent waits as long as it takes.
   */
  timeout?: number
  /**
   * Aborting it rejects the pending operation with an `AbortError` (`code` `'ABORT_ERR'`,
   * `cause` the signal's reason), unless it already completed.
   */
  signal?: AbortSignal
}

/** Options for `Channel.init`. */
export interface ChannelInitOptions {
  /**
   * Slots in the ring: how many messages can wait unreceived before senders wait. A power
   * of two from 2 to 1048576.
   */
  capacity: number
  /**
   * The largest message in bytes (after serialisation in object mode), from 1 to 2^30.
   * Every slot reserves this much: the channel takes
   * `Channel.size(capacity, maxMessageSize)` bytes of the region.
   */
  maxMessageSize: number
  /**
   * `true`: this handle sends any value `v8.serialize` accepts (not `undefined`) and
   * receives the deserialised values, like `process.send`. Default `false`: bytes.
   */
  objectMode?: boolean
}

/** Options for `Channel.at`. */
export interface ChannelOptions {
  /** As in `ChannelInitOptions`. Default `false`. */
  objectMode?: boolean
}

/** Options for the blocking `sendSync` and `receiveSync` forms. */
export interface ChannelWaitOptions {
  /**
   * The longest to wait, in milliseconds (fractions allowed). `0` tries once; `Infinity`
   * or absent waits as long as it takes.
   */
  timeout?: number
}

/**
 * Options of `ForkedChild.wait`: the options of every blocking call.
 * @deprecated Use `WaitSyncOptions`.
 */
export type ChildWaitOptions = WaitSyncOptions

/**
 * Writes all of `data` (a string as UTF-8, or the bytes of a Buffer/TypedArray/DataView/
 * `ArrayBuffer`) to the descriptor `fd`, blocking until done even if `fd` is non-blocking
 * (Node makes stdout/stderr pipes non-blocking). Returns the number of bytes written. Use it
 * for output from a `fork()` child: `childWrite(1, 'done')`.
 */
export declare function childWrite(fd: number, data: string | ArrayBufferView | ArrayBuffer): number

/** Options for `create` and `openOrCreate`. */
export interface CreateOptions {
  /**
   * Permission bits of a newly created object, applied exactly (the umask does not narrow
   * them). An integer from `0` to `0o777`. Default `0o600`: only the owner may open it.
   */
  mode?: number
  /**
   * `true` allocates every page up front (`posix_fallocate`): creating fails with `ENOSPC`
   * if the space is not there, and touching the memory later can never fault. Default
   * `false`: pages are allocated on first touch (creation still fails with `ENOSPC` when
   * `/dev/shm` has less free space than `size`).
   */
  reserve?: boolean
  /**
   * `true` maps `MAP_PRIVATE` (copy-on-write): this process's writes stay its own.
   * Default `false`. Not available on macOS.
   */
  private?: boolean
  /**
   * Whose object to accept when opening an existing one: a user id, or `'any'`. Default:
   * only objects owned by this process's user; one created by another user (who could
   * squat the name in the world-writable `/dev/shm`) is refused with
   * `ERR_SHM_FOREIGN_OWNER`, whose `owner` property is that user's id.
   */
  owner?: number | 'any'
}

/**
 * How a child ended, as in `child_process`'s `'exit'` event: exactly one of `code` and
 * `signal` is set.
 */
export interface ExitStatus {
  /** The exit code, if the child exited. */
  code: number | null
  /** The signal that killed the child (`'SIGKILL'`, …), if one did. */
  signal: string | null
}

/** Options for `file`. */
export interface FileOptions {
  /** Permission bits if the file is created, applied exactly. Default `0o600`. */
  mode?: number
  /**
   * `false` fails with `ENOENT` instead of creating a missing file. Default `true` (when a
   * size is given).
   */
  create?: boolean
  /**
   * `true` opens the file read-only and maps it copy-on-write: writes stay in this process.
   * Default `false`.
   */
  readOnly?: boolean
  /** `true` maps `MAP_PRIVATE` (copy-on-write): writes never reach the file. Default `false`. */
  private?: boolean
}

/**
 * Runs `callback` in a child process that shares this process's memory mappings, and
 * returns at once with the child. Linux only.
 *
 * The child is a copy of this process made by `fork()`: it sees every variable and every
 * `SharedMemory` region (`anonymous` and `devZero` regions are shared, `private: true` ones
 * are copies), runs the callback synchronously, and ends with `_exit`. Its exit code is the
 * callback's numeric result (`& 0xff`); `undefined` and other values give 0. A throw prints
 * the error to stderr and gives 1; returning a Promise gives 1 with a message (async work
 * never completes in the child).
 *
 * ```ts
 * // node --single-threaded app.js
 * const area = SharedMemory.devZero(4096)
 * const counter = new Int32Array(area.buffer)
 * const child = fork(() => { counter[0] = 42 })   // runs in the child, then _exit
 * const { code, signal } = child.wait()           // or: await child.exited
 * ```
 *
 * Preconditions, else it throws `ERR_SHM_FORK_UNSAFE` saying what to change and creates no
 * child: Linux; the main thread; Node started with `--single-threaded` (on the command
 * line; it costs the whole process about +22 % (Node 20) / +26 % (Node 24) time on an
 * allocation-heavy benchmark); no worker thread alive; external `ArrayBuffer`s allowed;
 * `SIGCHLD` not ignored; this Node's condvar call slots were found when shmkit loaded.
 *
 * The child's rules: synchronous work only (Promises never settle, timers never fire, no
 * servers, no workers, no `child_process`), moderate allocation (pages it touches are
 * copied), output through `childWrite(fd, data)` rather than `console.log` (a full stdout
 * pipe would drop it), `getpid()` for its pid. Inherited sockets and pipes read as
 * `/dev/null` in the child; `process.exit(code)` there ends it at once. `Math.random()` and
 * `crypto.randomUUID()` repeat the parent's sequence in every child. A fork takes about
 * 8–9 ms with a 50 MB heap and grows with the heap (~100 ms at 1 GB).
 */
export declare function fork(callback: () => unknown): ForkedChild

/**
 * This process's id, from the kernel. Use it in a `fork()` child, where Node's
 * `process.pid` would be the parent's (shmkit corrects `process.pid` in its children, but
 * code that cached it earlier still holds the parent's).
 */
export declare function getpid(): number

/** Options for `SharedMemory.list`. */
export interface ListOptions {
  /** Only the names that start with it (`'jobs'` or `'/jobs'`). Default: every name. */
  prefix?: string
}

/** The outcome of taking a `RobustMutex`. */
export interface LockResult {
  /**
   * `true` when the previous owner died holding the lock: you hold it now, but the data it
   * protects may be half-written. Check or repair it, then call `markConsistent()` before
   * `unlock()`; unlocking without that makes the mutex unusable (`ENOTRECOVERABLE`).
   */
  ownerDied: boolean
}

/** Options for `anonymous`, `devZero` and `memfd`. */
export interface MapOptions {
  /**
   * `true` maps `MAP_PRIVATE` (copy-on-write): after a `fork`, the parent's and the child's
   * writes stay their own. Default `false` (`MAP_SHARED`).
   */
  private?: boolean
  /**
   * `memfd` only: leave the object growable. A memfd is sealed against shrinking once sized
   * (`F_SEAL_SHRINK`), so a process it is shared with cannot truncate it under this mapping,
   * and against growing too unless this is `true`. Default `false`.
   */
  growable?: boolean
}

/** One named object in `/dev/shm`. */
export interface NamedObjectInfo {
  /** The name with its leading `/`, as `SharedMemory.open` or `Semaphore.open` take it. */
  name: string
  /** `'segment'` (shared memory) or `'semaphore'` (a named semaphore). */
  kind: 'segment' | 'semaphore'
  /** Size in bytes. */
  size: number
  /** Permission bits, such as `0o600`. */
  mode: number
  /** The owner's user id. */
  uid: number
  /** Last modification, in milliseconds since the epoch. */
  modifiedMs: number
  /**
   * Whether some process maps it or holds it open; `null` when some processes could not be
   * inspected (other users', without privileges) and none of the others uses it.
   */
  inUse?: boolean
}

/**
 * Wakes up to `count` waiters (default: all) blocked on `typedArray[index]` in `wait` or
 * `waitAsync`, in any process, and C or Rust threads in a futex wait on the same word.
 * Returns how many were woken (on macOS, at most what was asked). Change the word before
 * notifying: waiters re-check it.
 */
export declare function notify(typedArray: Int32Array, index: number, count?: number | undefined | null): number

/** Options for `open` and `fromFd`. */
export interface OpenOptions {
  /**
   * `true` opens the object read-only. The mapping is then copy-on-write: writes through
   * `buffer` stay in this process and never reach the object (so a stray write can never
   * crash the process). Default `false`. Not available on macOS.
   */
  readOnly?: boolean
  /** `true` maps `MAP_PRIVATE` (copy-on-write). Default `false`. Not available on macOS. */
  private?: boolean
  /**
   * Whose object to accept (`open` only): a user id, or `'any'`. Default:
   * only objects owned by this process's user; one created by another user (who could
   * squat the name in the world-writable `/dev/shm`) is refused with
   * `ERR_SHM_FOREIGN_OWNER`, whose `owner` property is that user's id.
   */
  owner?: number | 'any'
}

/** Options for `SharedMemory.removeUnused`. */
export interface RemoveUnusedOptions {
  /** `true` only reports what would be removed. Default `false`. */
  dryRun?: boolean
}

/**
 * Bytes a `RobustMutex` occupies in a region.
 * @deprecated Use `RobustMutex.SIZE`.
 */
export declare const ROBUST_MUTEX_SIZE: number

/**
 * The alignment an in-region semaphore's offset needs.
 * @deprecated Use `Semaphore.ALIGN`.
 */
export declare const SEMAPHORE_ALIGNMENT: number

/**
 * Bytes an in-region semaphore occupies.
 * @deprecated Use `Semaphore.SIZE`.
 */
export declare const SEMAPHORE_SIZE: number

/**
 * The largest value a semaphore can hold.
 * @deprecated Use `Semaphore.VALUE_MAX`.
 */
export declare const SEMAPHORE_VALUE_MAX: number

/** Options for `Semaphore.open`. */
export interface SemaphoreOpenOptions {
  /**
   * Whose semaphore to accept: a user id, or `'any'`. Default: only this process's user's;
   * one another user created is refused with `ERR_SHM_FOREIGN_OWNER` (checked on Linux).
   */
  owner?: number | 'any'
}

/** Options for `Semaphore.create` and `Semaphore.openOrCreate`. */
export interface SemaphoreOptions {
  /**
   * The value of a new semaphore: how many `wait()`s succeed before one blocks. An integer
   * from `0` to `Semaphore.VALUE_MAX`. Default `0`.
   */
  initial?: number
  /**
   * Permission bits of a new semaphore, applied exactly on Linux (the umask does not narrow
   * them; on macOS it does). An integer from `0` to `0o777`. Default `0o600`: only the
   * owner may open it.
   */
  mode?: number
  /**
   * Whose semaphore to accept when opening an existing one: a user id, or `'any'`. Default:
   * only this process's user's; one another user created is refused with
   * `ERR_SHM_FOREIGN_OWNER` (checked on Linux).
   */
  owner?: number | 'any'
}

/**
 * What `share()` returns: a plain object to post to a worker thread of this process, where
 * `SharedMemory.from(token)` turns it into a handle over the same mapping.
 */
export interface SharedMemoryToken {
  /** A random id naming the shared region in this process; redeemable once. */
  id: string
  /** The region's kind. */
  kind: RegionKind
  /** The region's size in bytes. */
  size: number
  /** The region's name or path, or `null`. */
  name?: string
}

/**
 * Waits, blocking this thread, while `typedArray[index]` holds `value`, until a `notify` on
 * it from any process or until `timeout` milliseconds pass (absent, `NaN` or `Infinity`:
 * no limit). Returns `'ok'` (woken; re-check the word, as wake-ups may be spurious),
 * `'not-equal'` (the word did not hold `value`) or `'timed-out'`, like `Atomics.wait`.
 * `typedArray` must be an `Int32Array` over a `SharedMemory`'s `buffer`.
 *
 * ```ts
 * import { wait, notify, SharedMemory } from 'shmkit'
 * const words = new Int32Array(SharedMemory.open('jobs').buffer)
 * while (Atomics.load(words, 0) === 0) wait(words, 0, 0, 1000)
 * ```
 */
export declare function wait(typedArray: Int32Array, index: number, value: number, timeout?: number | undefined | null): 'ok' | 'not-equal' | 'timed-out'

/**
 * Waits without blocking while `typedArray[index]` holds `value`: the promise resolves
 * `'ok'` once a `notify` from any process wakes it (re-check the word), `'not-equal'` at
 * once if the word does not hold `value`, or `'timed-out'`. Like `Atomics.waitAsync`, but
 * the promise is returned directly. `options` is a timeout in milliseconds or
 * `{ timeout, signal }`. A pending wait keeps the process alive and the memory mapped (even
 * if the `SharedMemory` is closed), and takes no thread of the libuv pool: on Linux ≥ 6.7
 * the kernel completes it straight into the event loop (`io_uring`), elsewhere a few shared
 * waiter threads watch the words.
 */
export declare function waitAsync(typedArray: Int32Array, index: number, value: number, options?: number | WaitAsyncOptions | undefined | null): Promise<'ok' | 'not-equal' | 'timed-out'>

/** Options for `waitAsync`. */
export interface WaitAsyncOptions {
  /**
   * The longest to wait, in milliseconds (fractions allowed; absent, `NaN` or `Infinity`:
   * no limit). The promise then resolves `'timed-out'`, within a few milliseconds of it.
   */
  timeout?: number
  /**
   * Aborting it rejects the pending wait with an `AbortError` (`code` `'ABORT_ERR'`,
   * `cause` the signal's reason).
   */
  signal?: AbortSignal
}

/**
 * Which mechanism serves this thread's async waits: `'io_uring'` (Linux ≥ 6.7: completions
 * land in the event loop) or `'threads'` (a few shared waiter threads). For diagnostics
 * and benchmarks.
 */
export declare function waitMechanism(): 'io_uring' | 'threads'

/** Options of a promise-returning wait (`Semaphore#wait`, `RobustMutex#lock`). */
export interface WaitOptions {
  /**
   * The longest to wait, in milliseconds (fractions allowed). `0` tries once; `Infinity`
   * or absent waits as long as it takes; negative or `NaN` is `ERR_OUT_OF_RANGE`. Running
   * out of time is an answer: the promise resolves `false` (`wait`) or `null` (`lock`),
   * within a few milliseconds of the deadline.
   */
  timeout?: number
  /**
   * Aborting it rejects the pending wait with an `AbortError` (`code` `'ABORT_ERR'`,
   * `cause` the signal's reason), and nothing is taken.
   */
  signal?: AbortSignal
}

/** Options of a blocking call (`waitSync`, `lockSync`, `ForkedChild.wait`). */
export interface WaitSyncOptions {
  /**
   * The longest to wait, in milliseconds (fractions allowed). `0` tries once; `Infinity`
   * or absent waits as long as it takes; negative or `NaN` is `ERR_OUT_OF_RANGE`. Running
   * out of time is an answer: `false` from `waitSync`, `null` from `lockSync` and `wait`.
   */
  timeout?: number
}
