// One side of the worker_threads reference ping-pong (bench/pingpong.mjs worker_atomics):
// Atomics.wait/notify on one Int32 of a SharedArrayBuffer. Side 0 times the round trips
// and posts the microseconds per round trip.
import { parentPort, workerData } from 'node:worker_threads'

const { sab, side, iters, warm } = workerData
const turn = new Int32Array(sab)
const total = iters + warm
let start = 0n
for (let k = 0; k < total; k++) {
  if (side === 0 && k === warm) start = process.hrtime.bigint()
  const want = side === 0 ? 2 * k + 2 : 2 * k + 1
  if (side === 0) {
    Atomics.store(turn, 0, 2 * k + 1)
    Atomics.notify(turn, 0, 1)
  }
  let seen
  while ((seen = Atomics.load(turn, 0)) !== want) Atomics.wait(turn, 0, seen)
  if (side === 1) {
    Atomics.store(turn, 0, 2 * k + 2)
    Atomics.notify(turn, 0, 1)
  }
}
if (side === 0) parentPort.postMessage(Number(process.hrtime.bigint() - start) / 1000 / iters)
