// Nobody else gets in: default 0600 objects refuse other users; explicit modes are exact.
import { statSync } from 'node:fs'

import anyTest from 'ava'

import { Semaphore, SharedMemory } from '../index.js'
import { linuxOnly, runNodeAs, segmentFile, semaphoreFile, uniqueName, uniqueSemName } from './helpers.js'

const test = linuxOnly(anyTest, 'file modes and owners in /dev/shm')

const nobody = 65534
const asRoot = process.getuid?.() === 0

// Dropping to another uid needs root; without it the platform cannot run this check.
const asOtherUser = asRoot ? test : test.skip
if (!asRoot) console.log('permissions: not running as root, so another user cannot be simulated; skipping those checks')

asOtherUser('a default 0600 segment cannot be opened by another user (EACCES)', async (t) => {
  const name = uniqueName(t)
  using _shm = SharedMemory.create(name, 4096)
  for (const mode of ['rw', 'ro']) {
    const ran = await runNodeAs(t, 'try-open.mjs', [name, mode], { uid: nobody, gid: nobody })
    t.is(ran.stdout.trim(), 'err EACCES', ran.stderr)
  }
})

asOtherUser('an explicit mode is applied exactly and lets the other user in', async (t) => {
  const name = uniqueName(t)
  using _shm = SharedMemory.create(name, 4096, { mode: 0o604 })
  t.is(statSync(segmentFile(name)).mode & 0o777, 0o604)
  // The other user must also say it accepts an object of ours (see the squatting tests).
  const ours = String(process.getuid!())
  const refused = await runNodeAs(t, 'try-open.mjs', [name, 'ro'], { uid: nobody, gid: nobody })
  t.is(refused.stdout.trim(), 'err ERR_SHM_FOREIGN_OWNER', refused.stderr)
  const ro = await runNodeAs(t, 'try-open.mjs', [name, 'ro', ours], { uid: nobody, gid: nobody })
  t.is(ro.stdout.trim(), 'ok 4096', ro.stderr)
  const rw = await runNodeAs(t, 'try-open.mjs', [name, 'rw', ours], { uid: nobody, gid: nobody })
  t.is(rw.stdout.trim(), 'err EACCES', 'read permission only')
})

asOtherUser('a default 0600 named semaphore cannot be opened by another user (EACCES)', async (t) => {
  const name = uniqueSemName(t)
  using _sem = Semaphore.create(name, { initial: 2 })
  t.is(statSync(semaphoreFile(name)).mode & 0o777, 0o600)
  const denied = await runNodeAs(t, 'try-open-sem.mjs', [name], { uid: nobody, gid: nobody })
  t.is(denied.stdout.trim(), 'err EACCES', denied.stderr)
  const other = uniqueSemName(t)
  using _open = Semaphore.create(other, { initial: 3, mode: 0o666 })
  const allowed = await runNodeAs(t, 'try-open-sem.mjs', [other, 'any'], { uid: nobody, gid: nobody })
  t.is(allowed.stdout.trim(), 'ok 3', allowed.stderr)
})

asOtherUser(
  'squatting: objects another user made first (mode 0666) are refused unless their owner is accepted',
  async (t) => {
    const shmName = uniqueName(t)
    const semName = uniqueSemName(t)
    t.teardown(() => {
      for (const unlink of [() => SharedMemory.unlink(shmName), () => Semaphore.unlink(semName)]) {
        try {
          unlink()
        } catch {
          // already gone
        }
      }
    })
    const squat = await runNodeAs(t, 'squat.mjs', [shmName, semName], { uid: nobody, gid: nobody })
    t.is(squat.stdout.trim(), 'squatted', squat.stderr)
    t.is(statSync(segmentFile(shmName)).uid, nobody)

    for (const open of [
      (options?: object) => SharedMemory.open(shmName, options),
      (options?: object) => SharedMemory.openOrCreate(shmName, 4096, options),
      (options?: object) => Semaphore.open(semName, options),
      (options?: object) => Semaphore.openOrCreate(semName, options),
    ]) {
      const error = t.throws(() => open(), { code: 'ERR_SHM_FOREIGN_OWNER' }) as Error & { owner: number }
      t.is(error.owner, nobody)
      t.regex(error.message, /owned by uid 65534/)
      t.throws(() => open({ owner: 12345 }), { code: 'ERR_SHM_FOREIGN_OWNER' })
      for (const owner of [nobody, 'any']) {
        const handle = open({ owner })
        t.false(handle.closed)
        handle.close()
      }
    }
    // Refusing never removed the other user's objects.
    t.is(statSync(segmentFile(shmName)).uid, nobody)
    t.is(statSync(semaphoreFile(semName)).uid, nobody)
  },
)

test('the owner option is checked like other arguments', (t) => {
  const cases: [unknown, string][] = [
    ['me', 'ERR_INVALID_ARG_VALUE'],
    [-1, 'ERR_OUT_OF_RANGE'],
    [1.5, 'ERR_OUT_OF_RANGE'],
    [2 ** 32, 'ERR_OUT_OF_RANGE'],
    [true, 'ERR_INVALID_ARG_TYPE'],
  ]
  for (const [owner, code] of cases) {
    t.throws(() => SharedMemory.open('whatever', { owner: owner as never }), { code })
    t.throws(() => SharedMemory.openOrCreate('whatever', 1, { owner: owner as never }), { code })
    t.throws(() => Semaphore.open('whatever', { owner: owner as never }), { code })
  }
})

test('modes are exact regardless of the umask, and opening never changes mode or size', (t) => {
  const previous = process.umask(0o077)
  try {
    for (const mode of [0o600, 0o640, 0o666, 0o644, 0o400]) {
      const name = uniqueName(t)
      using shm = SharedMemory.create(name, 1000, { mode })
      t.is(statSync(segmentFile(name)).mode & 0o777, mode)
      if (mode & 0o400) {
        using again = SharedMemory.openOrCreate(name, 99_999, { mode: 0o600 })
        t.is(again.size, 1000)
      }
      t.is(statSync(segmentFile(name)).mode & 0o777, mode, 'unchanged by opening')
      t.is(statSync(segmentFile(name)).size, shm.size, 'size unchanged by opening')
    }
  } finally {
    process.umask(previous)
  }
})
