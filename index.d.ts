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

/**
 * Which binding artifact the generated loader actually loaded: `'native'` for
 * a native addon, otherwise the `platformArchABI` of the WASI flavor. Every
 * flavor napi-rs can build is listed, because `NAPI_RS_NATIVE_LIBRARY_PATH`
 * can point the loader at a WASI artifact this package does not build itself.
 */
export declare const __napiBindingTarget: 'native' | 'wasm32-wasi' | 'wasm32-wasip1'

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

/** Options for `anonymous`, `devZero` and `memfd`. */
export interface MapOptions {
  /**
   * `true` maps `MAP_PRIVATE` (copy-on-write): after a `fork`, the parent's and the child's
   * writes stay their own. Default `false` (`MAP_SHARED`).
   */
  private?: boolean
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
