// One side of the worker_threads reference ping-pong (bench/pingpong.mjs worker_atomics):
// Atomics.wait/notify on one Int32 of a SharedArrayBuffer, or (worker_word, with `segment`)
// shmkit's wait/notify on one Int32 of a named region each worker opens. Side 0 times the
// round trips and posts the microseconds per round trip.
import { parentPort, workerData } from 'node:worker_threads'

import { shmkit } from './lib.mjs'

const { sab, side, iters, warm, segment } = workerData
const region = segment ? shmkit.SharedMemory.open(segment) : null
const turn = region ? new Int32Array(region.buffer, 0, 16) : new Int32Array(sab)
const wait = region ? shmkit.wait : Atomics.wait
const notify = region ? shmkit.notify : Atomics.notify
const total = iters + warm
let start = 0n
for (let k = 0; k < total; k++) {
  if (side === 0 && k === warm) start = process.hrtime.bigint()
  const want = side === 0 ? 2 * k + 2 : 2 * k + 1
  if (side === 0) {
    Atomics.store(turn, 0, 2 * k + 1)
    notify(turn, 0, 1)
  }
  let seen
  while ((seen = Atomics.load(turn, 0)) !== want) wait(turn, 0, seen)
  if (side === 1) {
    Atomics.store(turn, 0, 2 * k + 2)
    notify(turn, 0, 1)
  }
}
if (side === 0) parentPort.postMessage(Number(process.hrtime.bigint() - start) / 1000 / iters)
region?.close()
