// fork(): a child that shares this process's mappings. The forking runs in fixture processes
// started with `node --single-threaded` (plain Node, no loader thread), which report what
// they saw as one JSON line; these tests assert on it.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'

import anyTest from 'ava'

import { childWrite, fork, getpid } from '../index.js'
import { fixture, runNode, type Ran, linuxOnly } from './helpers.js'

const test = linuxOnly(anyTest, 'fork() from Node')

const scenarios = fixture('fork-scenarios.mjs')
const SINGLE = ['--single-threaded']

async function scenario(name: string, arg = '', execArgv = SINGLE, timeoutMs = 120_000) {
  const ran = await runNode(scenarios, [name, arg], { execArgv, timeoutMs })
  return { ran, result: parse(ran) }
}

function parse(ran: Ran) {
  const line = ran.stdout.trim().split('\n').pop() ?? ''
  try {
    return JSON.parse(line)
  } catch {
    throw new Error(`fixture gave no result (code ${ran.code}, signal ${ran.signal}):\n${ran.stdout}\n${ran.stderr}`)
  }
}

for (const technique of ['devZero', 'anonymous']) {
  for (const how of ['wait', 'exited']) {
    test(`${technique}: the child writes, the parent reads after ${how}`, async (t) => {
      const { ran, result } = await scenario('shared', `${technique}:${how}`)
      t.is(ran.code, 0, ran.stderr)
      t.deepEqual(result.status, { code: 0, signal: null })
      t.is(result.value, 42)
      t.is(result.reportedPid, result.childPid, "the child's getpid() is the pid the parent got")
      t.not(result.childPid, result.parentPid)
    })
  }
}

for (const technique of ['devZero', 'anonymous']) {
  test(`MAP_PRIVATE ${technique}: the parent does not see the child's write`, async (t) => {
    const { result } = await scenario('private', technique)
    t.deepEqual(result.status, { code: 0, signal: null }, 'the child saw its own write')
    t.is(result.parentSees, 5)
  })
}

test('a child that throws exits 1 with the message on stderr', async (t) => {
  const marker = `m${process.pid}x${Date.now()}`
  const { ran, result } = await scenario('throw', marker)
  t.deepEqual(result.status, { code: 1, signal: null })
  t.true(ran.stderr.includes(`thrown in the child ${marker}`), ran.stderr)
})

test('a child that returns a Promise exits 1 and says why', async (t) => {
  const { ran, result } = await scenario('promise')
  t.deepEqual(result.status, { code: 1, signal: null })
  t.regex(ran.stderr, /Promise/)
})

test('the exit code is the numeric result & 0xff; process.exit(code) in the child works', async (t) => {
  const { result } = await scenario('return-code')
  t.deepEqual(result.returned, { code: 300 & 0xff, signal: null })
  t.deepEqual(result.exited, { code: 7, signal: null })
})

test('a child killed by SIGKILL reports the signal', async (t) => {
  const { result } = await scenario('kill', 'SIGKILL')
  t.is(result.running, null, 'tryWait is null while it runs')
  t.true(result.sent)
  t.deepEqual(result.status, { code: null, signal: 'SIGKILL' })
  t.false(result.sentAfterReap, 'nothing is sent to a reaped pid')
  t.deepEqual(result.again, result.status)
})

test('kill() by number works too', async (t) => {
  const { result } = await scenario('kill', '9')
  t.deepEqual(result.status, { code: null, signal: 'SIGKILL' })
})

test('wait({ timeout }) returns null when time runs out and leaves the child running', async (t) => {
  const { result } = await scenario('timeout')
  t.is(result.timedOut, null)
  t.true(result.waitedMs >= 49, `waited ${result.waitedMs} ms of the 50 ms timeout`)
  t.is(result.stillRunning, null, 'the child still runs after the timeout')
  t.deepEqual(result.status, { code: null, signal: 'SIGKILL' }, 'wait({ timeout: Infinity }) waits to the end')
})

test('bad arguments throw Node-style errors', async (t) => {
  const { result } = await scenario('bad-args')
  t.deepEqual(result.codes, [
    'ERR_UNKNOWN_SIGNAL',
    'ERR_UNKNOWN_SIGNAL',
    'ERR_INVALID_ARG_TYPE',
    'ERR_OUT_OF_RANGE',
    'ERR_OUT_OF_RANGE',
    'ERR_INVALID_ARG_TYPE',
    'ERR_INVALID_ARG_TYPE',
    'ERR_INVALID_ARG_TYPE',
    'ERR_INVALID_ARG_TYPE',
  ])
  t.deepEqual(result.status, { code: 0, signal: null })
})

test('1,000 sequential forks leave no zombies and no extra fds', async (t) => {
  const { result } = await scenario('many', '1000', SINGLE, 600_000)
  t.is(result.ok, 1000)
  t.is(result.fdsAfter, result.fdsBefore)
  t.deepEqual(result.children, [])
})

test('wait() and exited reap only their own child: child_process keeps working', async (t) => {
  const { result } = await scenario('child-process')
  t.deepEqual(result.blocking, { code: 9, signal: null })
  t.deepEqual(result.forkedCodes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  t.is(result.spawnedOk, 20)
})

test('a child still running when the parent exits is killed and reaped', async (t) => {
  const { ran, result } = await scenario('exit-hook')
  t.is(ran.code, 0, ran.stderr)
  t.false(result.stillThere)
  t.deepEqual(result.children, [])
})

test('a child dies with its parent (PR_SET_PDEATHSIG)', async (t) => {
  const parent = spawn(process.execPath, [...SINGLE, scenarios, 'orphan'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const line = await new Promise<string>((resolve, reject) => {
    let out = ''
    parent.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d
      if (out.includes('\n')) resolve(out)
    })
    parent.on('exit', () => reject(new Error(`the fixture ended early: ${out}`)))
  })
  const { pid } = JSON.parse(line)
  t.teardown(() => {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone, as expected
    }
  })
  parent.kill('SIGKILL')
  const dead = () => {
    if (!existsSync(`/proc/${pid}/stat`)) return true
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return /^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2))
  }
  const deadline = Date.now() + 60_000
  while (!dead() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  t.true(dead(), 'the orphaned child was still running a minute after its parent died')
})

test('childWrite delivers everything through a full non-blocking stdout pipe', async (t) => {
  const size = 1_500_000
  const { ran, result } = await scenario('child-write', String(size))
  t.deepEqual(result.status, { code: 0, signal: null })
  const lines = ran.stdout.split('\n')
  t.is(lines[0].length, size)
  t.true(/^x+$/.test(lines[0]))
})

test("SIGTERM kills the child, and the parent's SIGTERM listener does not fire", async (t) => {
  const { result } = await scenario('signals')
  t.deepEqual(result.status, { code: null, signal: 'SIGTERM' })
  t.is(result.fired, 0)
})

test('an out-of-bounds WebAssembly access in the child throws a RuntimeError instead of crashing', async (t) => {
  const { result } = await scenario('wasm')
  t.deepEqual(result.status, { code: 0, signal: null })
})

test("the child lets go of the parent's sockets: a closed server refuses connections", async (t) => {
  const { result } = await scenario('sockets')
  t.is(result.outcome, 'ECONNREFUSED')
  t.deepEqual(result.status, { code: 0, signal: null })
})

test('refused without --single-threaded: ERR_SHM_FORK_UNSAFE and no child', async (t) => {
  const { result } = await scenario('refuse', '', [])
  t.is(result.error?.code, 'ERR_SHM_FORK_UNSAFE')
  t.is(result.error?.name, 'Error')
  t.is(result.ran, 0, 'the callback never ran')
  t.deepEqual(result.children, [])
})

test('refused while a worker thread is alive, allowed again after it exits', async (t) => {
  const { result } = await scenario('worker-alive')
  t.is(result.error?.code, 'ERR_SHM_FORK_UNSAFE')
  t.is(result.ran, 0)
  t.deepEqual(result.children, [])
  t.deepEqual(result.after, { status: { code: 0, signal: null }, ran: 2 })
})

test('refused while a worker started before shmkit loaded is alive', async (t) => {
  const { result } = await scenario('worker-before-load')
  t.is(result.error?.code, 'ERR_SHM_FORK_UNSAFE')
  t.is(result.ran, 0)
  t.deepEqual(result.children, [])
  t.deepEqual(result.after, { status: { code: 0, signal: null }, ran: 2 })
})

test('worker tracking survives garbage collection', async (t) => {
  const { result } = await scenario('worker-after-gc', '', [...SINGLE, '--expose-gc'])
  t.is(result.error?.code, 'ERR_SHM_FORK_UNSAFE')
  t.deepEqual(result.children, [])
})

test('refused from a worker thread', async (t) => {
  const { result } = await scenario('from-worker')
  t.is(result.error?.code, 'ERR_SHM_FORK_UNSAFE')
  t.is(result.ran, 0)
  t.deepEqual(result.children, [])
})

test('in this (multi-threaded) process: argument checks come first, then the refusal', (t) => {
  t.is((t.throws(() => fork(42 as never)) as NodeJS.ErrnoException).code, 'ERR_INVALID_ARG_TYPE')
  const error = t.throws(() => fork(() => 0)) as NodeJS.ErrnoException
  t.is(error.code, 'ERR_SHM_FORK_UNSAFE')
})

test('getpid() and childWrite() work in any process', (t) => {
  t.is(getpid(), process.pid)
  t.is(childWrite(2, ''), 0)
  const error = t.throws(() => childWrite(987_654, 'x')) as NodeJS.ErrnoException
  t.is(error.code, 'EBADF')
  t.is((t.throws(() => childWrite(1, 5 as never)) as NodeJS.ErrnoException).code, 'ERR_INVALID_ARG_TYPE')
  t.is((t.throws(() => childWrite(-1, 'x')) as NodeJS.ErrnoException).code, 'ERR_OUT_OF_RANGE')
})
