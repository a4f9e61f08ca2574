// wait/waitAsync/notify on Int32Array views of shared memory, across processes, and the
// exactness of counting under each primitive with Node, forked Node, C and Rust processes
// taking part.
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import anyTest, { type ExecutionContext } from 'ava'

import { notify, Semaphore, SharedMemory, wait, waitAsync, waitMechanism } from '../index.js'
import { cargoExample, fixture, here, runNode, uniqueName, uniqueSemName, guardTitles, platform } from './helpers.js'

const test = guardTitles(anyTest, [
  {
    ok: platform.linux,
    need: "Linux (fork() from Node and the C peer's futex calls)",
    titles: ['exact: Node (async, forked), C and Rust', 'without a lock the same count'],
  },
])

/**
 * What `notify` reports for one waiting `waitAsync`: exactly 1 with io_uring (each wait is a
 * kernel wait); with the waiter threads, 0 or 1 (the thread may not sleep on the word yet;
 * the wait still ends, since the word changed).
 */
function oneWoken(t: ExecutionContext, woken: number, what: string) {
  if (waitMechanism() === 'io_uring') t.is(woken, 1, what)
  else t.true(woken === 0 || woken === 1, what)
}

test('wait and waitAsync answer like Atomics: not-equal, timed-out, ok', async (t) => {
  using shm = SharedMemory.anonymous(4096)
  const words = new Int32Array(shm.buffer)
  t.is(wait(words, 0, 1, 0), 'not-equal')
  t.is(wait(words, 0, 0, 5), 'timed-out')
  t.is(wait(words, 0, 0, -1), 'timed-out', 'a negative timeout is 0')
  t.is(await waitAsync(words, 0, 7), 'not-equal')
  t.is(await waitAsync(words, 0, 0, 0), 'timed-out')
  const started = performance.now()
  t.is(await waitAsync(words, 0, 0, { timeout: 20 }), 'timed-out')
  t.true(performance.now() - started >= 19, 'not before its timeout')
  const pending = waitAsync(words, 3, 0)
  t.is(notify(words, 2), 0, 'nobody waits on another word')
  Atomics.store(words, 3, 1)
  oneWoken(t, notify(words, 3), 'one waiter woken')
  t.is(await pending, 'ok')
  t.is(wait(words, 4, -1, 0), 'not-equal', 'values are compared as 32 bits')
  Atomics.store(words, 4, -1)
  t.is(wait(words, 4, 0xffffffff, 1), 'timed-out', '-1 and 0xffffffff are the same word value')
  t.log(`async waits use ${waitMechanism()}`)
})

test('bad arguments and other buffers are refused with Node codes; a closed region is ERR_SHM_CLOSED', async (t) => {
  const shm = SharedMemory.anonymous(4096)
  const words = new Int32Array(shm.buffer)
  t.throws(() => wait(new Int32Array(4), 0, 0), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => wait(new Int32Array(new SharedArrayBuffer(16)), 0, 0), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => wait(new Uint32Array(shm.buffer) as unknown as Int32Array, 0, 0), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => wait({} as Int32Array, 0, 0), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => wait(words, 1024, 0), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => wait(words, 1.5, 0), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => wait(words, 0, 2 ** 32), { code: 'ERR_OUT_OF_RANGE' })
  t.throws(() => wait(words, 0, 0, 'soon' as unknown as number), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => notify(words, 0, -1), { code: 'ERR_OUT_OF_RANGE' })
  await t.throwsAsync(async () => waitAsync(words, 0, 0, { signal: 'no' as unknown as AbortSignal }), {
    code: 'ERR_INVALID_ARG_TYPE',
  })
  // A view at an offset waits on the right word.
  const tail = new Int32Array(shm.buffer, 4092, 1)
  const pending = waitAsync(tail, 0, 0)
  words[1023] = 1
  oneWoken(t, notify(words, 1023), 'the waiter on the last word')
  t.is(await pending, 'ok')
  shm.close()
  t.throws(() => wait(words, 0, 0), { code: 'ERR_SHM_CLOSED' })
  t.throws(() => notify(words, 0), { code: 'ERR_SHM_CLOSED' })
})

test('an AbortSignal rejects a pending waitAsync with ABORT_ERR', async (t) => {
  using shm = SharedMemory.anonymous(4096)
  const words = new Int32Array(shm.buffer)
  const controller = new AbortController()
  const pending = waitAsync(words, 0, 0, { signal: controller.signal })
  const reason = new Error('stop')
  controller.abort(reason)
  const error = await t.throwsAsync(pending, { code: 'ABORT_ERR', name: 'AbortError' })
  t.is(error?.cause, reason)
  await t.throwsAsync(waitAsync(words, 0, 0, { signal: AbortSignal.abort() }), { code: 'ABORT_ERR' })
  t.is(notify(words, 0), 0, 'the aborted wait is gone from the kernel too')
})

test('a pending waitAsync keeps its memory mapped after close(), and a notify through another mapping wakes it', async (t) => {
  const name = uniqueName(t)
  const a = SharedMemory.create(name, 4096)
  using b = SharedMemory.open(name)
  const pending = waitAsync(new Int32Array(a.buffer), 5, 0)
  a.close()
  const other = new Int32Array(b.buffer)
  Atomics.store(other, 5, 1)
  oneWoken(t, notify(other, 5), 'the same word, mapped at another address')
  t.is(await pending, 'ok')
})

test('a notify from another process wakes wait and waitAsync', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  const words = new Int32Array(shm.buffer)
  const script = `
    const { SharedMemory, notify, wait } = require(${JSON.stringify(join(here, '..', 'index.js'))})
    const words = new Int32Array(SharedMemory.open(${JSON.stringify(name)}).buffer)
    while (Atomics.load(words, 1) < 1) wait(words, 1, 0, 50)
    Atomics.store(words, 0, 1)
    notify(words, 0)
    while (Atomics.load(words, 1) < 2) wait(words, 1, 1, 50)
    Atomics.store(words, 0, 2)
    notify(words, 0)
  `
  const child = spawn(process.execPath, ['-e', script], { stdio: 'inherit' })
  t.teardown(() => child.kill('SIGKILL'))
  const first = waitAsync(words, 0, 0, 60_000)
  Atomics.store(words, 1, 1)
  notify(words, 1)
  t.is(await first, 'ok')
  t.is(words[0], 1)
  Atomics.store(words, 1, 2)
  notify(words, 1)
  t.not(wait(words, 0, 1, 60_000), 'timed-out')
  t.is(words[0], 2)
  const [code] = await once(child, 'exit')
  t.is(code, 0)
})

/** Compiles the C participant, or skips (with the reason) where there is no C compiler. */
function cProgram(t: ExecutionContext): string | null {
  const dir = mkdtempSync(join(tmpdir(), 'shmkit-word-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const binary = join(dir, 'word_peer')
  try {
    execFileSync('cc', ['-O2', '-Wall', '-o', binary, join(here, 'interop', 'word_peer.c'), '-pthread', '-lrt'], {
      stdio: 'inherit',
    })
  } catch (error) {
    t.log(`skipped: no C compiler (${(error as Error).message})`)
    return null
  }
  return binary
}

const ROUNDS = 20_000

/** The Rust participant (`examples/word_counter.rs`); null (skip, with the reason) without cargo. */
function rustProgram(t: ExecutionContext): string | null {
  const program = cargoExample('word_counter')
  if (!program) t.log('skipped: no cargo to build the Rust participant')
  return program
}

/** Four processes (Node async, a Node child of shmkit's fork, C, Rust) add `rounds` each. */
async function count(
  t: ExecutionContext,
  mode: 'lock' | 'sem-region' | 'sem-named' | 'none',
  rounds = ROUNDS,
): Promise<number | null> {
  const binary = cProgram(t)
  const rust = rustProgram(t)
  if (!binary || !rust) return null
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  const semName = uniqueSemName(t)
  const named = mode === 'sem-named' ? Semaphore.create(semName, { initial: 1 }) : null
  const inRegion = mode === 'sem-region' ? Semaphore.init(shm, 256, 1) : null
  t.teardown(() => (named?.close(), inRegion?.close()))
  const node = (style: string, extra: string[] = [], execArgv: string[] = []) =>
    runNode(fixture('word-counter.mjs'), [name, String(rounds), mode, style, semName, ...extra], {
      timeoutMs: 300_000,
      execArgv,
    })
  const native = (program: string, args: string[]) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => child.kill('SIGKILL'))
    return once(child, 'exit').then(([code]) => code as number)
  }
  const [async, forked, c, r] = await Promise.all([
    node('async'),
    node('sync', ['fork'], ['--single-threaded']),
    native(binary, [`/${name}`, String(rounds), mode, `/${semName}`]),
    native(rust, [`/${name}`, String(rounds), mode, `/${semName}`]),
  ])
  for (const run of [async, forked]) t.is(run.code, 0, run.stderr)
  t.is(c, 0, 'the C program')
  t.is(r, 0, 'the Rust program')
  return new Int32Array(shm.buffer)[0]
}

for (const mode of ['lock', 'sem-region', 'sem-named'] as const) {
  const what = {
    lock: 'a lock on wait/notify',
    'sem-region': 'an in-region semaphore',
    'sem-named': 'a named semaphore',
  }[mode]
  test(`exact: Node (async, forked), C and Rust processes add 4 x 20,000 under ${what}`, async (t) => {
    const total = await count(t, mode)
    if (total === null) return t.pass()
    t.is(total, 4 * ROUNDS)
  })
}

test('without a lock the same count comes out wrong (so the tests above can fail)', async (t) => {
  // More rounds, so that the unlocked loops overlap (each takes milliseconds); the scheduler
  // may still run them one after another now and then, so a few attempts are allowed.
  const rounds = 250 * ROUNDS
  for (let attempt = 1; attempt <= 5; attempt++) {
    const total = await count(t, 'none', rounds)
    if (total === null) return t.pass()
    t.log(`no lock, attempt ${attempt}: ${total} of ${4 * rounds}`)
    if (total < 4 * rounds) return t.pass()
  }
  t.fail('five unlocked runs all counted exactly: the processes never overlapped')
})
