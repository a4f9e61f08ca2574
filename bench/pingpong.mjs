// Ping-pong round trips between two Node processes (parent → child → parent), one case per run:
//
//   node bench/pingpong.mjs <case> <same|diff|none> <iters> <warm>
//
//   sem_sync        two in-region shmkit semaphores in a memfd region shared with shareWith;
//                   both sides post and waitSync()
//   sem_async       the same with `await sem.wait()` on both sides (the event loop stays free)
//   atomics_spin    both sides spin with Atomics.load/Atomics.store on one Int32 of a shmkit
//                   region (the hot path; only meaningful on different CPUs)
//   ipc             child_process IPC: process.send / 'message' (JSON serialization)
//   uds             a Unix domain socket (node:net), one byte each way
//   worker_atomics  two worker_threads in one process, Atomics.wait/notify on a
//                   SharedArrayBuffer (same CPU only: threads cannot be pinned apart)
//   word_sync       shmkit wait/notify on two words of the region, both sides blocking
//   word_async      the same with `await waitAsync()` on both sides
//   worker_word     two worker_threads, shmkit wait/notify on a named region each opens
//   *_threads       sem_async, word_async with SHMKIT_IO_URING=0: the waiter threads
//                   instead of io_uring
//
// `same` pins both processes to CPU 0, `diff` the parent to CPU 0 and the child to CPU 1
// (taskset), `none` leaves placement to the scheduler. Prints RESULT pp.<impl>.<case>.<placement>.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { unlinkSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'

import { PLACEMENTS, exited, pinSelf, result, shmkit, spawnNode, usPerOp } from './lib.mjs'

const { Semaphore, SharedMemory, inherited, notify, shareWith, wait, waitAsync } = shmkit
const self = fileURLToPath(import.meta.url)
// Layout of the shared control region.
const PING = 0
const PONG = 64
const TURN = 128

/** One side of the wait/notify ping-pong: word `mine` is raised to k + 1 by the peer. */
async function wordSide(words, mine, theirs, k, async) {
  Atomics.store(words, theirs, k + 1)
  notify(words, theirs, 1)
  if (async) while (Atomics.load(words, mine) !== k + 1) await waitAsync(words, mine, k)
  else while (Atomics.load(words, mine) !== k + 1) wait(words, mine, k)
}

async function child(kase, total) {
  if (kase.endsWith('_threads')) process.env.SHMKIT_IO_URING = '0'
  kase = kase.replace(/_threads$/, '')
  if (kase === 'ipc') {
    process.on('message', (m) => {
      if (m === -1) process.disconnect()
      else process.send(m)
    })
    return
  }
  if (kase === 'uds') {
    const socket = net.createConnection(process.argv[5])
    socket.on('data', (d) => socket.write(d))
    socket.on('end', () => socket.end())
    return
  }
  const [shm] = inherited()
  if (kase === 'atomics_spin') {
    const turn = new Int32Array(shm.buffer, TURN, 1)
    for (let k = 0; k < total; k++) {
      while (Atomics.load(turn, 0) !== 2 * k + 1);
      Atomics.store(turn, 0, 2 * k + 2)
    }
    shm.close()
    return
  }
  if (kase === 'word_sync' || kase === 'word_async') {
    const words = new Int32Array(shm.buffer, 0, 64)
    for (let k = 0; k < total; k++) {
      if (kase === 'word_sync') while (Atomics.load(words, PING / 4) !== k + 1) wait(words, PING / 4, k)
      else while (Atomics.load(words, PING / 4) !== k + 1) await waitAsync(words, PING / 4, k)
      Atomics.store(words, PONG / 4, k + 1)
      notify(words, PONG / 4, 1)
    }
    shm.close()
    return
  }
  const ping = Semaphore.at(shm, PING)
  const pong = Semaphore.at(shm, PONG)
  if (kase === 'sem_sync') {
    for (let k = 0; k < total; k++) {
      ping.waitSync()
      pong.post()
    }
  } else {
    for (let k = 0; k < total; k++) {
      await ping.wait()
      pong.post()
    }
  }
  ping.close()
  pong.close()
  shm.close()
}

/** Round trips through a memfd region shared with a spawned child. */
async function shared(kase, childCpu, iters, warm) {
  if (kase.endsWith('_threads')) process.env.SHMKIT_IO_URING = '0'
  const base = kase.replace(/_threads$/, '')
  const shm = SharedMemory.memfd(4096)
  const ping = Semaphore.init(shm, PING, 0)
  const pong = Semaphore.init(shm, PONG, 0)
  const turn = new Int32Array(shm.buffer, TURN, 1)
  const total = iters + warm
  const peer = spawnNode(childCpu, self, ['child', kase, String(total)], shareWith([shm], { stdio: 'inherit' }))
  const done = exited(peer, kase)
  let start = 0n
  if (base === 'word_sync' || base === 'word_async') {
    const words = new Int32Array(shm.buffer, 0, 64)
    for (let k = 0; k < total; k++) {
      if (k === warm) start = process.hrtime.bigint()
      await wordSide(words, PONG / 4, PING / 4, k, base === 'word_async')
    }
  } else if (base === 'sem_sync') {
    for (let k = 0; k < total; k++) {
      if (k === warm) start = process.hrtime.bigint()
      ping.post()
      pong.waitSync()
    }
  } else if (base === 'sem_async') {
    for (let k = 0; k < total; k++) {
      if (k === warm) start = process.hrtime.bigint()
      ping.post()
      await pong.wait()
    }
  } else {
    for (let k = 0; k < total; k++) {
      if (k === warm) start = process.hrtime.bigint()
      Atomics.store(turn, 0, 2 * k + 1)
      while (Atomics.load(turn, 0) !== 2 * k + 2);
    }
  }
  const end = process.hrtime.bigint()
  await done
  ping.close()
  pong.close()
  shm.close()
  return usPerOp(start, end, iters)
}

async function ipc(childCpu, iters, warm) {
  const peer =
    childCpu === null
      ? fork(self, ['child', 'ipc', '0'])
      : spawnNode(childCpu, self, ['child', 'ipc', '0'], { stdio: ['inherit', 'inherit', 'inherit', 'ipc'] })
  const done = exited(peer, 'ipc')
  const total = iters + warm
  let start = 0n
  const end = await new Promise((resolve, reject) => {
    let k = 0
    peer.on('message', (m) => {
      if (m !== k) return reject(new Error(`out of order: ${m} != ${k}`))
      k++
      if (k === warm) start = process.hrtime.bigint()
      if (k === total) return resolve(process.hrtime.bigint())
      peer.send(k)
    })
    peer.send(0)
  })
  peer.send(-1)
  await done
  return usPerOp(start, end, iters)
}

async function uds(childCpu, iters, warm) {
  const path = join(tmpdir(), `shmkit-bench-${process.pid}.sock`)
  const total = iters + warm
  const one = Buffer.from([1])
  const server = net.createServer()
  server.listen(path)
  await once(server, 'listening')
  const peer = spawnNode(childCpu, self, ['child', 'uds', '0', path], { stdio: 'inherit' })
  const done = exited(peer, 'uds')
  const [socket] = await once(server, 'connection')
  socket.setNoDelay?.(true)
  let start = 0n
  const end = await new Promise((resolve) => {
    let got = 0
    socket.on('data', (d) => {
      got += d.length // strictly one byte in flight
      if (got === warm) start = process.hrtime.bigint()
      if (got === total) return resolve(process.hrtime.bigint())
      socket.write(one)
    })
    socket.write(one)
  })
  socket.end()
  await done
  server.close()
  try {
    unlinkSync(path)
  } catch {
    // already gone
  }
  return usPerOp(start, end, iters)
}

async function workerAtomics(iters, warm, segment = null) {
  const sab = new SharedArrayBuffer(64)
  const script = new URL('./pingpong-worker.mjs', import.meta.url)
  const make = (side) => new Worker(script, { workerData: { sab, side, iters, warm, segment } })
  const b = make(1)
  const a = make(0)
  const [us] = await once(a, 'message')
  await Promise.all([once(a, 'exit'), once(b, 'exit')])
  return us
}

const [kase, placement, itersText, warmText] = process.argv.slice(2)
if (kase === 'child') {
  await child(placement, Number(itersText))
} else {
  const iters = Number(itersText)
  const warm = Number(warmText)
  const [parentCpu, childCpu] = PLACEMENTS[placement] ?? [null, null]
  if (parentCpu !== null) pinSelf(parentCpu)
  let us
  let impl = 'shmkit'
  if (kase === 'ipc') [impl, us] = ['node', await ipc(childCpu, iters, warm)]
  else if (kase === 'uds') [impl, us] = ['node', await uds(childCpu, iters, warm)]
  else if (kase === 'worker_atomics') [impl, us] = ['node', await workerAtomics(iters, warm)]
  else if (kase === 'worker_word') {
    const segment = `/ppw${process.pid}`
    const shm = SharedMemory.create(segment, 4096)
    try {
      us = await workerAtomics(iters, warm, segment)
    } finally {
      shm.close()
      SharedMemory.unlink(segment)
    }
  } else if (
    [
      'sem_sync',
      'sem_async',
      'atomics_spin',
      'word_sync',
      'word_async',
      'sem_async_threads',
      'word_async_threads',
    ].includes(kase)
  )
    us = await shared(kase, childCpu, iters, warm)
  else throw new Error(`unknown case ${kase}`)
  result(`pp.${impl}.${kase}.${placement}`, us, 'us')
}
