// RobustMutex lock + unlock from Node, one case per run:
//
//   node bench/mutex.mjs <iters>
//
//   uncontended     lockSync() + unlock() with nobody else around
//   contended.diff  this process (CPU 0) and a child (CPU 1) each take and release one mutex
//                   in a named segment <iters> times, adding to a counter inside; µs per
//                   lock + unlock over both
//
// Prints RESULT mutex.shmkit.<case> lines; the native floor is `bench_native mutex`.
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'

import { canPin, exited, pinSelf, result, shmkit, spawnNode, usPerOp } from './lib.mjs'

const { RobustMutex, SharedMemory } = shmkit
const COUNTER = 64
const GO = 128
const READY = 192

function work(mutex, counter, iters) {
  for (let i = 0; i < iters; i++) {
    mutex.lockSync()
    counter[0] = counter[0] + 1
    mutex.unlock()
  }
}

const [first, name, itersArg] = process.argv.slice(2)
if (first === 'child') {
  const shm = SharedMemory.open(name)
  const go = new Int32Array(shm.buffer, GO, 1)
  Atomics.store(new Int32Array(shm.buffer, READY, 1), 0, 1)
  while (Atomics.load(go, 0) === 0);
  work(RobustMutex.at(shm, 0), new Uint32Array(shm.buffer, COUNTER, 1), Number(itersArg))
} else {
  const iters = Number(first)
  const pin = canPin()
  if (pin) pinSelf(0)

  const alone = RobustMutex.init(SharedMemory.anonymous(4096), 0)
  for (let i = 0; i < iters / 10; i++) {
    alone.lockSync()
    alone.unlock()
  }
  let start = process.hrtime.bigint()
  for (let i = 0; i < iters; i++) {
    alone.lockSync()
    alone.unlock()
  }
  result('mutex.shmkit.uncontended', usPerOp(start, process.hrtime.bigint(), iters), 'us')

  const segment = `bm${randomBytes(6).toString('hex')}`
  const shm = SharedMemory.create(segment, 4096)
  try {
    const mutex = RobustMutex.init(shm, 0)
    const counter = new Uint32Array(shm.buffer, COUNTER, 1)
    const child = spawnNode(pin ? 1 : null, fileURLToPath(import.meta.url), ['child', segment, String(iters)], {
      stdio: 'inherit',
    })
    const done = exited(child, 'mutex child')
    const ready = new Int32Array(shm.buffer, READY, 1)
    while (Atomics.load(ready, 0) === 0) await new Promise((resolve) => setTimeout(resolve, 1))
    start = process.hrtime.bigint()
    Atomics.store(new Int32Array(shm.buffer, GO, 1), 0, 1)
    work(mutex, counter, iters)
    await done
    const end = process.hrtime.bigint()
    if (counter[0] !== 2 * iters) throw new Error(`the count is off: ${counter[0]}`)
    result('mutex.shmkit.contended.diff', usPerOp(start, end, 2 * iters), 'us')
  } finally {
    SharedMemory.unlink(segment)
  }
}
