// Moving <MiB> MiB from a parent Node process to a child Node process, one case per run:
//
//   node bench/bulk.mjs <case> <MiB> <reps>
//
//   copyout  the data sits in a memfd region shared with shareWith; the parent posts a
//            semaphore, the child copies the whole region into its own (touched) Buffer with
//            buf.set(); clock from the post to the end of the copy (both sides read
//            CLOCK_MONOTONIC through process.hrtime)
//   ipc      child_process IPC with serialization 'advanced', process.send(Buffer) in 1 MiB
//            chunks; clock from the first send to the child's 'done' message
//   stdin    the child's stdin pipe, 1 MiB writes honouring backpressure; clock from the
//            first write to the child's one-byte answer after the last byte
//
// One untimed transfer first, then <reps> timed ones; prints the median as
// RESULT bulk.<impl>.<case> in GB/s (1e9 bytes per second).
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

import { exited, result, shmkit, spawnNode } from './lib.mjs'

const { Semaphore, SharedMemory, inherited, shareWith } = shmkit
const self = fileURLToPath(import.meta.url)
const MIB = 1 << 20
// Layout of the control region: two semaphores and the child's end time.
const READY = 0
const GO = 64
const END = 128

const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]

function copyoutChild(rounds) {
  const [control, data] = inherited()
  const ready = Semaphore.at(control, READY)
  const go = Semaphore.at(control, GO)
  const end = new BigInt64Array(control.buffer, END, 1)
  const source = new Uint8Array(data.buffer)
  const target = Buffer.alloc(source.length, 1) // touched: every page is backed before timing
  for (let i = 0; i < rounds; i++) {
    ready.post()
    go.waitSync()
    target.set(source)
    end[0] = process.hrtime.bigint()
    ready.post()
  }
  if (target[target.length - 1] !== 5) throw new Error('the copy is wrong')
  ready.close()
  go.close()
  control.close()
  data.close()
}

async function copyout(size, reps) {
  const control = SharedMemory.memfd(4096)
  const data = SharedMemory.memfd(size)
  new Uint8Array(data.buffer).fill(5)
  const ready = Semaphore.init(control, READY, 0)
  const go = Semaphore.init(control, GO, 0)
  const end = new BigInt64Array(control.buffer, END, 1)
  const child = spawnNode(
    null,
    self,
    ['copyout-child', String(reps + 1)],
    shareWith([control, data], { stdio: 'inherit' }),
  )
  const done = exited(child, 'copyout')
  const rates = []
  for (let i = 0; i <= reps; i++) {
    ready.waitSync()
    const start = process.hrtime.bigint()
    go.post()
    ready.waitSync()
    if (i > 0) rates.push(size / Number(end[0] - start))
  }
  await done
  ready.close()
  go.close()
  control.close()
  data.close()
  return median(rates)
}

function ipcChild() {
  let got = 0
  let expect = -1
  process.on('message', (m) => {
    if (m === 'bye') return process.disconnect()
    if (typeof m === 'number') {
      got = 0
      expect = m
      return process.send('ready')
    }
    got += m.length
    if (got === expect) process.send('done')
  })
}

async function ipc(size, reps) {
  const child = fork(self, ['ipc-child'], { serialization: 'advanced' })
  const done = exited(child, 'ipc')
  const chunk = Buffer.alloc(MIB, 7)
  const rates = []
  for (let i = 0; i <= reps; i++) {
    child.send(size)
    await once(child, 'message') // 'ready'
    const start = process.hrtime.bigint()
    for (let sent = 0; sent < size; sent += MIB) child.send(chunk)
    const [m] = await once(child, 'message')
    if (m !== 'done') throw new Error(`unexpected ${m}`)
    if (i > 0) rates.push(size / Number(process.hrtime.bigint() - start))
  }
  child.send('bye')
  await done
  return median(rates)
}

function stdinChild(size) {
  let got = 0
  process.stdin.on('data', (d) => {
    got += d.length
    if (got % size === 0) process.stdout.write('d')
  })
}

async function stdin(size, reps) {
  const child = spawnNode(null, self, ['stdin-child', String(size)], { stdio: ['pipe', 'pipe', 'inherit'] })
  const done = exited(child, 'stdin')
  const chunk = Buffer.alloc(MIB, 7)
  const rates = []
  for (let i = 0; i <= reps; i++) {
    const answered = once(child.stdout, 'data')
    const start = process.hrtime.bigint()
    for (let sent = 0; sent < size; sent += MIB) {
      if (!child.stdin.write(chunk)) await once(child.stdin, 'drain')
    }
    await answered
    if (i > 0) rates.push(size / Number(process.hrtime.bigint() - start))
  }
  child.stdin.end()
  await done
  return median(rates)
}

const [kase, ...rest] = process.argv.slice(2)
if (kase === 'copyout-child') copyoutChild(Number(rest[0]))
else if (kase === 'ipc-child') ipcChild()
else if (kase === 'stdin-child') stdinChild(Number(rest[0]))
else {
  const size = Number(rest[0]) * MIB
  const reps = Number(rest[1])
  const run = { copyout, ipc, stdin }[kase]
  if (!run) throw new Error(`unknown case ${kase}`)
  const impl = kase === 'copyout' ? 'shmkit' : 'node'
  result(`bulk.${impl}.${kase}`, await run(size, reps), 'GB/s')
}
