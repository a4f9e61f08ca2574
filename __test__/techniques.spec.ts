// The three seed techniques and the fd-backed region, one by one.
import { closeSync, readFileSync } from 'node:fs'

import anyTest from 'ava'

import { SharedMemory } from '../index.js'
import { fixture, runNode, guardTitles, platform } from './helpers.js'

const test = guardTitles(anyTest, [{ ok: platform.linux, need: 'Linux (/dev/zero)', titles: ['devZero:'] }])

test('anonymous: zeroed, sized, nameless, shared by default and private on request', (t) => {
  using shm = SharedMemory.anonymous(10_000)
  t.is(shm.kind, 'anonymous')
  t.is(shm.size, 10_000)
  t.is(shm.name, null)
  t.is(shm.fd, null)
  t.false(shm.private)
  using priv = SharedMemory.anonymous(64, { private: true })
  t.true(priv.private)
})

test('devZero: zeroed, sized, nameless', (t) => {
  using shm = SharedMemory.devZero(5)
  t.is(shm.kind, 'devZero')
  t.is(shm.size, 5)
  t.deepEqual([...new Uint8Array(shm.buffer)], [0, 0, 0, 0, 0])
  using priv = SharedMemory.devZero(64, { private: true })
  t.true(priv.private)
})

test('a 4 GiB region maps, and its last byte is writable', (t) => {
  using shm = SharedMemory.anonymous(2 ** 32) // 4 GiB
  t.is(shm.size, 2 ** 32)
  const view = new Uint8Array(shm.buffer)
  view[2 ** 32 - 1] = 1
  t.is(view[2 ** 32 - 1], 1)
})

/** This process's resident shared memory in bytes (`RssShmem` of /proc/self/status). */
function residentShared(): number {
  const line = readFileSync('/proc/self/status', 'utf8').match(/^RssShmem:\s+(\d+) kB$/m)
  if (!line) throw new Error('/proc/self/status has no RssShmem line')
  return Number(line[1]) * 1024
}

const onLinux = process.platform === 'linux' ? test.serial : test.serial.skip
if (process.platform !== 'linux')
  console.log('techniques: no /proc/self/status here to measure resident memory; skipping')

// Serial: no other test of this file maps memory meanwhile. The bounds are loose on purpose
// (other mappings of this process may move by a few pages); 4 GiB resident would be 65536x more.
onLinux('a 4 GiB region is not resident until touched, and then only the touched page is', (t) => {
  const before = residentShared()
  using shm = SharedMemory.anonymous(2 ** 32)
  const view = new Uint8Array(shm.buffer)
  const mapped = residentShared()
  view[2 ** 31] = 1
  const touched = residentShared()
  t.log(`RssShmem: ${before} before, ${mapped} after mapping 4 GiB, ${touched} after touching one byte`)
  t.true(mapped - before < 16 * 2 ** 20, `mapping made ${mapped - before} bytes resident`)
  t.true(touched - mapped >= 4096, 'the touched page is resident')
  t.true(touched - mapped < 16 * 2 ** 20, `touching one byte made ${touched - mapped} bytes resident`)
})

test("memfd: a spawned child maps the inherited fd and both see each other's writes", async (t) => {
  using shm = SharedMemory.memfd(4096)
  t.is(shm.kind, 'memfd')
  const fd = shm.fd! // a duplicate we own
  t.is(typeof fd, 'number')
  t.teardown(() => closeSync(fd))
  new Uint8Array(shm.buffer).set(Buffer.from('from parent'))
  const ran = await runNode(fixture('fd-peer.mjs'), ['3'], { stdio: ['ignore', 'pipe', 'pipe', fd] })
  t.is(ran.code, 0, ran.stderr)
  t.is(ran.stdout.trim(), 'from parent')
  t.is(Buffer.from(shm.buffer, 100, 10).toString(), 'from child')
})
