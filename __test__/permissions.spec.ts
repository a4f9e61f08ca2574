// Nobody else gets in: default 0600 objects refuse other users; explicit modes are exact.
import { statSync } from 'node:fs'

import test from 'ava'

import { Semaphore, SharedMemory } from '../index.js'
import { fixture, runNode, uniqueName, uniqueSemName } from './helpers.js'

const nobody = 65534
const asRoot = process.getuid?.() === 0

// Dropping to another uid needs root; without it the platform cannot run this check.
const asOtherUser = asRoot ? test : test.skip
if (!asRoot) console.log('permissions: not running as root, so another user cannot be simulated; skipping those checks')

asOtherUser('a default 0600 segment cannot be opened by another user (EACCES)', async (t) => {
  const name = uniqueName(t)
  using _shm = SharedMemory.create(name, 4096)
  for (const mode of ['rw', 'ro']) {
    const ran = await runNode(fixture('try-open.mjs'), [name, mode], { uid: nobody, gid: nobody })
    t.is(ran.stdout.trim(), 'err EACCES', ran.stderr)
  }
})

asOtherUser('an explicit mode is applied exactly and lets the other user in', async (t) => {
  const name = uniqueName(t)
  using _shm = SharedMemory.create(name, 4096, { mode: 0o604 })
  t.is(statSync(`/dev/shm/${name}`).mode & 0o777, 0o604)
  const ro = await runNode(fixture('try-open.mjs'), [name, 'ro'], { uid: nobody, gid: nobody })
  t.is(ro.stdout.trim(), 'ok 4096', ro.stderr)
  const rw = await runNode(fixture('try-open.mjs'), [name, 'rw'], { uid: nobody, gid: nobody })
  t.is(rw.stdout.trim(), 'err EACCES', 'read permission only')
})

asOtherUser('a default 0600 named semaphore cannot be opened by another user (EACCES)', async (t) => {
  const name = uniqueSemName(t)
  using _sem = Semaphore.create(name, { initial: 2 })
  t.is(statSync(`/dev/shm/sem.${name}`).mode & 0o777, 0o600)
  const denied = await runNode(fixture('try-open-sem.mjs'), [name], { uid: nobody, gid: nobody })
  t.is(denied.stdout.trim(), 'err EACCES', denied.stderr)
  const other = uniqueSemName(t)
  using _open = Semaphore.create(other, { initial: 3, mode: 0o666 })
  const allowed = await runNode(fixture('try-open-sem.mjs'), [other], { uid: nobody, gid: nobody })
  t.is(allowed.stdout.trim(), 'ok 3', allowed.stderr)
})

test('modes are exact regardless of the umask, and opening never changes mode or size', (t) => {
  const previous = process.umask(0o077)
  try {
    for (const mode of [0o600, 0o640, 0o666, 0o644, 0o400]) {
      const name = uniqueName(t)
      using shm = SharedMemory.create(name, 1000, { mode })
      t.is(statSync(`/dev/shm/${name}`).mode & 0o777, mode)
      if (mode & 0o400) {
        using again = SharedMemory.openOrCreate(name, 99_999, { mode: 0o600 })
        t.is(again.size, 1000)
      }
      t.is(statSync(`/dev/shm/${name}`).mode & 0o777, mode, 'unchanged by opening')
      t.is(statSync(`/dev/shm/${name}`).size, shm.size, 'size unchanged by opening')
    }
  } finally {
    process.umask(previous)
  }
})
