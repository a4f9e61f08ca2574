// Scale: 10,000 pending async waits over 1,000 objects (500 words with waitAsync, 500
// in-region semaphores) take at most a handful of threads, leave the libuv threadpool free
// (fs and crypto work), and every wait settles: woken by notify/post, or timed out on time.
// Its own file, so no other test's waits are pending while it counts threads.
import { pbkdf2 } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'

import anyTest from 'ava'

import { notify, Semaphore, SharedMemory, waitAsync, waitMechanism } from '../index.js'
import { withProc } from './helpers.js'

const test = withProc(anyTest, 'the thread count in /proc/self/task')

const tasks = () => readdirSync('/proc/self/task').length

/** Fails the test instead of hanging when `promise` does not settle in `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
  })
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer))
}

const WORDS = 500
const SEMAPHORES = 500
const PER_OBJECT = 10
const TIMEOUT_MS = 1500

test('10,000 pending waits over 1,000 objects: a handful of threads, fs and crypto work, all settle on time', async (t) => {
  using shm = SharedMemory.anonymous(4096 + SEMAPHORES * 32)
  const words = new Int32Array(shm.buffer, 0, WORDS)
  const sems = Array.from({ length: SEMAPHORES }, (_, i) => Semaphore.init(shm, 4096 + i * 32, 0))
  t.teardown(() => sems.forEach((s) => s.close()))
  const before = tasks()
  const start = performance.now()
  // Even objects are woken, odd ones time out.
  const late: number[] = []
  // The deadline as seen from here, taken before the call: never later than the real one.
  const timed = <T>(call: () => Promise<T>) => {
    const deadline = performance.now() + TIMEOUT_MS
    return call().then((v) => {
      late.push(performance.now() - deadline)
      return v
    })
  }
  const wordWaits: Promise<string>[] = []
  const semWaits: Promise<boolean>[] = []
  for (let i = 0; i < WORDS; i++) {
    for (let k = 0; k < PER_OBJECT; k++) {
      const w = () => waitAsync(words, i, 0, i % 2 ? TIMEOUT_MS : undefined)
      wordWaits.push(i % 2 ? timed(w) : w())
    }
  }
  for (let i = 0; i < SEMAPHORES; i++) {
    for (let k = 0; k < PER_OBJECT; k++) {
      const w = () => sems[i].wait(i % 2 ? { timeout: TIMEOUT_MS } : undefined)
      semWaits.push(i % 2 ? timed(w) : w())
    }
  }
  const armed = performance.now() - start
  const extra = tasks() - before
  t.log(`mechanism ${waitMechanism()}: 10,000 waits armed in ${armed.toFixed(0)} ms, ${extra} extra threads`)
  t.true(extra <= 4, `at most a handful of extra threads (got ${extra})`)
  // The libuv pool has 4 threads: if any wait held one, these would never finish.
  const [file, key] = await within(
    Promise.all([
      readFile(new URL(import.meta.url)),
      promisify(pbkdf2)('secret', 'salt', 1000, 32, 'sha256'),
      ...Array.from({ length: 8 }, () => readFile('/proc/self/stat')),
    ]),
    30_000,
    'fs and crypto beside 10,000 pending waits',
  )
  t.true(file.length > 0)
  t.is(key.length, 32)
  for (let i = 0; i < WORDS; i += 2) {
    Atomics.store(words, i, 1)
    notify(words, i)
  }
  for (let i = 0; i < SEMAPHORES; i += 2) for (let k = 0; k < PER_OBJECT; k++) sems[i].post()
  const wordResults = await within(Promise.all(wordWaits), 60_000, 'the word waits')
  const unsettled = new Set(semWaits.map((_, j) => j))
  semWaits.forEach((w, j) => w.then(() => unsettled.delete(j)))
  const semResults = await within(Promise.all(semWaits), 20_000, 'the semaphore waits').catch((e) => {
    throw new Error(
      `${e.message}: ${unsettled.size} left, first ${[...unsettled].slice(0, 5)}, values ${sems.slice(0, 4).map((s) => s.value)}`,
    )
  })
  for (let i = 0; i < WORDS; i++) {
    const mine = wordResults.slice(i * PER_OBJECT, (i + 1) * PER_OBJECT)
    t.deepEqual(new Set(mine), new Set([i % 2 ? 'timed-out' : 'ok']), `word ${i}`)
  }
  for (let i = 0; i < SEMAPHORES; i++) {
    const mine = semResults.slice(i * PER_OBJECT, (i + 1) * PER_OBJECT)
    t.deepEqual(new Set(mine), new Set([i % 2 === 0]), `semaphore ${i}`)
    t.is(sems[i].value, 0, 'every permit went to exactly one wait')
  }
  late.sort((a, b) => a - b)
  const early = late.filter((ms) => ms < 0)
  t.is(early.length, 0, 'no timed wait ended before its timeout')
  const p = (q: number) => late[Math.min(late.length - 1, Math.floor(q * late.length))].toFixed(1)
  t.log(
    `timed-out waits past their deadline (ms): median ${p(0.5)}, p99 ${p(0.99)}, max ${p(1)} (${late.length} waits)`,
  )
  // Generous: the machine is shared and this is a debug build; the figures are logged.
  t.true(late[late.length - 1] < 5000, 'every timed wait ended soon after its timeout')
  t.true(tasks() - before <= 4, 'still a handful of threads')
})
