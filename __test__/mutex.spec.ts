// Robust process-shared mutexes: a holder killed mid-update is reported to the next locker.
import { spawn } from 'node:child_process'
import { once } from 'node:events'

import test from 'ava'

import { ROBUST_MUTEX_SIZE, RobustMutex, SharedMemory } from '../index.js'
import { fixture, uniqueName } from './helpers.js'

async function holderKilledWhileLocked(t: import('ava').ExecutionContext, name: string, offset: number) {
  const child = spawn(process.execPath, [fixture('mutex-holder.mjs'), name, String(offset)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.teardown(() => child.kill('SIGKILL'))
  const [line] = (await Promise.race([
    once(child.stdout!, 'data'),
    new Promise((_, reject) => setTimeout(() => reject(new Error('holder never locked')), 60_000)),
  ])) as [Buffer]
  t.is(line.toString().trim(), 'locked false')
  child.kill('SIGKILL')
  const [, signal] = await once(child, 'exit')
  t.is(signal, 'SIGKILL')
}

test('a holder killed by SIGKILL is reported as ownerDied, and the state can be repaired', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  using mutex = RobustMutex.init(shm, 0)
  t.is(mutex.offset, 0)
  t.true(ROBUST_MUTEX_SIZE >= 24)

  await holderKilledWhileLocked(t, name, 0)

  t.is(mutex.tryLock()?.ownerDied, true, 'the next locker is told, and holds the lock')
  const record = new Int32Array(shm.buffer)
  t.is(record[64], 111, 'the half-written record is visible for repair')
  record[64] = 0
  mutex.markConsistent()
  mutex.unlock()
  t.deepEqual(mutex.lockSync({ timeout: 10_000 }), { ownerDied: false }, 'back to normal')
  mutex.unlock()
})

test('unlocking after ownerDied without markConsistent makes the mutex unrecoverable', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  using mutex = RobustMutex.init(shm, 128)
  await holderKilledWhileLocked(t, name, 128)
  t.true(mutex.lockSync().ownerDied)
  mutex.unlock()
  t.like(
    t.throws(() => mutex.lockSync()),
    { code: 'ENOTRECOVERABLE', syscall: 'pthread_mutex_lock' },
  )
})

test('misuse is an error, never a hang or a crash', (t) => {
  using shm = SharedMemory.anonymous(4096)
  using mutex = RobustMutex.init(shm, 8)
  t.like(
    t.throws(() => mutex.unlock()),
    { code: 'EPERM' },
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

test('a timed lock gives up with ETIMEDOUT while another process holds it', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  using mutex = RobustMutex.init(shm, 0)
  const child = spawn(process.execPath, [fixture('mutex-holder.mjs'), name, '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.teardown(() => child.kill('SIGKILL'))
  await once(child.stdout!, 'data')
  t.like(
    t.throws(() => mutex.lockSync({ timeout: 20 })),
    { code: 'ETIMEDOUT' },
  )
  child.kill('SIGKILL')
  await once(child, 'exit')
  t.true(mutex.lockSync({ timeout: 30_000 }).ownerDied)
  mutex.markConsistent()
  mutex.unlock()
})
