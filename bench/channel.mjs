// Messages from <producers> child processes to this one, one transport per run:
//
//   node bench/channel.mjs <case> <size> <count> <producers>
//
//   shmkit_sync  a shmkit Channel in a memfd region shared with shareWith: children sendSync,
//                the parent receiveSync (a copy into a new Uint8Array per message)
//   shmkit_view  the same, received with receiveViewSync (a view into the ring, no copy)
//   shmkit_into  the same, received with receiveIntoSync into one reused buffer (a copy, no
//                new buffer per message)
//   ipc_json     child_process IPC, process.send of a string of <size> characters (JSON)
//   ipc_adv      child_process IPC with serialization 'advanced', process.send(Buffer)
//   uds          a Unix domain socket per child, frames of a u32 length and the payload
//   worker       worker_threads posting Uint8Arrays over MessagePort (an in-process reference)
//   shmkit_async the shmkit Channel with `await send()` / `await receive()`
//
//   node bench/channel.mjs rt_async|rt_uds <iters>
//
//   round trips of a 64-byte message between this process and one child: through two
//   channels with `await receive()` on both sides (rt_async), or over a Unix socket (rt_uds);
//   prints RESULT chan.<impl>.<case> in µs per round trip.
//
//   node bench/channel.mjs cpu
//
//   CPU time (user + system) per message when one process sends and receives through one
//   channel, best of five runs: RESULT chan.shmkit.cpu.<copy|view|into>.<64|4k|1m> in ns.
//   Load on the machine disturbs it far less than the throughput rows.
//
// Senders start together, once every one has booted. Every sender paces itself the way the
// transport allows (a full channel blocks; IPC waits for its send callback every 64 messages;
// sockets honour 'drain'; workers wait for credit every 64 messages). Timed from the end of the
// warm-up (a tenth of the messages) to the last message received; prints
// RESULT chan.<impl>.<case>.<P>to1.<64|4k|1m> in messages per second, and for 1 MiB also
// ..._gbps (1e9 bytes per second).
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { unlinkSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

import { exited, result, shmkit, spawnNode } from './lib.mjs'

const { Channel, SharedMemory, inherited, shareWith } = shmkit
const self = fileURLToPath(import.meta.url)
const BATCH = 64

const label = (size) => (size >= 1 << 20 ? `${size >> 20}m` : size >= 1024 ? `${size >> 10}k` : String(size))

function capacity(size) {
  let c = 2
  while (c < 256 && c * 2 * (size + 64) <= 16 << 20) c *= 2
  return c
}

/**
 * Producers start sending together, at a time the parent picks (`--start-at=<ms since the
 * epoch>`), once every one of them has started: otherwise the first ones send while the
 * others are still booting Node on the same CPUs.
 */
const startAt = () => Number(process.argv.find((a) => a.startsWith('--start-at='))?.slice('--start-at='.length) ?? 0)
const startTogether = (at = startAt()) => new Promise((resolve) => setTimeout(resolve, Math.max(0, at - Date.now())))

async function child(kase, size, count) {
  if (kase === 'shmkit_sync' || kase === 'shmkit_view' || kase === 'shmkit_into' || kase === 'shmkit_async') {
    const [shm] = inherited()
    const channel = Channel.at(shm, 0)
    const payload = new Uint8Array(size).fill(7)
    await startTogether()
    if (kase === 'shmkit_async') for (let i = 0; i < count; i++) await channel.send(payload)
    else for (let i = 0; i < count; i++) channel.sendSync(payload)
    shm.close()
  } else if (kase === 'rt_async') {
    const [shm] = inherited()
    const ping = Channel.at(shm, 0)
    const pong = Channel.at(shm, Channel.size(2, 64))
    for (let message; (message = await ping.receive()) !== null;) await pong.send(message)
    shm.close()
  } else if (kase === 'rt_uds') {
    const socket = net.createConnection(process.argv[6])
    socket.on('data', (d) => socket.write(d))
    socket.on('end', () => socket.end())
  } else if (kase === 'ipc_json' || kase === 'ipc_adv') {
    const payload = kase === 'ipc_json' ? 'x'.repeat(size) : Buffer.alloc(size, 7)
    await startTogether()
    for (let i = 0; i < count; i++) {
      if ((i + 1) % BATCH === 0 || i === count - 1) await new Promise((resolve) => process.send(payload, resolve))
      else process.send(payload)
    }
    process.disconnect()
  } else if (kase === 'uds') {
    const socket = net.createConnection(process.argv[6])
    await once(socket, 'connect')
    const frame = Buffer.alloc(4 + size, 7)
    frame.writeUInt32LE(size, 0)
    await startTogether()
    for (let i = 0; i < count; i++) {
      if (!socket.write(frame)) await once(socket, 'drain')
    }
    socket.end()
  }
}

async function workerBody() {
  const { size, count, at } = workerData
  const payload = new Uint8Array(size).fill(7)
  let credit = BATCH
  let sent = 0
  const pump = () => {
    while (sent < count && credit > 0) {
      parentPort.postMessage(payload)
      sent++
      credit--
    }
    if (sent === count) parentPort.close()
  }
  parentPort.on('message', (more) => {
    credit += more
    pump()
  })
  await startTogether(at)
  pump()
}

/**
 * Counts messages (`tick` for each); resolves once all `total` arrived with the messages per
 * second after the warm-up, in which both ends warm up (JIT, caches, buffers): from the
 * tenth of the messages to the last.
 */
function clock(total) {
  const warm = Math.max(1, Math.floor(total / 10))
  let received = 0
  let start = 0n
  let resolve
  const done = new Promise((r) => (resolve = r))
  return {
    done,
    tick() {
      if (++received === warm) start = process.hrtime.bigint()
      if (received === total) resolve((total - warm) / (Number(process.hrtime.bigint() - start) / 1e9))
    },
  }
}

async function parent(kase, size, total, producers) {
  const count = Math.floor(total / producers)
  total = count * producers
  // Time enough for every producer to boot first (a Node process takes tens of ms of CPU).
  const at = Date.now() + 200 + 150 * producers
  const args = (extra = []) => ['child', kase, String(size), String(count), ...extra, `--start-at=${at}`]
  let rate
  if (kase === 'shmkit_async') {
    const cap = capacity(size)
    const shm = SharedMemory.memfd(Channel.size(cap, size))
    const channel = Channel.init(shm, 0, { capacity: cap, maxMessageSize: size })
    const children = Array.from({ length: producers }, () =>
      exited(spawnNode(null, self, args(), shareWith([shm], { stdio: 'inherit' })), kase),
    )
    const { done, tick } = clock(total)
    for (let i = 0; i < total; i++) {
      const message = await channel.receive()
      if (message.length !== size) throw new Error('short message')
      tick()
    }
    rate = await done
    await Promise.all(children)
    shm.close()
  } else if (kase === 'shmkit_sync' || kase === 'shmkit_view' || kase === 'shmkit_into') {
    const cap = capacity(size)
    const shm = SharedMemory.memfd(Channel.size(cap, size))
    const channel = Channel.init(shm, 0, { capacity: cap, maxMessageSize: size })
    const children = Array.from({ length: producers }, () =>
      exited(spawnNode(null, self, args(), shareWith([shm], { stdio: 'inherit' })), kase),
    )
    const view = kase === 'shmkit_view'
    const { done, tick } = clock(total)
    if (kase === 'shmkit_into') {
      const into = new Uint8Array(size)
      for (let i = 0; i < total; i++) {
        if (channel.receiveIntoSync(into) !== size) throw new Error('short message')
        tick()
      }
    }
    for (let i = 0; kase !== 'shmkit_into' && i < total; i++) {
      const message = view ? channel.receiveViewSync() : channel.receiveSync()
      if (message.length !== size) throw new Error('short message')
      tick()
    }
    channel.release()
    rate = await done
    await Promise.all(children)
    shm.close()
  } else if (kase === 'ipc_json' || kase === 'ipc_adv') {
    const { done, tick } = clock(total)
    const serialization = kase === 'ipc_adv' ? 'advanced' : 'json'
    const children = Array.from({ length: producers }, () => {
      const c = fork(self, args(), { serialization, stdio: 'inherit' })
      c.on('message', (m) => {
        if (m.length !== size) throw new Error('short message')
        tick()
      })
      return exited(c, kase)
    })
    rate = await done
    await Promise.all(children)
  } else if (kase === 'uds') {
    const path = join(tmpdir(), `shmkit-bench-chan-${process.pid}.sock`)
    const { done, tick } = clock(total)
    const server = net.createServer((socket) => {
      let pending = Buffer.alloc(0)
      socket.on('data', (chunk) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
        let at = 0
        while (pending.length - at >= 4) {
          const length = pending.readUInt32LE(at)
          if (pending.length - at < 4 + length) break
          const message = pending.subarray(at + 4, at + 4 + length)
          if (message.length !== size) throw new Error('short message')
          tick()
          at += 4 + length
        }
        pending = pending.subarray(at)
      })
    })
    server.listen(path)
    await once(server, 'listening')
    const children = Array.from({ length: producers }, () =>
      exited(spawnNode(null, self, args([path]), { stdio: 'inherit' }), kase),
    )
    rate = await done
    await Promise.all(children)
    server.close()
    try {
      unlinkSync(path)
    } catch {
      // already gone
    }
  } else if (kase === 'worker') {
    const { done, tick } = clock(total)
    const workers = Array.from({ length: producers }, () => {
      const worker = new Worker(self, { workerData: { size, count, at } })
      let got = 0
      worker.on('message', (m) => {
        if (m.length !== size) throw new Error('short message')
        tick()
        if (++got % BATCH === 0) worker.postMessage(BATCH)
      })
      return once(worker, 'exit')
    })
    rate = await done
    await Promise.all(workers)
  } else {
    throw new Error(`unknown case ${kase}`)
  }
  const impl = kase.startsWith('shmkit') ? 'shmkit' : 'node'
  const id = `chan.${impl}.${kase.replace(/^shmkit_/, '')}.${producers}to1.${label(size)}`
  result(id, rate, 'msg/s')
  if (size >= 1 << 20) result(`${id}_gbps`, (rate * size) / 1e9, 'GB/s')
}

/** Round trips of 64 bytes to a child and back; prints µs per round trip. */
async function roundTrips(kase, iters) {
  const warm = Math.floor(iters / 10)
  const message = new Uint8Array(64).fill(7)
  let start = 0n
  if (kase === 'rt_async') {
    const shm = SharedMemory.memfd(2 * Channel.size(2, 64))
    const ping = Channel.init(shm, 0, { capacity: 2, maxMessageSize: 64 })
    const pong = Channel.init(shm, Channel.size(2, 64), { capacity: 2, maxMessageSize: 64 })
    const child = exited(
      spawnNode(null, self, ['child', kase, '64', '0'], shareWith([shm], { stdio: 'inherit' })),
      kase,
    )
    for (let i = 0; i < warm + iters; i++) {
      if (i === warm) start = process.hrtime.bigint()
      await ping.send(message)
      if ((await pong.receive()) === null) throw new Error('no reply')
    }
    const end = process.hrtime.bigint()
    ping.close()
    await child
    shm.close()
    result(`chan.shmkit.${kase}`, Number(end - start) / 1000 / iters, 'us')
  } else {
    const path = join(tmpdir(), `shmkit-bench-rt-${process.pid}.sock`)
    const server = net.createServer()
    server.listen(path)
    await once(server, 'listening')
    const child = exited(spawnNode(null, self, ['child', kase, '64', '0', path], { stdio: 'inherit' }), kase)
    const [socket] = await once(server, 'connection')
    let pending = 0
    let resolve
    socket.on('data', (d) => {
      pending += d.length
      if (pending >= 64) {
        pending -= 64
        resolve()
      }
    })
    for (let i = 0; i < warm + iters; i++) {
      if (i === warm) start = process.hrtime.bigint()
      const replied = new Promise((r) => (resolve = r))
      socket.write(message)
      await replied
    }
    const end = process.hrtime.bigint()
    socket.end()
    await child
    server.close()
    try {
      unlinkSync(path)
    } catch {
      // already gone
    }
    result(`chan.node.${kase}`, Number(end - start) / 1000 / iters, 'us')
  }
}

/** CPU time per message sent and received in one process, for each way of receiving. */
function cpuCost() {
  const shm = SharedMemory.anonymous(Channel.size(256, 1 << 20))
  const channel = Channel.init(shm, 0, { capacity: 256, maxMessageSize: 1 << 20 })
  const into = new Uint8Array(1 << 20)
  const receivers = {
    copy: () => channel.tryReceive(),
    view: () => channel.tryReceiveView(),
    into: () => channel.tryReceiveInto(into),
  }
  for (const [size, count] of [
    [64, 200_000],
    [4096, 100_000],
    [1 << 20, 500],
  ]) {
    const payload = new Uint8Array(size).fill(7)
    for (const [kind, receive] of Object.entries(receivers)) {
      let best = Infinity
      for (let round = 0; round < 5; round++) {
        const before = process.cpuUsage()
        for (let i = 0; i < count; i++) {
          channel.trySend(payload)
          if (receive() === null) throw new Error('no message')
        }
        const used = process.cpuUsage(before)
        best = Math.min(best, ((used.user + used.system) * 1000) / count)
      }
      channel.release()
      result(`chan.shmkit.cpu.${kind}.${label(size)}`, best, 'ns')
    }
  }
  shm.close()
}

if (!isMainThread) await workerBody()
else if (process.argv[2] === 'cpu') cpuCost()
else if (process.argv[2] === 'rt_async' || process.argv[2] === 'rt_uds') {
  await roundTrips(process.argv[2], Number(process.argv[3]))
} else if (process.argv[2] === 'child') {
  await child(process.argv[3], Number(process.argv[4]), Number(process.argv[5]))
} else {
  const [kase, size, count, producers] = process.argv.slice(2)
  await parent(kase, Number(size), Number(count), Number(producers))
}
