// Rust and Node share named memory and semaphores by name and agree on every byte: the Rust
// program crates/shmkit/examples/peer.rs and the Node program fixtures/ring-peer.mjs exchange
// 10,000 messages and 10,000 replies through the layout of docs/layout.md, each language
// creating in one direction and opening in the other. The Rust examples are built here with
// cargo (a no-op after `npm test`'s `cargo test --workspace --release`).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { Semaphore, SharedMemory, shareWith } from '../index.js'
import { fixture, here, onlyIf, platform, uniqueName, uniqueSemName } from './helpers.js'

const COUNT = 10_000
const SUFFIXES = ['fi', 'ff', 'bi', 'bf']
const LINE_TIMEOUT_MS = 90_000

const hasCargo = spawnSync('cargo', ['--version'], { stdio: 'ignore' }).status === 0
const withCargo = hasCargo ? test.serial : test.serial.skip
if (!hasCargo) console.log('interop-rust: no cargo on PATH to build the Rust peer; skipping')
// In-region semaphores are shmkit's own protocol on every platform.
const withRegionSemaphores = withCargo
// The fork counter example forks.
const withCargoOnLinux = onlyIf(test, platform.linux, 'Linux (the fork counter example forks)').serial

/** The Rust examples' executables, by name, from cargo's own report (wherever its target dir is). */
let examples: Promise<Map<string, string>> | undefined
function rustExamples(): Promise<Map<string, string>> {
  examples ??= new Promise((resolve, reject) => {
    const cargo = spawn(
      'cargo',
      ['build', '--release', '-p', 'shmkit', '--examples', '--message-format=json-render-diagnostics'],
      { cwd: join(here, '..'), stdio: ['ignore', 'pipe', 'inherit'] },
    )
    let out = ''
    cargo.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
    cargo.on('error', reject)
    cargo.on('close', (code) => {
      if (code !== 0) return reject(new Error(`cargo build of the Rust examples failed (exit ${code})`))
      const found = new Map<string, string>()
      for (const line of out.split('\n')) {
        if (!line.startsWith('{')) continue
        const message = JSON.parse(line)
        if (message.reason === 'compiler-artifact' && message.target.kind.includes('example') && message.executable) {
          found.set(message.target.name, message.executable)
        }
      }
      resolve(found)
    })
  })
  return examples
}

async function example(name: string): Promise<string> {
  const path = (await rustExamples()).get(name)
  if (!path) throw new Error(`cargo built no example named ${name}`)
  return path
}

/** A child process whose stdout is read line by line. */
function start(t: ExecutionContext, command: string, args: string[], env = process.env) {
  const child: ChildProcess = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })
  const lines: string[] = []
  const waiting: Array<() => void> = []
  let buffered = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk
    let i
    while ((i = buffered.indexOf('\n')) >= 0) {
      lines.push(buffered.slice(0, i))
      buffered = buffered.slice(i + 1)
      waiting.splice(0).forEach((wake) => wake())
    }
  })
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const exited = once(child, 'exit').then(([code, signal]) => {
    waiting.splice(0).forEach((wake) => wake())
    return { code: code as number | null, signal: signal as NodeJS.Signals | null }
  })
  let ended = false
  void exited.then(() => (ended = true))
  const label = `${command.split('/').at(-1)} ${args[0]}`
  return {
    child,
    exited,
    stderr: () => stderr,
    /** The next line of stdout; rejects if none comes within the timeout or the process ends first. */
    async line(): Promise<string> {
      const deadline = Date.now() + LINE_TIMEOUT_MS
      while (lines.length === 0) {
        if (ended) throw new Error(`${label} ended without another line; stderr: ${stderr}`)
        if (Date.now() >= deadline) throw new Error(`${label} printed no line in time; stderr: ${stderr}`)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, deadline - Date.now())
          waiting.push(() => {
            clearTimeout(timer)
            resolve()
          })
        })
      }
      return lines.shift()!
    },
    async exit() {
      const timer = setTimeout(() => child.kill('SIGKILL'), LINE_TIMEOUT_MS)
      const result = await exited
      clearTimeout(timer)
      return result
    },
  }
}

// The expected values, computed a third time here (the two peers each compute their own).
function mix(h: number): number {
  h = (h ^ (h >>> 16)) >>> 0
  h = Math.imul(h, 0x85ebca6b) >>> 0
  h = (h ^ (h >>> 13)) >>> 0
  h = Math.imul(h, 0xc2b2ae35) >>> 0
  return (h ^ (h >>> 16)) >>> 0
}
function fnv(values: Iterable<number>): number {
  let h = 0x811c9dc5
  for (const v of values) h = Math.imul((h ^ v) >>> 0, 0x01000193) >>> 0
  return h
}
const forward = Array.from({ length: COUNT }, (_, i) => mix(i))
const FORWARD_CHECKSUM = fnv(forward)
const BACK_CHECKSUM = fnv(forward.map((v) => mix((v ^ 0x5bd1e995) >>> 0)))

function exists(what: 'segment' | 'semaphore', name: string): boolean {
  try {
    if (what === 'segment') SharedMemory.open(name).close()
    else Semaphore.open(name).close()
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw error
  }
}

type Language = 'rust' | 'node'

async function exchange(t: ExecutionContext, creator: Language, responder: Language, kind: 'named' | 'region') {
  const segment = uniqueName(t)
  const semaphores = kind === 'named' ? SUFFIXES.map((suffix) => `${segment}-${suffix}`) : []
  t.teardown(() => {
    for (const name of semaphores) {
      try {
        Semaphore.unlink(name)
      } catch {
        // removed by its creator, as it should be
      }
    }
  })
  const program = async (language: Language, role: string) =>
    language === 'rust'
      ? start(t, await example('peer'), [role, segment, String(COUNT), kind])
      : start(t, process.execPath, [fixture('ring-peer.mjs'), role, segment, String(COUNT), kind])

  const started = Date.now()
  const made = await program(creator, 'create-send')
  t.is(await made.line(), 'ready', 'the creator made the segment and the semaphores')
  t.true(exists('segment', segment))
  for (const name of semaphores) t.true(exists('semaphore', name), name)

  const opened = await program(responder, 'open-respond')
  const respondedExit = await opened.exit()
  t.deepEqual(respondedExit, { code: 0, signal: null }, opened.stderr())
  const responded = JSON.parse(await opened.line())
  const sent = JSON.parse(await made.line())
  const elapsed = Date.now() - started

  t.deepEqual(sent, {
    role: 'create-send',
    sent: COUNT,
    received: COUNT,
    sentChecksum: FORWARD_CHECKSUM,
    receivedChecksum: BACK_CHECKSUM,
  })
  t.deepEqual(responded, {
    role: 'open-respond',
    sent: COUNT,
    received: COUNT,
    sentChecksum: BACK_CHECKSUM,
    receivedChecksum: FORWARD_CHECKSUM,
  })

  // The responder only opened: every name is still there after it exited.
  t.true(exists('segment', segment), 'the responder did not unlink the segment')
  for (const name of semaphores) t.true(exists('semaphore', name), `the responder did not unlink ${name}`)

  made.child.stdin!.end('unlink\n')
  t.is(await made.line(), 'unlinked')
  t.deepEqual(await made.exit(), { code: 0, signal: null }, made.stderr())
  t.false(exists('segment', segment), 'the creator unlinked its segment')
  for (const name of semaphores) t.false(exists('semaphore', name), `the creator unlinked ${name}`)
  t.log(`${COUNT} messages and ${COUNT} replies, ${creator} -> ${responder}, ${kind} semaphores: ${elapsed} ms`)
}

withCargo('Rust creates a named segment and named semaphores and sends; Node opens them by name and replies', (t) =>
  exchange(t, 'rust', 'node', 'named'),
)

withCargo('Node creates a named segment and named semaphores and sends; Rust opens them by name and replies', (t) =>
  exchange(t, 'node', 'rust', 'named'),
)

withRegionSemaphores('Rust initialises semaphores inside the segment; Node attaches at the same offsets', (t) =>
  exchange(t, 'rust', 'node', 'region'),
)

withRegionSemaphores('Node initialises semaphores inside the segment; Rust attaches at the same offsets', (t) =>
  exchange(t, 'node', 'rust', 'region'),
)

for (const creator of ['rust', 'node'] as const) {
  withCargo(`a ${creator} creator whose peer stops answering fails and still removes every name it made`, async (t) => {
    const segment = uniqueName(t)
    const semaphores = SUFFIXES.map((suffix) => `${segment}-${suffix}`)
    t.teardown(() => semaphores.forEach((name) => exists('semaphore', name) && Semaphore.unlink(name)))
    const args = ['create-send', segment, String(COUNT), 'named']
    // A short patience, so that the creator gives up soon after the responder is gone.
    const env = { ...process.env, PEER_PATIENCE_MS: '2000' }
    const made =
      creator === 'rust'
        ? start(t, await example('peer'), args, env)
        : start(t, process.execPath, [fixture('ring-peer.mjs'), ...args], env)
    t.is(await made.line(), 'ready')
    // This responder answers 10 messages and exits: reply 10 never comes.
    const opened = start(t, process.execPath, [fixture('ring-peer.mjs'), 'open-respond', segment, '10', 'named'])
    t.deepEqual(await opened.exit(), { code: 0, signal: null }, opened.stderr())
    t.is((await made.exit()).code, 1, made.stderr())
    t.regex(made.stderr(), /timed out waiting for the reply to message 10/)
    t.false(exists('segment', segment))
    for (const name of semaphores) t.false(exists('semaphore', name), name)
  })
}

;(hasCargo ? withCargoOnLinux : withCargo)(
  'the Rust examples run: fork counter, producer/consumer by name, seed',
  async (t) => {
    const run = (name: string, args: string[]) => {
      const ran = spawnSync(name, args, { encoding: 'utf8', timeout: LINE_TIMEOUT_MS })
      t.is(ran.status, 0, ran.stderr)
      return ran.stdout
    }
    t.regex(run(await example('fork_counter'), ['4', '5000']), /^ok: 4 children x 5000 increments = 20000 /)
    t.regex(run(await example('producer_consumer'), ['20000']), /^ok: 20000 items passed/)
    t.regex(run(await example('seed'), []), /named: child \d+ exited Some\(0\); parent reads "hello from child \d+"/)
  },
)

;(hasCargo ? withCargoOnLinux : withCargo)(
  'Node hands regions and a semaphore to a Rust child with shareWith; shmkit::inherited() reads them',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'shmkit-inherit-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const semName = uniqueSemName(t)
    using fd = SharedMemory.memfd(4096)
    using named = SharedMemory.create(uniqueName(t), 4096)
    using file = SharedMemory.file(join(dir, 'region'), 4096)
    using done = Semaphore.create(semName)
    const regions = [fd, named, file]
    regions.forEach((region, i) => (new Int32Array(region.buffer)[0] = 41 + i))
    const options = shareWith([fd, named, file, done], { stdio: ['ignore', 'pipe', 'pipe'] })
    const child = spawn(await example('inherited_peer'), [], { ...options, stdio: options.stdio as never })
    t.teardown(() => child.kill('SIGKILL'))
    let out = ''
    let err = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d))
    const [code] = await once(child, 'exit')
    t.is(code, 0, err)
    t.true(done.tryWait(), 'the Rust child posted the semaphore')
    t.deepEqual(JSON.parse(out), [
      { kind: 'memfd', read: 41 },
      { kind: 'named', read: 42 },
      { kind: 'file', read: 43 },
      { kind: 'semaphore', name: `/${semName}` },
    ])
    regions.forEach((region, i) =>
      t.is(new Int32Array(region.buffer)[1], 42 + i, `the child's write to ${region.kind}`),
    )
  },
)
