// Region lifecycle from JS, one case per process so that GC state does not carry over:
//
//   node bench/lifecycle.mjs <case> <4k|1m> <ops> [floor]
//
//   create.anonymous  SharedMemory.anonymous(size), read .buffer, close()
//   create.devzero    SharedMemory.devZero(size), read .buffer, close()
//   create.memfd      SharedMemory.memfd(size), read .buffer, close()
//   create.named      SharedMemory.create(name, size), read .buffer, close(), unlink
//   open.named        SharedMemory.open(name) of an existing object, read .buffer, close()
//   open.fd           SharedMemory.fromFd(fd) of an existing memfd, read .buffer, close()
//
// With `floor`, each operation is one call of the Node floor instead (bench/floor: the core's
// region as one external ArrayBuffer, closed in place, unmapped when V8 frees the buffer),
// reported as life.floor.<case>.<size>.
//
// `ops` timed operations after ops/10 warm-up ones. The loop yields to the event loop every
// 100 operations, inside the clock, as a program that serves requests does: what Node defers
// to its immediates (the finalizers that unmap collected buffers) is counted with the rest.
// Prints, for life.shmkit.<case>.<size> (or life.floor.*):
// µs per op (mean), the means of the first and the last tenth (.first10, .last10), the change
// in /proc/self/maps lines from after the warm-up to after the last op (.maps_delta), and
// the full (mark-compact) GCs V8 ran during the timed ops (.major_gcs) with all GCs (.gcs).
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { PerformanceObserver, constants } from 'node:perf_hooks'
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import { mappingCount, result, shmkit, usPerOp } from './lib.mjs'

const { SharedMemory } = shmkit
const [kase, label, opsText, mode = 'shmkit'] = process.argv.slice(2)
const size = { '4k': 4096, '1m': 1 << 20 }[label]
const ops = Number(opsText)
const name = `bl${process.pid}`

let source = null
if (kase === 'open.named') source = SharedMemory.create(name, size)
if (kase === 'open.fd') source = SharedMemory.memfd(size)
const fd = source?.fd ?? -1

let op
if (mode === 'floor') {
  op = floorOp(kase)
} else if (mode === 'shmkit') {
  op = shmkitOp(kase)
  // Every case reads .buffer too, as any user does: wrap the close so the buffer is touched.
  const realClose = SharedMemory.prototype.close
  SharedMemory.prototype.close = function close() {
    if (this.buffer.byteLength !== size) throw new Error('wrong size')
    return realClose.call(this)
  }
} else {
  throw new Error(`unknown mode ${mode}`)
}

function shmkitOp(kase) {
  switch (kase) {
    case 'create.anonymous':
      return () => SharedMemory.anonymous(size).close()
    case 'create.devzero':
      return () => SharedMemory.devZero(size).close()
    case 'create.memfd':
      return () => SharedMemory.memfd(size).close()
    case 'create.named':
      return () => {
        SharedMemory.create(name, size).close()
        SharedMemory.unlink(name)
      }
    case 'open.named':
      return () => SharedMemory.open(name).close()
    case 'open.fd':
      return () => SharedMemory.fromFd(fd).close()
    default:
      throw new Error(`unknown case ${kase}`)
  }
}

function floorOp(kase) {
  const library = `libshmkit_bench_floor.${process.platform === 'darwin' ? 'dylib' : 'so'}`
  const path = join(dirname(fileURLToPath(import.meta.url)), '..', 'target', 'release', library)
  if (!existsSync(path)) throw new Error(`${path} is missing: npm run bench builds it`)
  const floor = { exports: {} }
  process.dlopen(floor, path)
  const { cycle } = floor.exports
  return () => {
    if (cycle(kase, size, name, fd).byteLength !== size) throw new Error('wrong size')
  }
}

let major = 0
let all = 0
const observer = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    all++
    if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++
  }
})
observer.observe({ entryTypes: ['gc'] })

try {
  const tenth = Math.floor(ops / 10)
  for (let i = 0; i < tenth; i++) {
    op()
    if (i % 100 === 99) await nextTurn()
  }
  await sleep(20) // let the warm-up's GC entries arrive before counting
  const mapsBefore = mappingCount()
  major = 0
  all = 0
  const start = process.hrtime.bigint()
  let firstEnd = start
  let lastStart = start
  for (let i = 0; i < ops; i++) {
    if (i === tenth) firstEnd = process.hrtime.bigint()
    if (i === ops - tenth) lastStart = process.hrtime.bigint()
    op()
    if (i % 100 === 99) await nextTurn()
  }
  await nextTurn()
  const end = process.hrtime.bigint()
  await sleep(20)
  const id = `life.${mode}.${kase}.${label}`
  result(id, usPerOp(start, end, ops), 'us')
  result(`${id}.first10`, usPerOp(start, firstEnd, tenth), 'us')
  result(`${id}.last10`, usPerOp(lastStart, end, tenth), 'us')
  result(`${id}.maps_delta`, mappingCount() - mapsBefore, 'count')
  result(`${id}.major_gcs`, major, 'count')
  result(`${id}.gcs`, all, 'count')
} finally {
  observer.disconnect()
  if (source) {
    source.close()
    if (kase === 'open.named') SharedMemory.unlink(name)
  }
}
