// What a platform lacks is refused with a typed error, exactly as the README's Platforms
// section says, and what it has works: each platform runs the tests of its own answers.
import { existsSync } from 'node:fs'

import anyTest from 'ava'

import { RobustMutex, Semaphore, SharedMemory } from '../index.js'
import { fixture, guardTitles, platform, runNode, semaphoreFile, uniqueSemName } from './helpers.js'

const test = guardTitles(anyTest, [
  { ok: platform.darwin, need: 'macOS', titles: ['macOS:'] },
  { ok: platform.linux, need: 'Linux', titles: ['Linux:'] },
])

const unsupported = { code: 'ERR_SHM_UNSUPPORTED' }
const forkOnce = () => runNode(fixture('fork-once.mjs'), [], { execArgv: ['--single-threaded'], timeoutMs: 120_000 })

test('every platform: in-region semaphores and robust mutexes work', (t) => {
  using shm = SharedMemory.anonymous(4096)
  const sem = Semaphore.init(shm, 0, 2)
  t.true(sem.tryWait())
  t.true(sem.tryWait())
  t.false(sem.tryWait())
  sem.post()
  t.is(sem.value, 1)
  sem.destroy()
  const mutex = RobustMutex.init(shm, 64)
  t.deepEqual(mutex.tryLock(), { ownerDied: false })
  t.throws(() => mutex.tryLock(), { code: 'EDEADLK' }, 'error-checking: a second lock from this thread')
  mutex.unlock()
})

test('macOS: /dev/zero and list() are ERR_SHM_UNSUPPORTED', (t) => {
  t.throws(() => SharedMemory.devZero(4096), unsupported)
  t.throws(() => SharedMemory.list(), unsupported)
})

test('macOS: a named semaphore works, but its value is ERR_SHM_UNSUPPORTED', (t) => {
  using sem = Semaphore.create(uniqueSemName(t), { initial: 1 })
  t.true(sem.tryWait())
  t.false(sem.tryWait())
  t.throws(() => sem.value, unsupported)
})

test('macOS: fork() is ERR_SHM_FORK_UNSAFE, even with --single-threaded', async (t) => {
  const ran = await forkOnce()
  t.is(ran.stdout.trim(), 'err ERR_SHM_FORK_UNSAFE', ran.stderr)
})

test('Linux: /dev/zero and list() work, and a named semaphore is the file /dev/shm/sem.NAME', (t) => {
  using zero = SharedMemory.devZero(4096)
  t.is(zero.size, 4096)
  t.true(Array.isArray(SharedMemory.list({ prefix: 'no-such-prefix-' })))
  const name = uniqueSemName(t)
  using sem = Semaphore.create(name, { initial: 3 })
  t.true(existsSync(semaphoreFile(name)))
  t.is(semaphoreFile(name), `/dev/shm/sem.${name}`, 'glibc and musl alike')
  t.is(sem.value, 3)
})

test('Linux: fork() from Node works', async (t) => {
  const ran = await forkOnce()
  t.is(ran.stdout.trim(), 'ok 7', ran.stderr)
})
