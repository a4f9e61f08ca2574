// Must-show 1 of the synchronisation issue: while processes (spawned Node, a child of
// shmkit's fork, a Rust program) wait, post and notify on wait/notify words, in-region
// semaphores and a named semaphore, another process writes random bytes over all of them at
// random moments. No process may abort or crash, every error must be typed, and no wait may
// last much past its timeout. (crates/shmkit/tests/scribble.rs does the same with forked
// Rust processes only.)
import { spawn } from 'node:child_process'
import { once } from 'node:events'

import anyTest from 'ava'

import { Semaphore, SharedMemory, waitMechanism } from '../index.js'
import { cargoExample, fixture, runNode, uniqueName, uniqueSemName, linuxOnly, semaphoreFile } from './helpers.js'

const test = linuxOnly(anyTest, "fork() from Node and a named semaphore's file")

const ROUNDS = 1000 // per actor; three Node actors and a Rust one

interface Summary {
  rounds: number
  untyped: string[]
  codes: Record<string, number>
  timed: number
  maxOverrun: number
  over50: number
}

test('random bytes over words and semaphores: no abort, no crash, typed errors, waits end near their timeout', async (t) => {
  const name = uniqueName(t)
  const semName = uniqueSemName(t)
  using shm = SharedMemory.create(name, 4096)
  for (const offset of [256, 288, 320, 352]) Semaphore.init(shm, offset, 1).close()
  Semaphore.create(semName, { initial: 1 }).close()
  const scribbler = spawn(process.execPath, [fixture('scribbler.mjs'), name, semaphoreFile(semName)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  t.teardown(() => scribbler.kill('SIGKILL'))
  let writes = ''
  scribbler.stdout.setEncoding('utf8').on('data', (d: string) => (writes += d))
  const actor = (extra: string[], execArgv: string[] = []) =>
    runNode(fixture('scribble-actor.mjs'), [name, semName, String(ROUNDS), ...extra], {
      timeoutMs: 300_000,
      execArgv,
    })
  const rust = cargoExample('scribble_actor')
  if (!rust) t.log('no cargo: the Rust actor is left out')
  const rustRun = async () => {
    if (!rust) return null
    const child = spawn(rust, [`/${name}`, `/${semName}`, String(ROUNDS)], { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => child.kill('SIGKILL'))
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const [code, signal] = await once(child, 'exit')
    return { code, signal, stdout, stderr }
  }
  const all = await Promise.all([actor([]), actor([]), actor(['fork'], ['--single-threaded']), rustRun()])
  const runs = all.filter((run) => run !== null)
  scribbler.stdin.end()
  const [code] = await once(scribbler, 'exit')
  t.is(code, 0)
  let rounds = 0
  let maxOverrun = 0
  let over50 = 0
  let timed = 0
  const codes: Record<string, number> = {}
  for (const run of runs) {
    t.is(run.signal, null, `no crash: ${run.stderr}`)
    t.is(run.code, 0, `no abort: ${run.stderr}`)
    const summary = JSON.parse(run.stdout.trim().split('\n').pop()!) as Summary
    t.deepEqual(summary.untyped, [], 'every error is typed')
    rounds += summary.rounds
    timed += summary.timed
    maxOverrun = Math.max(maxOverrun, summary.maxOverrun)
    over50 += summary.over50
    for (const [c, n] of Object.entries(summary.codes)) codes[c] = (codes[c] ?? 0) + n
  }
  t.true(rounds >= 2000, `${rounds} rounds`)
  t.log(`${waitMechanism()}: ${rounds} rounds, ${writes.trim()} scribbles, errors ${JSON.stringify(codes)}`)
  t.log(`${timed} timed waits: longest past its timeout ${maxOverrun.toFixed(1)} ms, ${over50} over 50 ms`)
  t.true(
    Object.keys(codes).every((c) => ['EINVAL', 'EOVERFLOW'].includes(c)),
    'only the documented errors',
  )
  // Generous (a shared machine, debug builds): the figures above are the measurement.
  t.true(maxOverrun < 1000, 'no wait lasts far past its timeout')
})
