// Async waits never occupy the libuv threadpool: 256 pending waits on one semaphore cost one
// dispatcher thread, and fs and crypto (which need the pool) keep working. Its own file, so
// no other test's dispatcher threads are running while it counts threads.
import { pbkdf2 } from 'node:crypto'
import { readFileSync, readdirSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'

import test from 'ava'

import { Semaphore } from '../index.js'
import { turn, uniqueSemName } from './helpers.js'

/** Threads of this process named like the semaphore dispatcher (comm is cut at 15 bytes). */
const dispatcherThreads = () =>
  readdirSync('/proc/self/task').filter((tid) => {
    try {
      return readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === 'shmkit-semaphor'
    } catch {
      return false // the thread ended while we looked
    }
  }).length

/** Fails the test instead of hanging when `promise` does not settle in `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
  })
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer))
}

test('256 pending waits leave the threadpool free (fs, crypto), use one thread, and 256 posts resolve them', async (t) => {
  using sem = Semaphore.create(uniqueSemName(t))
  const before = dispatcherThreads()
  const waits = Array.from({ length: 256 }, () => sem.wait())
  let settled = 0
  for (const w of waits)
    w.then(
      () => settled++,
      () => {},
    )
  // The thread names itself once it runs, which a loaded machine may delay: wait for it.
  await within(
    (async () => {
      while (dispatcherThreads() === before) await new Promise((r) => setTimeout(r, 10))
    })(),
    30_000,
    'the dispatcher thread starts',
  )
  await turn()
  t.is(dispatcherThreads() - before, 1, 'one dispatcher thread for all 256 waits')
  // The libuv pool has 4 threads: if any wait held one, these would never finish.
  const [file, key] = await within(
    Promise.all([
      readFile(new URL(import.meta.url)),
      promisify(pbkdf2)('secret', 'salt', 1000, 32, 'sha256'),
      ...Array.from({ length: 8 }, () => readFile('/proc/self/stat')),
    ]),
    30_000,
    'fs and crypto work beside 256 pending waits',
  )
  t.true(file.length > 0)
  t.is(key.length, 32)
  t.is(settled, 0, 'no wait settled without a permit')
  for (let i = 0; i < 256; i++) sem.post()
  const results = await within(Promise.all(waits), 60_000, '256 waits')
  t.true(results.every((took) => took === true))
  t.is(results.length, 256)
  t.is(sem.value, 0, 'every permit went to exactly one wait')
  await within(
    (async () => {
      while (dispatcherThreads() > before) await new Promise((r) => setTimeout(r, 20))
    })(),
    30_000,
    'the dispatcher thread exits when no wait is pending',
  )
})
