/** Every `code` a shmkit error can carry besides an errno name such as `'ENOENT'`. */
export type ShmErrorCode =
  | 'ERR_SHM_CLOSED'
  | 'ERR_SHM_UNSUPPORTED'
  | 'ERR_SHM_EXTERNAL_BUFFER'
  | 'ERR_SHM_FORK_UNSAFE'
  | 'ERR_SHM_UNSUPPORTED_PLATFORM'
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_INVALID_ARG_VALUE'
  | 'ERR_OUT_OF_RANGE'
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

/**
 * Which binding artifact the generated loader actually loaded: `'native'` for
 * a native addon, otherwise the `platformArchABI` of the WASI flavor. Every
 * flavor napi-rs can build is listed, because `NAPI_RS_NATIVE_LIBRARY_PATH`
 * can point the loader at a WASI artifact this package does not build itself.
 */
export declare const __napiBindingTarget: 'native' | 'wasm32-wasi' | 'wasm32-wasip1'

/**
 * A robust, process-shared mutex (`PTHREAD_MUTEX_ROBUST`, `PTHREAD_PROCESS_SHARED`) living at
 * an offset inside a `SharedMemory` region, so every process that maps the region can use it.
 *
 * If a process dies while holding it, the next `lockSync()` says so (`ownerDied: true`)
 * instead of hanging forever. Locks belong to the calling thread: lock and unlock from the
 * same thread. Locking it twice is `EDEADLK`, unlocking someone else's lock is `EPERM`.
 * Linux only (`ERR_SHM_UNSUPPORTED` on macOS, which has no robust mutexes).
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
   * Blocks this thread (and the event loop) until the lock is held, or until `timeout`
   * milliseconds pass (then throws `ETIMEDOUT`). Keep critical sections short.
   */
  lockSync(options?: { timeout?: number } | undefined | null): LockResult
  /** Takes the lock if it is free; `null` if someone else holds it. */
  tryLock(): LockResult | null
  /** Releases the lock (`EPERM` if this thread does not hold it). */
  unlock(): void
  /**
   * After `ownerDied: true`: declares the protected data consistent again, so the mutex goes
   * back to normal use when unlocked.
   */
  markConsistent(): void
  /** The mutex's offset inside its region. */
  get offset(): number
  /** `true` once `close()` has run. */
  get closed(): boolean
  /**
   * Lets go of this handle. A lock this thread holds is released first; the mutex itself
   * stays in the region for other processes. Idempotent.
   */
  close(): void
}

/**
 * Memory shared between processes, mapped into this one.
 *
 * Make one with a static factory (one per technique), use `buffer` through typed-array
 * views, and `close()` it (or let `using` do it). Closing detaches `buffer`: views that
 * escaped read length 0 instead of crashing. A name is removed only by `unlink()`.
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
  static list(options?: { prefix?: string } | undefined | null): Array<NamedObjectInfo>
  /**
   * Removes the named objects whose name starts with `prefix` (required, non-empty) that
   * belong to you and that no process is seen mapping or holding open (processes of other
   * users may not be inspectable), and returns them. Unlinking removes only the name: a
   * process that still maps an object keeps its memory. Use it for names
   * left behind by crashed programs. `{ dryRun: true }` only reports what it would remove.
   */
  static removeUnused(prefix: string, options?: { dryRun?: boolean } | undefined | null): Array<NamedObjectInfo>
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
   * The descriptor of a `memfd`/`fromFd` region, to pass to a spawned child (for example
   * in its `stdio` array); `null` for other kinds. Throws `ERR_SHM_CLOSED` after `close()`.
   */
  get fd(): number | null
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
   * Detaches `buffer` (every view now has length 0), then unmaps. Idempotent. The name, if
   * any, stays until `unlink()`.
   */
  close(): void
}

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
}

/** Bytes a `RobustMutex` occupies in a region on this platform. */
export declare const ROBUST_MUTEX_SIZE: number
