// Listing named objects, and removing the unused ones only when asked.
import anyTest from 'ava'

import { SharedMemory } from '../index.js'
import { fixture, startPeer, uniqueName, linuxOnly } from './helpers.js'

const test = linuxOnly(anyTest, 'SharedMemory.list')

test('list reports size, mode, owner and use of named segments, filtered by prefix', async (t) => {
  const prefix = uniqueName(t, 'i').slice(0, 10)
  const a = SharedMemory.create(`${prefix}a`, 5000, { mode: 0o640 })
  const b = SharedMemory.create(`${prefix}b`, 100)
  t.teardown(() => {
    for (const n of ['a', 'b']) {
      try {
        SharedMemory.unlink(`${prefix}${n}`)
      } catch {}
    }
  })
  const listed = SharedMemory.list({ prefix })
  t.deepEqual(
    listed.map(({ name, kind, size, mode, uid }) => ({ name, kind, size, mode, uid })),
    [
      { name: `/${prefix}a`, kind: 'segment', size: 5000, mode: 0o640, uid: process.getuid!() },
      { name: `/${prefix}b`, kind: 'segment', size: 100, mode: 0o600, uid: process.getuid!() },
    ],
  )
  t.true(
    listed.every((o) => o.inUse === true),
    'this process maps both',
  )
  t.true(listed.every((o) => o.modifiedMs > Date.now() - 3_600_000))
  t.true(SharedMemory.list().length >= 2, 'no prefix lists everything')
  a.close()
  b.close()
  t.deepEqual(SharedMemory.list({ prefix: `${prefix}zzz` }), [])
})

test('removeUnused removes only unused names with the prefix, and only when asked', async (t) => {
  const prefix = uniqueName(t, 'r').slice(0, 10)
  const names = ['keep', 'gone', 'held'].map((n) => `${prefix}${n}`)
  t.teardown(() => {
    for (const n of names) {
      try {
        SharedMemory.unlink(n)
      } catch {}
    }
  })
  const keep = SharedMemory.create(names[0], 64) // still mapped here
  SharedMemory.create(names[1], 64).close() // left behind, as a crashed program would
  SharedMemory.create(names[2], 64).close()
  // Another process maps `held`.
  const peer = startPeer(fixture('named-peer.mjs'))
  t.teardown(() => peer.child.kill('SIGKILL'))
  t.is(await peer.ask(`open ${names[2]}`), 'ok 64')

  const wouldRemove = SharedMemory.removeUnused(prefix, { dryRun: true })
  t.deepEqual(
    wouldRemove.map((o) => o.name),
    [`/${names[1]}`],
  )
  t.is(SharedMemory.list({ prefix }).length, 3, 'a dry run removes nothing')

  const removed = SharedMemory.removeUnused(`/${prefix}`)
  t.deepEqual(
    removed.map((o) => o.name),
    [`/${names[1]}`],
  )
  t.deepEqual(
    SharedMemory.list({ prefix }).map((o) => o.name),
    [`/${names[2]}`, `/${names[0]}`],
  )
  keep.close()
  await peer.stop()
  t.deepEqual(
    SharedMemory.removeUnused(prefix).map((o) => o.name),
    [`/${names[2]}`, `/${names[0]}`],
  )
  t.deepEqual(SharedMemory.list({ prefix }), [])
})

test('cleanup refuses an empty prefix and bad arguments', (t) => {
  t.like(
    t.throws(() => SharedMemory.removeUnused('')),
    { code: 'ERR_INVALID_ARG_VALUE' },
  )
  t.like(
    t.throws(() => SharedMemory.removeUnused('/')),
    { code: 'ERR_INVALID_ARG_VALUE' },
  )
  t.like(
    t.throws(() => SharedMemory.removeUnused('a/b')),
    { code: 'ERR_INVALID_ARG_VALUE' },
  )
  t.like(
    t.throws(() => SharedMemory.removeUnused(5 as never)),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  t.like(
    t.throws(() => SharedMemory.list({ prefix: 5 } as never)),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  t.like(
    t.throws(() => SharedMemory.removeUnused('x', { dryRun: 'yes' } as never)),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
})
