// Robust process-shared mutexes: a holder that dies (killed, its worker terminated) is reported
// to the next locker, handles never unlock, and misuse is a typed error.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

import anyTest, { type ExecutionContext } from 'ava'

import { ROBUST_MUTEX_SIZE, RobustMutex, SharedMemory } from '../index.js'
import { fixture, runNode, uniqueName, guardTitles, platform } from './helpers.js'

const test = guardTitles(anyTest, [
  {
    ok: platform.mappingPerHandle,
    need: "a mapping of its own per handle (Linux's duplicating mremap; not macOS, not qemu-user)",
    titles: ['a mutex keeps its region mapped after the SharedMemory handle closes'],
  },
])

/**
 * Starts `mutex-peer.mjs <mode> <name> <offset>` and resolves once it says "locked"; `release()`
 * tells it to die (or terminate its worker), noting the time at byte 1024.
 */
async function holder(t: ExecutionContext, mode: string, name: string, offset: number) {
  const child = spawn(process.execPath, [fixture('mutex-peer.mjs'), mode, name, String(offset)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  t.teardown(() => child.kill('SIGKILL'))
  let out = ''
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
  const deadline = Date.now() + 60_000
  while (!out.includes('locked\n')) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`holder ended: ${out}`)
    if (Date.now() > deadline) throw new Error('holder never locked')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
  return { child, output: () => out, release: () => child.stdin!.write('go\n') }
}

/** Milliseconds from the moment the holder noted (byte 1024) to now, on the monotonic clock. */
function msSinceNoted(shm: SharedMemory): number {
  return Number(process.hrtime.bigint() - new BigInt64Array(shm.buffer, 1024, 1)[0]) / 1e6
}

// Serial: lockSync blocks this process's event loop, and the delays are measured.
test.serial(
  'a holder killed by SIGKILL is reported as ownerDied to a blocked locker, and the state can be repaired',
  async (t) => {
    const name = uniqueName(t)
    using shm = SharedMemory.create(name, 4096)
    using mutex = RobustMutex.init(shm, 0)
    t.is(mutex.offset, 0)
    t.is(RobustMutex.SIZE, 32)
    t.is(ROBUST_MUTEX_SIZE, RobustMutex.SIZE, 'the deprecated alias')

    const { child, release } = await holder(t, 'hold-sigkill', name, 0)
    t.is(mutex.tryLock(), null, 'held by the child')
    release()
    // Blocks until the child has killed itself and its death is noticed.
    t.deepEqual(mutex.lockSync({ timeout: 30_000 }), { ownerDied: true })
    const ms = msSinceNoted(shm)
    t.log(`owner death (SIGKILL) reported after ${ms.toFixed(1)} ms`)
    t.true(mutex.held)
    const record = new Int32Array(shm.buffer)
    t.is(record[64], 111, 'the half-written record is visible for repair')
    record[64] = 0
    mutex.markConsistent()
    mutex.unlock()
    t.false(mutex.held)
    t.deepEqual(mutex.lockSync({ timeout: 10_000 }), { ownerDied: false }, 'back to normal')
    mutex.unlock()
    const [, signal] =
      child.exitCode === null && child.signalCode === null ? await once(child, 'exit') : [0, child.signalCode]
    t.is(signal, 'SIGKILL')
  },
)

test.serial('a worker terminated while holding is reported as ownerDied while its process lives on', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  using mutex = RobustMutex.init(shm, 64)
  const { child, output, release } = await holder(t, 'hold-worker', name, 64)
  t.is(mutex.tryLock(), null, 'held by the worker')
  release()
  t.deepEqual(mutex.lockSync({ timeout: 30_000 }), { ownerDied: true })
  const ms = msSinceNoted(shm)
  t.log(`owner death (worker.terminate()) reported after ${ms.toFixed(1)} ms`)
  t.is(child.exitCode, null, 'the worker’s process is still running')
  mutex.markConsistent()
  mutex.unlock()
  const deadline = Date.now() + 30_000
  while (!output().includes('terminated') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
  t.true(output().includes('terminated'))
})

test('closing and collecting other handles of a held mutex leaves it locked', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  const a = RobustMutex.init(shm, 0)
  t.deepEqual(a.lockSync(), { ownerDied: false })
  RobustMutex.at(shm, 0).close()
  const b = RobustMutex.at(shm, 0)
  b[Symbol.dispose]()
  t.true(b.closed)
  ;(() => {
    for (let i = 0; i < 100; i++) RobustMutex.at(shm, 0)
  })()
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  for (let i = 0; i < 3; i++) gc()
  await new Promise((resolve) => setImmediate(resolve))

  const peer = await runNode(fixture('mutex-peer.mjs'), ['try', name, '0'])
  t.is(peer.code, 0, peer.stderr)
  t.is(peer.stdout.trim(), 'null', 'another process still finds it locked')
  t.true(a.held)
  a.close()
  t.like(
    t.throws(() => a.unlock()),
    { code: 'ERR_SHM_CLOSED' },
  )
  const c = RobustMutex.at(shm, 0)
  t.true(c.held, 'still held by this thread after its handle closed')
  c.unlock()
  const again = await runNode(fixture('mutex-peer.mjs'), ['try', name, '0'])
  t.is(again.stdout.trim(), '{"ownerDied":false}')
})

test('unlocking after ownerDied without markConsistent makes the mutex unrecoverable', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  using mutex = RobustMutex.init(shm, 128)
  const { child, release } = await holder(t, 'hold-sigkill', name, 128)
  const exited = once(child, 'exit')
  release()
  await exited
  t.true(mutex.lockSync()?.ownerDied)
  mutex.unlock()
  for (const attempt of [() => mutex.lockSync(), () => mutex.lockSync({ timeout: 10 }), () => mutex.tryLock()]) {
    t.like(t.throws(attempt), { code: 'ENOTRECOVERABLE' })
  }
  RobustMutex.init(shm, 128) // a new mutex in the same bytes
  t.deepEqual(mutex.tryLock(), { ownerDied: false })
  mutex.unlock()
})

test('misuse is an error, never a hang or a crash', (t) => {
  using shm = SharedMemory.anonymous(4096)
  using mutex = RobustMutex.init(shm, 8)
  t.like(
    t.throws(() => mutex.unlock()),
    { code: 'EPERM' },
  )
  t.like(
    t.throws(() => mutex.markConsistent()),
    { code: 'EPERM' },
    'only the holder repairs',
  )
  t.deepEqual(mutex.lockSync(), { ownerDied: false })
  t.like(
    t.throws(() => mutex.lockSync()),
    { code: 'EDEADLK' },
  )
  t.like(
    t.throws(() => mutex.tryLock()),
    { code: 'EDEADLK' },
    'already held by this thread',
  )
  t.like(
    t.throws(() => mutex.markConsistent()),
    { code: 'EINVAL' },
    'nothing to repair',
  )
  mutex.unlock()
  t.like(
    t.throws(() => RobustMutex.init(shm, 4)),
    { code: 'ERR_OUT_OF_RANGE' },
  )
  t.like(
    t.throws(() => RobustMutex.init(shm, 4096)),
    { code: 'ERR_OUT_OF_RANGE' },
  )
  t.like(
    t.throws(() => RobustMutex.init(shm, 4096 - 24)),
    { code: 'ERR_OUT_OF_RANGE' },
  )
  t.like(
    t.throws(() => RobustMutex.init(shm, -8)),
    { code: 'ERR_OUT_OF_RANGE' },
  )
  t.like(
    t.throws(() => RobustMutex.init({} as never, 0)),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  t.like(
    t.throws(() => RobustMutex.init(mutex as never, 0)),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  t.like(
    t.throws(() => mutex.lockSync({ timeout: -1 })),
    { code: 'ERR_OUT_OF_RANGE' },
  )
  mutex.close()
  mutex.close()
  t.like(
    t.throws(() => mutex.lockSync()),
    { code: 'ERR_SHM_CLOSED' },
  )
  shm.close()
  t.like(
    t.throws(() => RobustMutex.at(shm, 0)),
    { code: 'ERR_SHM_CLOSED' },
  )
})

test('a mutex keeps its region mapped after the SharedMemory handle closes', (t) => {
  const shm = SharedMemory.anonymous(4096)
  const view = new Uint8Array(shm.buffer)
  using mutex = RobustMutex.init(shm, 0)
  shm.close()
  t.is(view.length, 4096, "the closed handle's views keep their length")
  t.deepEqual(mutex.lockSync(), { ownerDied: false })
  t.true(
    view.subarray(0, 64).every((b) => b === 0),
    'but read zeros where the held mutex has non-zero words',
  )
  mutex.unlock()
})

test.serial('a timed lockSync returns null while another process holds the lock', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  using mutex = RobustMutex.init(shm, 0)
  const { release } = await holder(t, 'hold-worker', name, 0)
  const start = performance.now()
  t.is(mutex.lockSync({ timeout: 20 }), null)
  t.log(`lockSync({ timeout: 20 }) gave up after ${(performance.now() - start).toFixed(1)} ms`)
  release()
  t.true(mutex.lockSync({ timeout: 30_000 })?.ownerDied, 'then its worker is terminated')
  mutex.markConsistent()
  mutex.unlock()
})

test.serial(
  'lock() waits without blocking the event loop and resolves ownerDied when the holder is killed',
  async (t) => {
    const name = uniqueName(t)
    using shm = SharedMemory.create(name, 4096)
    using mutex = RobustMutex.init(shm, 0)
    const { release } = await holder(t, 'hold-sigkill', name, 0)
    let ticks = 0
    const ticker = setInterval(() => ticks++, 1)
    const locking = mutex.lock({ timeout: 30_000 })
    await new Promise((resolve) => setTimeout(resolve, 50))
    release()
    const got = await locking
    const ms = msSinceNoted(shm)
    clearInterval(ticker)
    t.deepEqual(got, { ownerDied: true })
    t.log(
      `owner death (SIGKILL) reported to lock() after ${ms.toFixed(1)} ms; the event loop ticked ${ticks} times meanwhile`,
    )
    t.true(ticks > 0, 'the event loop ran while lock() waited')
    t.true(mutex.held)
    mutex.markConsistent()
    mutex.unlock()
    t.deepEqual(await mutex.lock(), { ownerDied: false }, 'a free mutex resolves at once')
    await t.throwsAsync(mutex.lock(), { code: 'EDEADLK' })
    mutex.unlock()
  },
)

test.serial(
  'lock() resolves null when its time runs out, or rejects with an AbortError without taking the lock',
  async (t) => {
    const name = uniqueName(t)
    using shm = SharedMemory.create(name, 4096)
    using mutex = RobustMutex.init(shm, 0)
    const { release } = await holder(t, 'hold-worker', name, 0)
    const start = performance.now()
    t.is(await mutex.lock({ timeout: 30 }), null)
    t.log(`lock({ timeout: 30 }) gave up after ${(performance.now() - start).toFixed(1)} ms`)
    const controller = new AbortController()
    const aborted = mutex.lock({ signal: controller.signal })
    setTimeout(() => controller.abort(), 20)
    await t.throwsAsync(aborted, { code: 'ABORT_ERR', name: 'AbortError' })
    await t.throwsAsync(mutex.lock({ signal: AbortSignal.abort() }), { code: 'ABORT_ERR' })
    t.false(mutex.held, 'an aborted lock() took nothing')
    t.throws(() => mutex.lock({ signal: {} as never }), { code: 'ERR_INVALID_ARG_TYPE' })
    t.throws(() => mutex.lock({ timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' })
    const other = RobustMutex.at(shm, 0)
    const closing = other.lock()
    other.close()
    await t.throwsAsync(closing, { code: 'ERR_SHM_CLOSED' })
    t.false(mutex.held, 'a lock() ended by close() took nothing')
    const locking = mutex.lock({ timeout: 30_000 })
    release() // its worker is terminated: the pending lock() learns of it
    t.deepEqual(await locking, { ownerDied: true })
    mutex.markConsistent()
    mutex.unlock()
  },
)
