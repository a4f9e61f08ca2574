// Channel from JavaScript: bytes and objects in and out, zero-copy views that hold their slot
// until released, backpressure, end of stream, typed errors for bad arguments and for any bytes
// written over the channel, and 100,000 messages between Node and Rust processes each way.
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'

import test from 'ava'

import { Channel, SharedMemory } from '../index.js'
import { fixture, here, runNode, uniqueName } from './helpers.js'

function channel(capacity = 8, maxMessageSize = 1024, objectMode = false) {
  const shm = SharedMemory.anonymous(Channel.size(capacity, maxMessageSize))
  return { shm, channel: Channel.init(shm, 0, { capacity, maxMessageSize, objectMode }) }
}

const bytes = (...values: number[]) => new Uint8Array(values)

test('bytes in every form come out as Uint8Array', (t) => {
  const { channel: ch } = channel()
  t.true(ch.trySend('hé'))
  t.true(ch.trySend(new Uint16Array([1, 0x203])))
  t.true(ch.trySend(new DataView(new Uint8Array([9, 8, 7]).buffer, 1)))
  t.true(ch.trySend(new Uint8Array([5, 6]).buffer))
  t.true(ch.trySend(Buffer.from('ok')))
  t.true(ch.trySend(new Uint8Array(0)))
  const got = Array.from({ length: 6 }, () => ch.tryReceive())
  t.deepEqual(got, [bytes(0x68, 0xc3, 0xa9), bytes(1, 0, 3, 2), bytes(8, 7), bytes(5, 6), bytes(0x6f, 0x6b), bytes()])
  t.true(got.every((m) => Object.getPrototypeOf(m) === Uint8Array.prototype))
  t.is(ch.tryReceive(), null)
  t.false(ch.ended)
})

test('a view reads the ring in place and holds its slot until released', (t) => {
  const { channel: ch } = channel(2, 64)
  ch.sendSync('abc')
  ch.sendSync('def')
  const first = ch.tryReceiveView()!
  t.deepEqual(first, bytes(0x61, 0x62, 0x63))
  t.false(ch.trySend('full'), 'the held view keeps its slot')
  const second = ch.receiveViewSync({ timeout: 1000 })!
  t.deepEqual(second, bytes(0x64, 0x65, 0x66))
  t.true(ch.trySend('x'), 'the next receive released the first view')
  t.false(ch.trySend('y'), 'the second view still holds its slot')
  ch.release()
  ch.release() // nothing held: no-op
  t.true(ch.trySend('y'))
  t.deepEqual(ch.tryReceive(), bytes(0x78))
  t.deepEqual(ch.tryReceive(), bytes(0x79))
  t.true(ch.trySend('y'), 'both slots free again')
})

test('with its memory handle closed a channel goes on natively, and its views go dark', (t) => {
  const { shm, channel: ch } = channel(2, 64)
  const other = Channel.at(shm)
  t.true(ch.trySend('a')) // through the region's buffer
  shm.close() // the buffer reads zeros now; the channel keeps the region mapped
  t.true(ch.trySend('b'))
  t.deepEqual(other.tryReceive(), bytes(0x61))
  const view = other.receiveViewSync({ timeout: 1000 })!
  t.deepEqual(view, bytes(0x62))
  other.release()
  // Released views are not detached (native work may still hold them): they keep their
  // length and read zeros, and writes through them land in private blank pages.
  t.deepEqual(view, bytes(0), 'a released native view reads zeros')
  view[0] = 0x7a // never reaches the ring
  t.true(ch.trySend('c'))
  t.deepEqual(other.tryReceive(), bytes(0x63), 'the stale write reached no slot')
  ch.close()
  t.is(other.receiveSync(), null)
  t.true(other.ended)
})

test('a view held while its memory handle closes still gives its slot back', (t) => {
  const { shm, channel: ch } = channel(2, 64)
  const other = Channel.at(shm)
  t.true(ch.trySend('a'))
  t.true(ch.trySend('b'))
  const view = other.tryReceiveView()!
  t.deepEqual(view, bytes(0x61))
  shm.close()
  t.deepEqual(view, bytes(0), "the closed handle's buffer reads zeros")
  other.release()
  t.deepEqual(other.tryReceive(), bytes(0x62))
  t.true(ch.trySend('c'))
  t.true(ch.trySend('d'), "both slots free: the view's slot came back")
  t.false(ch.trySend('e'))
})

test('receiveInto copies each message into one buffer and returns its length', (t) => {
  const { channel: ch } = channel(4, 8)
  const into = new Uint8Array(new ArrayBuffer(16), 4, 8)
  t.true(ch.trySend('abc'))
  t.true(ch.trySend(new Uint8Array(0)))
  t.true(ch.trySend('12345678'))
  t.is(ch.tryReceiveInto(into), 3)
  t.deepEqual(into.subarray(0, 3), bytes(0x61, 0x62, 0x63))
  t.is(ch.receiveIntoSync(new DataView(into.buffer), { timeout: 1000 }), 0)
  t.is(ch.tryReceiveInto(into.buffer), 8)
  t.deepEqual(new Uint8Array(into.buffer, 0, 8), new TextEncoder().encode('12345678'))
  t.is(ch.tryReceiveInto(into), null, 'nothing left')
  t.is(ch.receiveIntoSync(into, { timeout: 5 }), null, 'timed out')
  ch.close()
  t.is(ch.receiveIntoSync(into), null)
  t.true(ch.ended)
})

test('object mode round-trips structured-clone values like process.send', (t) => {
  const { shm } = channel(8, 4096, true)
  const a = Channel.at(shm, 0, { objectMode: true })
  const b = Channel.at(shm, 0, { objectMode: true })
  const value = { n: 1, s: 'x', list: [1, 2n, null], when: new Date(0), map: new Map([[1, { deep: true }]]) }
  t.true(a.sendSync(value))
  t.true(a.trySend(null))
  t.deepEqual(b.receiveSync({ timeout: 1000 }), value)
  t.is(b.tryReceive(), null)
  t.is(b.tryReceive(), null)
  t.throws(() => a.trySend(undefined), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => a.trySend({ big: 'x'.repeat(5000) }), { code: 'ERR_OUT_OF_RANGE' })
})

test('a full channel refuses trySend and times out sendSync', (t) => {
  const { channel: ch } = channel(2, 8)
  t.true(ch.trySend('1'))
  t.true(ch.trySend('2'))
  t.false(ch.trySend('3'))
  t.false(ch.sendSync('3', { timeout: 20 }))
  t.is(ch.receiveSync({ timeout: 0 })?.[0], 0x31)
  t.true(ch.sendSync('3', { timeout: 0 }))
  t.is(ch.receiveSync({ timeout: 5 })?.[0], 0x32)
  t.is(ch.receiveSync({ timeout: 5 })?.[0], 0x33)
  t.is(ch.receiveSync({ timeout: 5 }), null, 'timed out')
  t.false(ch.ended)
})

test('close ends the stream after the backlog, for every handle', (t) => {
  const { shm, channel: ch } = channel()
  const other = Channel.at(shm)
  ch.sendSync('a')
  ch.sendSync('b')
  other.close()
  t.true(ch.closed)
  t.throws(() => ch.trySend('c'), { code: 'ERR_SHM_CLOSED' })
  t.throws(() => ch.sendSync('c'), { code: 'ERR_SHM_CLOSED' })
  t.deepEqual(ch.receiveSync(), bytes(0x61))
  t.deepEqual(other.receiveSync(), bytes(0x62))
  t.is(ch.receiveSync(), null, 'no wait: the stream has ended')
  t.true(ch.ended)
  t.false(other.ended)
  t.is(other.tryReceive(), null)
  t.true(other.ended)
  ch.close() // idempotent
})

test('bad arguments are TypeError/RangeError with Node codes', (t) => {
  const { shm, channel: ch } = channel()
  t.throws(() => Channel.size(3, 8), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => Channel.size(4, 0), { code: 'ERR_OUT_OF_RANGE' })
  t.is(Channel.size(4, 1), 512 + 4 * 64)
  t.throws(() => Channel.init(shm, 0, { capacity: 4 } as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => Channel.init(shm, 32, { capacity: 4, maxMessageSize: 8 }), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => Channel.init({} as never, 0, { capacity: 4, maxMessageSize: 8 }), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => Channel.at(SharedMemory.anonymous(4096)), { code: 'ERR_OUT_OF_RANGE', message: /no channel/ })
  t.throws(() => ch.trySend(42 as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => ch.trySend(new Uint8Array(1025)), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => ch.sendSync('x', { timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => ch.receiveSync({ timeout: Number.NaN }), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => ch.tryReceiveInto(new Uint8Array(1023)), { code: 'ERR_OUT_OF_RANGE', message: /maxMessageSize/ })
  t.throws(() => ch.tryReceiveInto('x' as never), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => ch.receiveIntoSync(new Uint8Array(1024), { timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  t.is(ch.capacity, 8)
  t.is(ch.maxMessageSize, 1024)
})

test('random bytes over the control words give typed errors, never a crash or a hang', (t) => {
  const { shm } = channel(4, 64)
  const words = new Uint32Array(shm.buffer)
  const controlWords = [
    ...Array(128).keys(),
    ...[0, 1, 2, 3].flatMap((i) => [128 + i * 32, 129 + i * 32, 130 + i * 32]),
  ]
  let seed = 12345
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0)
  let typed = 0
  let fine = 0
  for (let round = 0; round < 2000; round++) {
    const ch = Channel.init(shm, 0, { capacity: 4, maxMessageSize: 64 })
    for (let i = random() % 6; i > 0; i--) ch.trySend('m')
    for (let i = random() % 3; i > 0; i--) ch.tryReceive()
    for (let i = 1 + (random() % 4); i > 0; i--) {
      const choice = random() % 3
      const value = choice === 0 ? random() % 16 : choice === 1 ? (1 << 30) | (random() % 4096) : random()
      words[controlWords[random() % controlWords.length]] = value
    }
    const calls = [
      () => ch.trySend('x'),
      () => ch.sendSync('y', { timeout: 2 }),
      () => ch.tryReceive(),
      () => ch.receiveSync({ timeout: 2 }),
      () => ch.tryReceiveView(),
      () => ch.tryReceiveInto(new Uint8Array(64)),
      () => Channel.at(shm).tryReceive(),
    ]
    for (const call of calls) {
      try {
        call()
        fine++
      } catch (error) {
        const e = error as NodeJS.ErrnoException
        // A corrupted channel, or a closed flag that a random write set.
        const isTyped = (e instanceof RangeError && e.code === 'ERR_OUT_OF_RANGE') || e.code === 'ERR_SHM_CLOSED'
        if (!isTyped) throw error
        typed++
      }
    }
  }
  t.true(typed > 0 && fine > 0, `${typed} typed errors, ${fine} calls that went on`)
})

/** The Rust example `channel_peer`, built by cargo (a no-op after `npm test`'s release build). */
function rustPeer(): string | undefined {
  const built = spawnSync(
    'cargo',
    ['build', '--release', '-p', 'shmkit', '--example', 'channel_peer', '--message-format=json-render-diagnostics'],
    { cwd: join(here, '..'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  )
  if (built.status !== 0) return undefined
  for (const line of built.stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const message = JSON.parse(line)
    if (message.reason === 'compiler-artifact' && message.target.name === 'channel_peer') return message.executable
  }
  return undefined
}

const hasCargo = spawnSync('cargo', ['--version'], { stdio: 'ignore' }).status === 0
if (!hasCargo) console.log('channel: no cargo on PATH to build the Rust peer; skipping the Node/Rust exchanges')
const withCargo = hasCargo ? test.serial : test.serial.skip

function run(command: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

const COUNT = 100_000
const node = (mode: string, segment: string) =>
  runNode(fixture('channel-peer.mjs'), mode.startsWith('send') ? [mode, segment, String(COUNT)] : [mode, segment], {
    timeoutMs: 120_000,
  })

// `node`: the JavaScript path over the memory's buffer; `node-native`: the same calls with
// the memory handle closed, so through the native methods; `node-into`: receiveInto forms;
// `node-view`: zero-copy views, held until the next receive.
for (const [sender, receiver] of [
  ['node', 'rust'],
  ['rust', 'node'],
  ['node', 'node'],
  ['node', 'node-into'],
  ['node', 'node-view'],
  ['node', 'node-native'],
  ['node-native', 'node'],
] as const) {
  const runner = sender === 'rust' || receiver === 'rust' ? withCargo : test.serial
  runner(`${COUNT} messages from ${sender} to ${receiver}, complete and in order`, async (t) => {
    const name = uniqueName(t, 'c')
    const shm = SharedMemory.create(name, Channel.size(64, 256))
    Channel.init(shm, 0, { capacity: 64, maxMessageSize: 256 })
    const peer = sender === 'rust' || receiver === 'rust' ? rustPeer() : undefined
    if ((sender === 'rust' || receiver === 'rust') && !peer) return t.fail('cargo could not build channel_peer')
    const start = (role: 'send' | 'recv', who: string) =>
      who === 'rust'
        ? run(peer!, role === 'send' ? [role, name, String(COUNT)] : [role, name])
        : node(role + who.slice('node'.length), name)
    const [sent, received] = await Promise.all([start('send', sender), start('recv', receiver)])
    // Both ends' output on any failure: a receiver that stops shows up as a sender timing out.
    const output = `sender: ${sent.stderr}\nreceiver: ${received.stderr}`
    t.is(sent.code, 0, output)
    t.is(received.code, 0, output)
    t.is(sent.stdout.trim(), `sent ${COUNT}`)
    t.is(received.stdout.trim(), `received ${COUNT}`)
    shm.close()
  })
}

// fork runs on Linux only (elsewhere it throws ERR_SHM_UNSUPPORTED).
const onLinux = process.platform === 'linux' ? test : test.skip
if (process.platform !== 'linux') console.log('skipped: the forked-child channel test needs Linux (fork)')

onLinux(
  'a forked child claims under its own pid, so its held slot is recovered, and cannot free a view the parent holds',
  async (t) => {
    const ran = await runNode(fixture('channel-fork.mjs'), [], { execArgv: ['--single-threaded'] })
    t.is(ran.code, 0, ran.stderr)
    t.is(
      ran.stdout.trim(),
      'child exit 0, sent true true, received a b\nchild exit 0, view reads p, sent true false, then true',
    )
  },
)

test('a collected handle releases its view and its slot', async (t) => {
  const ran = await runNode(fixture('channel-gc.mjs'), [], { execArgv: ['--expose-gc'] })
  t.is(ran.code, 0, ran.stderr)
  t.regex(ran.stdout, /held: length 1, reads 97, send while held: false/)
  t.regex(ran.stdout, /collected: send after: true/)
})

test.serial('Node producers SIGKILLed mid-send never tear a message or stall the others', async (t) => {
  const name = uniqueName(t, 'k')
  const shm = SharedMemory.create(name, Channel.size(8, 65536))
  const channel = Channel.init(shm, 0, { capacity: 8, maxMessageSize: 65536 })
  const script = fixture('channel-kill.mjs')
  const consumer = runNode(script, ['consume', name], { timeoutMs: 120_000 })
  const healthy = runNode(script, ['produce', name, '0', '3000'], { timeoutMs: 120_000 })
  const VICTIMS = 20
  for (let i = 1; i <= VICTIMS; i++) {
    const victim = spawn(process.execPath, [script, 'produce', name, String(i), '0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    await once(victim.stdout, 'data') // it is sending now
    await new Promise((resolve) => setTimeout(resolve, 5 + ((i * 37) % 50)))
    victim.kill('SIGKILL')
    const [, signal] = await once(victim, 'exit')
    t.is(signal, 'SIGKILL')
  }
  const produced = await healthy
  t.is(produced.code, 0, produced.stderr)
  channel.close()
  const consumed = await consumer
  t.is(consumed.code, 0, consumed.stderr)
  const [, got, torn, others] = /healthy (\d+) torn (\d+) others (\d+)/.exec(consumed.stdout) ?? []
  t.is(Number(got), 3000, 'every message of the healthy producer, in order')
  t.is(Number(torn), 0, 'no torn message')
  t.log(`${VICTIMS} producers killed; ${others} of their messages arrived whole`)
  shm.close()
})

test('async send and receive: wait for room or a message, time out, abort, end', async (t) => {
  const { shm, channel: ch } = channel(2, 64)
  const other = Channel.at(shm)
  const pending = other.receive()
  t.true(await ch.send('a'))
  t.deepEqual(await pending, bytes(0x61))
  t.is(await other.receive({ timeout: 10 }), null, 'timed out')
  t.false(other.ended)
  t.true(await ch.send('1'))
  t.true(await ch.send('2'))
  const blocked = ch.send('3')
  t.false(await ch.send('x', { timeout: 10 }), 'full until the timeout')
  t.deepEqual(other.tryReceive(), bytes(0x31))
  t.true(await blocked, 'room made, sent')
  const controller = new AbortController()
  const aborted = ch.send('y', { signal: controller.signal })
  controller.abort(new Error('enough'))
  await t.throwsAsync(aborted, { code: 'ABORT_ERR', name: 'AbortError' })
  await t.throwsAsync(ch.send('z', { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' })
  const objects = Channel.at(shm, 0, { objectMode: true })
  t.deepEqual(await other.receive(), bytes(0x32))
  t.deepEqual(await other.receive(), bytes(0x33))
  t.true(await objects.send({ deep: [1n] }))
  t.deepEqual(await objects.receive(), { deep: [1n] })
  const waiting = other.receive()
  ch.close()
  t.is(await waiting, null, 'the close ends a pending receive')
  t.true(other.ended)
  await t.throwsAsync(ch.send('late'), { code: 'ERR_SHM_CLOSED' })
})

test.serial('for await ends in every consumer after the backlog', async (t) => {
  const name = uniqueName(t, 'c')
  const shm = SharedMemory.create(name, Channel.size(64, 256))
  Channel.init(shm, 0, { capacity: 64, maxMessageSize: 256 })
  const sender = node('send', name)
  const counts = await Promise.all(
    [0, 1, 2].map(async () => {
      let n = 0
      for await (const message of Channel.at(shm)) n += message.length > 0 ? 1 : 0
      return n
    }),
  )
  const sent = await sender
  t.is(sent.code, 0, sent.stderr)
  t.is(
    counts.reduce((a, b) => a + b),
    COUNT,
    `every message once: ${counts.join(' + ')}`,
  )
  shm.close()
})
