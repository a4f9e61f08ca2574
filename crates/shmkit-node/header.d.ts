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
