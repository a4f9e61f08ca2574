// fork() + wait() from JS, per cycle: first from the process as it starts, then with a live
// JS heap of about <heap MB> (arrays of numbers and short strings, kept reachable).
//
//   node --single-threaded bench/fork.mjs <heap MB> <ops>
//
// Prints RESULT fork.shmkit.small, fork.shmkit.<heap>m (µs per fork + wait) and the heap
// actually live (fork.shmkit.<heap>m.heap_mb, from process.memoryUsage().heapUsed).
import { result, shmkit, usPerOp } from './lib.mjs'

const { fork } = shmkit
const [heapMb, ops] = process.argv.slice(2).map(Number)

function cycles(count) {
  for (let i = 0; i < Math.max(1, Math.floor(count / 10)); i++) fork(() => 0).wait()
  const start = process.hrtime.bigint()
  for (let i = 0; i < count; i++) {
    const { code } = fork(() => 0).wait()
    if (code !== 0) throw new Error(`child exited with ${code}`)
  }
  return usPerOp(start, process.hrtime.bigint(), count)
}

result('fork.shmkit.small', cycles(ops), 'us')

const keep = []
const target = heapMb * 1e6
while (process.memoryUsage().heapUsed < target) {
  keep.push(Array.from({ length: 1000 }, (_, i) => (i % 2 ? i * 1.5 : `s${i}`)))
}
const heap = process.memoryUsage().heapUsed
result(`fork.shmkit.${heapMb}m`, cycles(ops), 'us')
result(`fork.shmkit.${heapMb}m.heap_mb`, heap / 1e6, 'MB')
if (keep.length === 0) throw new Error('no heap was built')
