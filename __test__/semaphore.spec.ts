// Semaphores in one process: the API, its errors, and async waits that leave the libuv
// threadpool alone.
import { getEventListeners } from 'node:events'
import { execFileSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

import anyTest from 'ava'

import { SEMAPHORE_ALIGNMENT, SEMAPHORE_SIZE, SEMAPHORE_VALUE_MAX, Semaphore, SharedMemory } from '../index.js'
import { mappingCount, turn, uniqueName, uniqueSemName, guardTitles, platform, semaphoreFile } from './helpers.js'

const test = guardTitles(anyTest, [
  {
    ok: platform.linux,
    need: "Linux (a named semaphore's file in /dev/shm, or its value: macOS's kernel semaphores have none)",
    titles: [
      'a named semaphore is created, opened by name',
      'openOrCreate creates once, then opens and keeps the value',
      'new named semaphores are mode 0600',
      'OS failures are shaped like fs errors',
      'wait resolves true at once',
      'a timed wait that expires resolves false',
      'permits are never lost',
      'create/close cycles of named semaphores',
    ],
  },
])

const semPath = semaphoreFile

/** Fails the test instead of hanging when `promise` does not settle in `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
  })
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer))
}

/** Resolves once `value` has settled, with how. */
const outcome = <T>(promise: Promise<T>) =>
  promise.then(
    (value) => ({ value }),
    (error: NodeJS.ErrnoException) => ({ error }),
  )

test('a named semaphore is created, opened by name, counted and unlinked', (t) => {
  const name = uniqueSemName(t)
  using a = Semaphore.create(name, { initial: 2 })
  t.is(a.name, `/${name}`)
  t.is(a.offset, null)
  using b = Semaphore.open(`/${name}`)
  t.is(b.name, `/${name}`)
  t.is(b.value, 2)
  t.true(b.tryWait())
  t.true(a.tryWait())
  t.false(a.tryWait(), 'two permits, both taken')
  a.post()
  t.is(b.value, 1)
  t.true(b.waitSync())
  t.is(a.value, 0)
  t.true(statSync(semPath(name)).isFile())
  Semaphore.unlink(name)
  t.throws(() => statSync(semPath(name)))
  a.post() // still usable after unlink
  t.is(b.value, 1)
})

test('openOrCreate creates once, then opens and keeps the value', (t) => {
  const name = uniqueSemName(t)
  using first = Semaphore.openOrCreate(name, { initial: 3 })
  t.true(first.tryWait())
  using second = Semaphore.openOrCreate(name, { initial: 100 })
  t.is(second.value, 2)
})

test.serial('new named semaphores are mode 0600 by default and an explicit mode is exact', (t) => {
  const name = uniqueSemName(t)
  using _a = Semaphore.create(name)
  t.is(statSync(semPath(name)).mode & 0o777, 0o600)
  const wide = uniqueSemName(t)
  const old = process.umask(0o077)
  try {
    using _b = Semaphore.create(wide, { mode: 0o666 })
    t.is(statSync(semPath(wide)).mode & 0o777, 0o666, 'the umask does not narrow it')
  } finally {
    process.umask(old)
  }
})

test('OS failures are shaped like fs errors', (t) => {
  const name = uniqueSemName(t)
  using _a = Semaphore.create(name)
  const exists = t.throws(() => Semaphore.create(name)) as NodeJS.ErrnoException
  t.like(exists, { code: 'EEXIST', errno: -17, syscall: 'sem_open', path: `/${name}` })
  t.true(exists instanceof Error)
  const missing = uniqueSemName(t)
  t.like(
    t.throws(() => Semaphore.open(missing)),
    { code: 'ENOENT', errno: -2, syscall: 'sem_open', path: `/${missing}` },
  )
  t.like(
    t.throws(() => Semaphore.unlink(missing)),
    { code: 'ENOENT', syscall: 'sem_unlink', path: `/${missing}` },
  )

  using full = Semaphore.create(uniqueSemName(t), { initial: Semaphore.VALUE_MAX })
  t.is(full.value, Semaphore.VALUE_MAX)
  t.like(
    t.throws(() => full.post()),
    { code: 'EOVERFLOW', syscall: 'sem_post', path: full.name! },
  )
})

test('bad arguments throw TypeError or RangeError with Node codes', (t) => {
  const name = uniqueSemName(t)
  const call = (f: () => unknown) => t.throws(f) as NodeJS.ErrnoException
  const typeError = (f: () => unknown, code: string) => {
    const e = call(f)
    t.true(e instanceof TypeError, e.message)
    t.is(e.code, code)
  }
  const rangeError = (f: () => unknown, why = '') => {
    const e = call(f)
    t.true(e instanceof RangeError, `${why} ${e.message}`)
    t.is(e.code, 'ERR_OUT_OF_RANGE')
  }
  const any = Semaphore as unknown as Record<string, (...args: unknown[]) => unknown>
  typeError(() => any.create(42), 'ERR_INVALID_ARG_TYPE')
  typeError(() => Semaphore.create('a/b'), 'ERR_INVALID_ARG_VALUE')
  typeError(() => Semaphore.create('x'.repeat(40)), 'ERR_INVALID_ARG_VALUE')
  typeError(() => any.create(name, 'fast'), 'ERR_INVALID_ARG_TYPE')
  typeError(() => any.create(name, { initial: '1' }), 'ERR_INVALID_ARG_TYPE')
  rangeError(() => Semaphore.create(name, { initial: -1 }))
  rangeError(() => Semaphore.create(name, { initial: 1.5 }))
  rangeError(() => Semaphore.create(name, { initial: Semaphore.VALUE_MAX + 1 }))
  rangeError(() => Semaphore.create(name, { mode: 0o1000 }))
  typeError(() => any.open(undefined), 'ERR_INVALID_ARG_TYPE')
  t.throws(() => new (Semaphore as unknown as new () => unknown)())

  using sem = Semaphore.create(name)
  const s = sem as unknown as Record<string, (...args: unknown[]) => unknown>
  rangeError(() => sem.waitSync({ timeout: -1 }))
  rangeError(() => sem.waitSync({ timeout: NaN }))
  typeError(() => s.waitSync({ timeout: '10' }), 'ERR_INVALID_ARG_TYPE')
  typeError(() => s.waitSync(5), 'ERR_INVALID_ARG_TYPE')
  rangeError(() => sem.wait({ timeout: -5 }))
  typeError(() => s.wait({ signal: {} }), 'ERR_INVALID_ARG_TYPE')
  typeError(() => s.wait({ signal: new AbortController() }), 'ERR_INVALID_ARG_TYPE')

  const shmName = uniqueName(t)
  using shm = SharedMemory.create(shmName, 4096)
  typeError(() => any.init({}, 0), 'ERR_INVALID_ARG_TYPE')
  typeError(() => any.init(Object.create(SharedMemory.prototype), 0), 'ERR_INVALID_ARG_TYPE')
  typeError(() => any.init(sem, 0), 'ERR_INVALID_ARG_TYPE')
  typeError(() => any.at(shm, '0'), 'ERR_INVALID_ARG_TYPE')
  rangeError(() => Semaphore.init(shm, -8))
  rangeError(() => Semaphore.init(shm, 4096 - Semaphore.SIZE + Semaphore.ALIGN), 'past the end')
  rangeError(() => Semaphore.init(shm, 4), 'misaligned')
  rangeError(() => Semaphore.init(shm, 0, -1))
  using priv = SharedMemory.anonymous(4096, { private: true })
  typeError(() => Semaphore.init(priv, 0), 'ERR_INVALID_ARG_VALUE')
  using readOnly = SharedMemory.open(shmName, { readOnly: true })
  typeError(() => Semaphore.at(readOnly, 0), 'ERR_INVALID_ARG_VALUE')
})

test('after close every use throws ERR_SHM_CLOSED; close is idempotent; dispose is close', async (t) => {
  const sem = Semaphore.create(uniqueSemName(t), { initial: 1 })
  t.is(typeof (sem as unknown as Record<symbol, unknown>)[Symbol.dispose], 'function')
  t.false(sem.closed)
  sem[Symbol.dispose]()
  t.true(sem.closed)
  sem.close()
  for (const use of [
    () => sem.post(),
    () => sem.tryWait(),
    () => sem.waitSync({ timeout: 0 }),
    () => sem.value,
    () => sem.unlink(),
    () => sem.destroy(),
    () => sem.wait(),
  ]) {
    t.like(t.throws(use), { code: 'ERR_SHM_CLOSED' })
  }
  t.is(sem.name?.length, 15, 'the name stays readable')
})

test('waitSync returns false when the timeout runs out, true when it takes one', (t) => {
  using sem = Semaphore.create(uniqueSemName(t))
  t.false(sem.waitSync({ timeout: 0 }))
  t.false(sem.waitSync({ timeout: 20 }))
  t.false(sem.waitSync({ timeout: 0.5 }))
  sem.post()
  t.true(sem.waitSync({ timeout: 0 }))
  sem.post()
  t.true(sem.waitSync({ timeout: Infinity }))
  sem.post()
  t.true(sem.waitSync({}))
})

test('in-region: init and at share one semaphore, which outlives the SharedMemory handle', (t) => {
  const shm = SharedMemory.anonymous(4096)
  const sem = Semaphore.init(shm, 64, 1)
  t.is(sem.offset, 64)
  t.is(sem.name, null)
  const same = Semaphore.at(shm, 64)
  t.true(same.tryWait())
  t.false(sem.tryWait(), 'one semaphore, two handles')
  shm.close()
  t.throws(() => Semaphore.at(shm, 64), { code: 'ERR_SHM_CLOSED' })
  // The semaphores keep the mapping: using them after the region's close is fine.
  sem.post()
  t.is(same.value, 1)
  t.true(same.waitSync({ timeout: 1000 }))
  t.like(
    t.throws(() => sem.unlink()),
    { code: 'ERR_SHM_UNSUPPORTED' },
  )
  same.close()
  sem.destroy()
  t.true(sem.closed)
  using named = Semaphore.create(uniqueSemName(t))
  t.like(
    t.throws(() => named.destroy()),
    { code: 'ERR_SHM_UNSUPPORTED' },
  )
  t.false(named.closed)
})

test('in-region: damaged bytes make operations throw EINVAL, never abort the process', (t) => {
  using shm = SharedMemory.anonymous(4096)
  t.like(
    t.throws(() => Semaphore.at(shm, 0)),
    { code: 'EINVAL', syscall: 'sem_init' },
    'zeroes hold no semaphore',
  )
  using sem = Semaphore.init(shm, 0, 0)
  new Uint8Array(shm.buffer, 0, Semaphore.SIZE).fill(0xff)
  t.like(
    t.throws(() => sem.post()),
    { code: 'EINVAL', syscall: 'sem_post' },
  )
  t.like(
    t.throws(() => sem.waitSync({ timeout: 10 })),
    { code: 'EINVAL', syscall: 'sem_timedwait' },
  )
  t.like(
    t.throws(() => sem.tryWait()),
    { code: 'EINVAL', syscall: 'sem_trywait' },
  )
  using again = Semaphore.init(shm, 0, 1)
  t.true(again.tryWait(), 'initialising again repairs it')
})

test('wait resolves true at once when a permit is there, and FIFO when it is not', async (t) => {
  using sem = Semaphore.create(uniqueSemName(t), { initial: 1 })
  t.true(await sem.wait())
  const order: number[] = []
  const waits = [0, 1, 2, 3, 4].map((i) => sem.wait().then((took) => (order.push(i), took)))
  for (let i = 0; i < 5; i++) {
    sem.post()
    // Wait for exactly one more to settle before posting again.
    await within(
      (async () => {
        while (order.length <= i) await new Promise((r) => setTimeout(r, 5))
      })(),
      30_000,
      `wait ${i}`,
    )
  }
  t.deepEqual(await Promise.all(waits), [true, true, true, true, true])
  t.deepEqual(order, [0, 1, 2, 3, 4])
  t.is(sem.value, 0)
})

test('an AbortSignal rejects a pending wait with ABORT_ERR, and its listener is removed after', async (t) => {
  using sem = Semaphore.create(uniqueSemName(t))
  const controller = new AbortController()
  const pending = outcome(sem.wait({ signal: controller.signal }))
  t.is(getEventListeners(controller.signal, 'abort').length, 1)
  const reason = new Error('stop')
  controller.abort(reason)
  const { error } = (await within(pending, 30_000, 'the aborted wait')) as { error: NodeJS.ErrnoException }
  t.is(error.code, 'ABORT_ERR')
  t.is(error.name, 'AbortError')
  t.is(error.cause, reason)
  t.true(error instanceof Error)

  // Already aborted: rejects without waiting.
  const early = await outcome(sem.wait({ signal: AbortSignal.abort('no') }))
  t.like(early, { error: { code: 'ABORT_ERR', cause: 'no' } })

  // A wait that got its permit removes its listener, so one long-lived signal does not
  // collect listeners.
  const shared = new AbortController()
  const waits = [sem.wait({ signal: shared.signal }), sem.wait({ signal: shared.signal })]
  t.is(getEventListeners(shared.signal, 'abort').length, 2)
  sem.post()
  sem.post()
  t.deepEqual(await within(Promise.all(waits), 30_000, 'two waits'), [true, true])
  t.is(getEventListeners(shared.signal, 'abort').length, 0)
  const timed = sem.wait({ signal: shared.signal, timeout: 10 })
  t.false(await within(timed, 30_000, 'the timed wait'))
  t.is(getEventListeners(shared.signal, 'abort').length, 0)
})

test('a timed wait that expires resolves false; timeout 0 only tries', async (t) => {
  using sem = Semaphore.create(uniqueSemName(t))
  t.false(await within(sem.wait({ timeout: 30 }), 30_000, 'the timed wait'))
  t.false(await sem.wait({ timeout: 0 }))
  sem.post()
  t.true(await sem.wait({ timeout: 0 }))
  const long = sem.wait({ timeout: 60_000 })
  t.false(await sem.wait({ timeout: 0 }), 'timeout 0 does not jump the queue')
  sem.post()
  t.true(await within(long, 30_000, 'the long wait'))
  t.is(sem.value, 0)
})

test('permits are never lost when waits are aborted, time out or are closed', async (t) => {
  const name = uniqueSemName(t)
  using sem = Semaphore.create(name)
  const controllers = Array.from({ length: 20 }, () => new AbortController())
  const waits = controllers.map((c, i) =>
    outcome(sem.wait({ signal: c.signal, timeout: i % 5 === 0 ? 20 : undefined })),
  )
  // Abort every other wait while posts arrive.
  for (let i = 0; i < 20; i++) {
    if (i % 2 === 1) controllers[i].abort()
  }
  for (let i = 0; i < 10; i++) sem.post()
  const results = await within(Promise.all(waits), 60_000, 'the waits')
  const took = results.filter((r) => 'value' in r && r.value === true).length
  const aborted = results.filter((r) => 'error' in r && r.error.code === 'ABORT_ERR').length
  const timedOut = results.filter((r) => 'value' in r && r.value === false).length
  t.is(took + aborted + timedOut, 20)
  t.is(aborted, 10)
  // 10 posts: every permit went to a wait or is still in the semaphore.
  t.is(took + sem.value, 10)

  // Close with waits pending: they reject, and a permit that arrives afterwards stays in
  // the semaphore (the closed handle's dispatcher gives back anything it takes).
  const second = uniqueSemName(t)
  using kept = Semaphore.create(second)
  using other = Semaphore.open(second)
  const pending = [outcome(other.wait()), outcome(other.wait())]
  other.close()
  for (const r of await Promise.all(pending)) t.like(r, { error: { code: 'ERR_SHM_CLOSED' } })
  kept.post()
  await within(
    (async () => {
      while (kept.value !== 1) await new Promise((r) => setTimeout(r, 10))
    })(),
    30_000,
    'the permit coming back',
  )
  t.is(kept.value, 1)
})

test('a wait on an in-region semaphore keeps working after the SharedMemory is closed', async (t) => {
  const shm = SharedMemory.memfd(4096)
  const sem = Semaphore.init(shm, 0, 0)
  const pending = sem.wait()
  shm.close()
  sem.post()
  t.true(await within(pending, 30_000, 'the wait'))
  sem.close()
})

test('create/close cycles of named semaphores leave mappings and /dev/shm unchanged', async (t) => {
  const name = uniqueSemName(t)
  for (let i = 0; i < 10; i++) {
    Semaphore.create(name).close()
    Semaphore.unlink(name)
  }
  await turn()
  const maps = mappingCount()
  for (let i = 0; i < 2000; i++) {
    const sem = Semaphore.create(name, { initial: 1 })
    sem.tryWait()
    sem.close()
    Semaphore.unlink(name)
  }
  await turn()
  t.true(mappingCount() <= maps + 32, `/proc/self/maps lines: ${maps} before, ${mappingCount()} after`)
  t.false(existsSync(semaphoreFile(name)))
})

test('Semaphore.initIn is a deprecated alias of Semaphore.init that warns once', (t) => {
  const script = `
    const { Semaphore, SharedMemory } = require(${JSON.stringify(fileURLToPath(new URL('../index.js', import.meta.url)))})
    const warnings = []
    process.on('warning', (w) => warnings.push({ name: w.name, code: w.code }))
    const shm = SharedMemory.anonymous(4096)
    const a = Semaphore.initIn(shm, 0, 2)
    const b = Semaphore.initIn(shm, 64, 0)
    const seen = [a.value, b.value, Semaphore.at(shm, 0).value]
    setImmediate(() => console.log(JSON.stringify({ seen, warnings })))
  `
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8' }))
  t.deepEqual(out.seen, [2, 0, 2], 'the alias makes the same semaphore as init')
  t.deepEqual(out.warnings, [{ name: 'DeprecationWarning', code: 'SHMKIT_DEP_INIT_IN' }])
})

test('sizes are static members (Semaphore.SIZE, .ALIGN, .VALUE_MAX); the old constants are aliases', (t) => {
  t.true(Number.isInteger(Semaphore.SIZE) && Semaphore.SIZE >= 16, `Semaphore.SIZE is ${Semaphore.SIZE}`)
  t.true([4, 8, 16].includes(Semaphore.ALIGN), `Semaphore.ALIGN is ${Semaphore.ALIGN}`)
  t.true(Semaphore.VALUE_MAX >= 32767, `Semaphore.VALUE_MAX is ${Semaphore.VALUE_MAX}`)
  t.is(SEMAPHORE_SIZE, Semaphore.SIZE)
  t.is(SEMAPHORE_ALIGNMENT, Semaphore.ALIGN)
  t.is(SEMAPHORE_VALUE_MAX, Semaphore.VALUE_MAX)
  t.throws(
    () => {
      ;(Semaphore as unknown as { SIZE: number }).SIZE = 1
    },
    { instanceOf: TypeError },
    'read-only',
  )
  t.is(Semaphore.SIZE, SEMAPHORE_SIZE)
})
