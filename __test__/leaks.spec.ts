// Nothing leaks: 10,000 create/close cycles leave descriptors, mappings and /dev/shm where
// they started.
import anyTest from 'ava'

import { SharedMemory } from '../index.js'
import {
  fdTargets,
  mappingCount,
  newFds,
  sharedMappingCount,
  shmEntries,
  turn,
  uniqueName,
  linuxOnly,
} from './helpers.js'

const test = linuxOnly(anyTest, '/proc/self and /dev/shm')

const cycles = 10_000
// V8 grows its own heap while the loop allocates handles, which adds anonymous mappings that
// are not ours (a few dozen, more on a loaded machine); a leak would add one per cycle (10,000).
const heapSlack = cycles / 10

const techniques: Record<string, (t: import('ava').ExecutionContext, i: number) => SharedMemory> = {
  anonymous: () => SharedMemory.anonymous(4096),
  devZero: () => SharedMemory.devZero(4096),
  memfd: () => SharedMemory.memfd(4096),
  named: (t, i) => {
    const shm = SharedMemory.create(`${prefixOf(t)}${i}`, 4096)
    shm.unlink()
    return shm
  },
}

// One random prefix per test, so /dev/shm can be checked for our names only (other test
// files run at the same time and create their own).
const prefixes = new WeakMap<object, string>()
function prefixOf(t: import('ava').ExecutionContext): string {
  let prefix = prefixes.get(t)
  if (!prefix) {
    prefix = uniqueName(t, 'l').slice(0, 9)
    prefixes.set(t, prefix)
  }
  return prefix
}
const ours = (t: import('ava').ExecutionContext) => shmEntries().filter((e) => e.startsWith(prefixOf(t))).length

for (const [kind, make] of Object.entries(techniques)) {
  test.serial(`${kind}: ${cycles} create/close cycles leave fds, mappings and /dev/shm unchanged`, async (t) => {
    // Warm up once so lazily created runtime state is not counted as a leak.
    for (let i = 0; i < 10; i++) make(t, i).close()
    await turn()
    const fds = fdTargets()
    const maps = mappingCount()
    const shared = sharedMappingCount()
    const entries = ours(t)
    for (let i = 0; i < cycles; i++) {
      const shm = make(t, i)
      new Uint8Array(shm.buffer)[i % 4096] = 1
      shm.close()
    }
    await turn()
    // Fewer is not a leak: the runtime may close one of its own descriptors meanwhile.
    t.deepEqual(newFds(fds), [], 'descriptors opened and not closed')
    t.is(sharedMappingCount(), shared, 'shared-memory lines of /proc/self/maps')
    t.true(mappingCount() <= maps + heapSlack, `/proc/self/maps lines: ${maps} before, ${mappingCount()} after`)
    t.is(ours(t), entries, '/dev/shm entries')
    t.is(entries, 0)
  })
}

test.serial(`named: ${cycles} open/close cycles of one segment leave everything unchanged`, async (t) => {
  const name = uniqueName(t)
  using owner = SharedMemory.create(name, 1 << 20)
  new Uint8Array(owner.buffer)[0] = 1
  SharedMemory.open(name).close()
  const fds = fdTargets()
  const maps = mappingCount()
  const shared = sharedMappingCount()
  for (let i = 0; i < cycles; i++) {
    const shm = SharedMemory.open(name)
    if (new Uint8Array(shm.buffer)[0] !== 1) t.fail('wrong data')
    shm.close()
  }
  await turn()
  t.deepEqual(newFds(fds), [], 'descriptors opened and not closed')
  t.is(sharedMappingCount(), shared)
  t.true(mappingCount() <= maps + heapSlack)
})
