// The ESM entry (`import` in package.json's exports): the very objects of the CommonJS entry
// index.js, as named exports written out, so every runtime sees them (Deno, for one, does not
// read a CommonJS file's re-exports). A test keeps this list equal to index.js's exports.
// createRequire, not `import ... from './index.js'`: Deno decides the module type of a file
// outside node_modules by its own configuration, not by this package.json.
import { createRequire } from 'node:module'

const shmkit = createRequire(import.meta.url)('./index.js')

export const {
  Channel,
  ForkedChild,
  ROBUST_MUTEX_SIZE,
  RobustMutex,
  SEMAPHORE_ALIGNMENT,
  SEMAPHORE_SIZE,
  SEMAPHORE_VALUE_MAX,
  Semaphore,
  SharedMemory,
  __napiBindingTarget,
  childWrite,
  fork,
  getpid,
  inherited,
  notify,
  shareWith,
  wait,
  waitAsync,
  waitMechanism,
} = shmkit

export default shmkit
