// RobustMutex across real processes of three languages: Node.js (the binding), Rust (the
// core, crates/shmkit/examples/mutex_peer.rs) and C (__test__/interop/mutex_counter.c, written
// from docs/layout.md alone; Node both with lockSync() and await lock()) take turns on one
// mutex with an exact count, and processes (spawned
// Node, a child forked from Node, Rust) keep locking while another scribbles random bytes over
// the mutex.
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { randomFillSync, randomInt } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test, { type ExecutionContext } from 'ava'

import { RobustMutex, SharedMemory } from '../index.js'
import { fixture, here, runNode, uniqueName, type Ran, platform } from './helpers.js'

const ROUNDS = 20_000
const COUNTER = 512

const hasCargo = spawnSync('cargo', ['--version'], { stdio: 'ignore' }).status === 0
// The C peer speaks the lock protocol through Linux futex calls.
const hasCc = platform.linux && spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0
if (!hasCargo) console.log('mutex-processes: no cargo on PATH to build the Rust peer; using Node in its place')
if (!hasCc) {
  console.log(
    `mutex-processes: ${platform.linux ? 'no C compiler (cc) on PATH' : 'the C peer needs Linux futexes'}; using Node in place of the C peer`,
  )
}

let rustPeer: Promise<string> | undefined
/** The `mutex_peer` example's executable, from cargo's own report. */
function rustPeerPath(): Promise<string> {
  rustPeer ??= new Promise((resolve, reject) => {
    const cargo = spawn(
      'cargo',
      ['build', '--release', '-p', 'shmkit', '--example', 'mutex_peer', '--message-format=json-render-diagnostics'],
      { cwd: join(here, '..'), stdio: ['ignore', 'pipe', 'inherit'] },
    )
    let out = ''
    cargo.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
    cargo.on('error', reject)
    cargo.on('close', (code) => {
      const built = out
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line))
        .find((m) => m.reason === 'compiler-artifact' && m.target.name === 'mutex_peer' && m.executable)
      if (code !== 0 || !built) return reject(new Error(`cargo build of mutex_peer failed (exit ${code})`))
      resolve(built.executable)
    })
  })
  return rustPeer
}

function compileC(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'shmkit-mutex-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const binary = join(dir, 'mutex_counter')
  execFileSync('cc', ['-O2', '-Wall', '-o', binary, join(here, 'interop', 'mutex_counter.c')], { stdio: 'inherit' })
  return binary
}

/** Runs `command args` to completion, killing it after `timeoutMs`. */
function run(command: string, args: string[], timeoutMs = 110_000): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/**
 * Four counting processes: Node, Node, Rust and C (Node stands in for a missing toolchain),
 * started together: each adds 1 to the word at COUNTER + 64 and waits for COUNTER + 128.
 */
async function countAll(t: ExecutionContext, shm: SharedMemory, name: string, locking: 'lock' | 'nolock') {
  const words = new Uint32Array(shm.buffer, COUNTER, 64)
  words.fill(0)
  const args = [name, '0', String(COUNTER), String(ROUNDS), locking]
  const node = (style: 'lock' | 'nolock' | 'async' = locking) =>
    runNode(fixture('mutex-peer.mjs'), ['count', ...args.slice(0, 4), style], { timeoutMs: 110_000 })
  const rust = hasCargo ? run(await rustPeerPath(), ['count', ...args]) : node()
  const c = hasCc ? run(compileC(t), [`/${name}`, ...args.slice(1)]) : node()
  // One Node process waits with lockSync(), the other with await lock().
  const all = Promise.all([node(), node(locking === 'lock' ? 'async' : locking), rust, c])
  const deadline = Date.now() + 60_000
  while (Atomics.load(words, 16) < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2))
  Atomics.store(words, 32, 1) // go
  return all
}

test.serial(`Node, Rust and C processes each add 1 ${ROUNDS} times under one mutex: the count is exact`, async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  using mutex = RobustMutex.init(shm, 0)
  const counter = new Uint32Array(shm.buffer, COUNTER, 1)

  const runs = await countAll(t, shm, name, 'lock')
  for (const ran of runs) t.deepEqual([ran.code, ran.signal, ran.stdout], [0, null, 'done\n'], ran.stderr)
  t.log(`with the lock: ${counter[0]} of ${4 * ROUNDS}`)
  t.is(counter[0], 4 * ROUNDS)
  t.deepEqual(mutex.tryLock(), { ownerDied: false }, 'left unlocked')
  mutex.unlock()

  // The control: the same processes without the lock lose updates, so the test above can fail.
  const control = await countAll(t, shm, name, 'nolock')
  for (const ran of control) t.is(ran.code, 0, ran.stderr)
  t.log(`without the lock: ${counter[0]} of ${4 * ROUNDS}`)
  t.true(counter[0] < 4 * ROUNDS, 'without the lock, updates are lost')
})

const SCRIBBLE_ROUNDS = 2_500
const STOP = 2048
// The Rust peer's timed lock is an Err(TimedOut); Node's answers null (never an error).
const TYPED = new Set(['ETIMEDOUT', 'ENOTRECOVERABLE', 'EDEADLK', 'EPERM', 'EINVAL'])

test.serial(
  `processes keep locking while another scribbles over the mutex ${SCRIBBLE_ROUNDS} times: no crash, no hang, every error typed`,
  async (t) => {
    const name = uniqueName(t)
    using shm = SharedMemory.create(name, 4096)
    RobustMutex.init(shm, 0).close()
    const bytes = new Uint8Array(shm.buffer, 0, 32)
    const words = new Uint32Array(shm.buffer, 0, 8)
    const stop = new Uint32Array(shm.buffer, STOP, 1)

    const peers = [
      runNode(fixture('mutex-peer.mjs'), ['churn', name, '0', String(STOP)], { timeoutMs: 110_000 }),
      runNode(fixture('mutex-peer.mjs'), ['churn', name, '0', String(STOP)], { timeoutMs: 110_000 }),
      hasCargo
        ? run(await rustPeerPath(), ['churn', name, '0', String(STOP)])
        : runNode(fixture('mutex-peer.mjs'), ['churn', name, '0', String(STOP)], { timeoutMs: 110_000 }),
      // A child made by shmkit's fork() (Linux: a Node started --single-threaded).
      runNode(fixture('mutex-peer.mjs'), [platform.linux ? 'fork-churn' : 'churn', name, '0', String(STOP)], {
        timeoutMs: 110_000,
        execArgv: ['--single-threaded'],
      }),
    ]
    for (let round = 0; round < SCRIBBLE_ROUNDS; round++) {
      await new Promise((resolve) => setTimeout(resolve, randomInt(3)))
      switch (randomInt(5)) {
        case 0:
          randomFillSync(bytes) // all of it
          break
        case 1:
          words[0] = randomInt(2 ** 32 - 1) // the lock word only
          break
        case 2:
          randomFillSync(bytes, 8, 16) // the owner record only
          break
        case 3:
          words[0] = (words[0] & 0x1fffffff) | (randomInt(8) << 29) // flip the flags
          break
        default:
          bytes.fill(0) // a fresh, unlocked mutex, so that work goes on
      }
    }
    stop[0] = 1
    const ended = await Promise.all(peers)
    let worst = 0
    let timed = 0
    let over50 = 0
    for (const [at, ran] of ended.entries()) {
      t.is(ran.signal, null, `no crash or abort: ${ran.stderr}`)
      t.is(ran.code, 0, ran.stderr)
      const report = JSON.parse(ran.stdout) as {
        ops: number
        locked: number
        ownerDied: number
        timedOut: number
        over50ms: number
        maxOvershootMs: number
        codes: Record<string, number>
      }
      t.log(JSON.stringify(report))
      t.true(report.ops > 0 && report.locked > 0, 'it made progress')
      for (const code of Object.keys(report.codes)) t.true(TYPED.has(code), `typed error: ${code}`)
      const node = !(hasCargo && at === 2)
      if (node) t.false('ETIMEDOUT' in report.codes, 'a Node timed lock answers null, it never throws ETIMEDOUT')
      worst = Math.max(worst, report.maxOvershootMs)
      timed += report.timedOut
      over50 += report.over50ms
    }
    t.log(
      `${SCRIBBLE_ROUNDS} scribbles; ${timed} timed locks timed out, ${over50} of them more than 50 ms late, ` +
        `the latest by ${worst.toFixed(1)} ms`,
    )
    // The timed locks are bounded: a generous margin for a loaded machine, the figure is logged.
    t.true(worst < 1000)
  },
)
