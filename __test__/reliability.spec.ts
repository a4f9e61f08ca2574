// Crashes and signals: a child killed while holding a semaphore or in the middle of a write
// leaves the parent working; a parent that handles SIGTERM leaves no zombies; waits and forks
// survive signals; random fork/wait/kill sequences crash nothing and reap everything.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'

import anyTest from 'ava'

import { fixture, runNode, linuxOnly } from './helpers.js'

const test = linuxOnly(anyTest, 'fork() from Node')

const script = fixture('reliability.mjs')
const SINGLE = ['--single-threaded']

async function run(t: import('ava').ExecutionContext, scenario: string, ...args: string[]) {
  const ran = await runNode(script, [scenario, ...args], { execArgv: SINGLE, timeoutMs: 120_000 })
  t.is(ran.signal, null, ran.stderr)
  t.is(ran.code, 0, ran.stderr)
  return JSON.parse(ran.stdout.trim().split('\n').at(-1)!)
}

test('a child killed while holding a semaphore: bounded waits report the lost permit, and the parent recovers', async (t) => {
  const result = await run(t, 'killed-holding-semaphore')
  t.deepEqual(result, { status: { code: null, signal: 'SIGKILL' }, tookLost: false, tookAfter: true, value: 1 })
})

test('a child killed in the middle of a write leaves a torn record and a working region', async (t) => {
  const result = await run(t, 'killed-mid-write')
  t.deepEqual(result.status, { code: null, signal: 'SIGKILL' })
  t.true(result.distinctValues >= 1)
  t.true(result.rewritten)
})

async function parentGetsSigterm(t: import('ava').ExecutionContext, scenario: string) {
  const parent = spawn(process.execPath, [...SINGLE, script, scenario], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = once(parent, 'exit')
  t.teardown(() => parent.kill('SIGKILL'))
  let out = ''
  parent.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  const deadline = Date.now() + 60_000
  while (!out.includes('\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  const { ready } = JSON.parse(out.split('\n')[0]) as { ready: number[] }
  t.is(ready.length, 3)
  parent.kill('SIGTERM')
  const [code] = await exited
  t.is(code, 0)
  return { ready, lines: out.trim().split('\n') }
}

test('a parent that handles SIGTERM by killing and waiting leaves no zombies', async (t) => {
  const { lines } = await parentGetsSigterm(t, 'sigterm-handled')
  const result = JSON.parse(lines.at(-1)!)
  t.deepEqual(
    result.statuses,
    [1, 2, 3].map(() => ({ code: null, signal: 'SIGKILL' })),
  )
  t.deepEqual(result.remaining, [], 'no child left, zombie or alive')
})

test('a parent that exits on SIGTERM takes its forked children with it', async (t) => {
  const { ready } = await parentGetsSigterm(t, 'sigterm-exit')
  // The exit hook killed and reaped them before the parent was gone.
  for (const pid of ready) t.false(existsSync(`/proc/${pid}`), `child ${pid} is gone`)
})

test('wait() and fork() keep working while signals arrive and their handler runs', async (t) => {
  const runner = spawn(process.execPath, [...SINGLE, script, 'wait-under-signals'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const exited = once(runner, 'exit')
  t.teardown(() => runner.kill('SIGKILL'))
  let out = ''
  runner.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  const deadline = Date.now() + 60_000
  while (!out.startsWith('ready\n') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
  const bombard = setInterval(() => runner.kill('SIGUSR2'), 2)
  while (out.split('\n').length < 3 && Date.now() < deadline + 60_000) await new Promise((r) => setTimeout(r, 10))
  clearInterval(bombard)
  const [code] = await exited
  t.is(code, 0)
  const result = JSON.parse(out.trim().split('\n').at(-1)!)
  t.deepEqual(result.statuses, ['3/null'])
  t.is(result.count, 20)
  t.true(result.handled > 0, 'the handler ran')
  t.is(result.zombies, 0)
})

for (const seed of ['1', '2']) {
  test(`random fork/wait/kill sequences crash nothing, type every error and reap every child (seed ${seed})`, async (t) => {
    const result = await run(t, 'fuzz-fork', seed)
    t.true(result.steps >= 300, `${result.steps} steps`)
    t.is(result.untyped, null)
    t.deepEqual(result.children, [])
    t.true(result.fdsEqual)
  })
}
