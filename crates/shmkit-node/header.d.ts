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
