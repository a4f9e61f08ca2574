// Named POSIX shared memory between two real Node processes.
import { spawnSync } from 'node:child_process'
import { statfsSync, statSync } from 'node:fs'

import anyTest from 'ava'

import { SharedMemory } from '../index.js'
import { fixture, runNode, startPeer, uniqueName, guardTitles, platform, segmentFile } from './helpers.js'

const test = guardTitles(anyTest, [
  {
    ok: platform.linux,
    need: 'Linux (reads /dev/shm)',
    titles: [
      'a process that only opens never unlinks',
      'new segments are mode 0600',
      'openOrCreate creates once',
      'a segment larger than the free space',
    ],
  },
])

test('a segment written by this process is read by another, and the other way round', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 1 << 16)
  const bytes = new Uint8Array(shm.buffer)
  bytes.set(Buffer.from('hello from parent'), 1000)
  new Float64Array(shm.buffer)[10] = Math.PI

  const peer = startPeer(fixture('named-peer.mjs'))
  t.teardown(() => peer.child.kill('SIGKILL'))
  t.is(await peer.ask(`open ${name}`), `ok ${1 << 16}`)
  t.is(await peer.ask('read 1000 17'), `ok ${Buffer.from('hello from parent').toString('hex')}`)
  t.is(await peer.ask('f64 10'), `ok ${Math.PI}`)

  t.is(await peer.ask(`write 5000 ${Buffer.from('hello from child').toString('hex')}`), 'ok ')
  t.is(Buffer.from(shm.buffer, 5000, 16).toString(), 'hello from child')
  t.is(await peer.ask('close'), 'ok ')
  t.deepEqual(await peer.stop(), { code: 0, signal: null })
})

test('a segment created by another process is opened here by name', async (t) => {
  const name = uniqueName(t)
  const peer = startPeer(fixture('named-peer.mjs'))
  t.teardown(() => peer.child.kill('SIGKILL'))
  t.is(await peer.ask(`create /${name} 4096`), 'ok 4096')
  t.is(await peer.ask(`write 0 ${Buffer.from('made elsewhere').toString('hex')}`), 'ok ')

  using shm = SharedMemory.open(name)
  t.is(shm.size, 4096)
  t.is(shm.name, `/${name}`)
  t.is(shm.kind, 'named')
  t.is(Buffer.from(shm.buffer, 0, 14).toString(), 'made elsewhere')
  new Uint8Array(shm.buffer)[100] = 0xab
  t.is(await peer.ask('read 100 1'), 'ok ab')
  await peer.stop()
})

test('a process that only opens never unlinks, even when it exits', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  const ran = await runNode(fixture('open-and-exit.mjs'), [name])
  t.is(ran.code, 0, ran.stderr)
  t.is(ran.stdout.trim(), '4096')
  t.true(statSync(segmentFile(name)).isFile(), 'the name is still there')
  using again = SharedMemory.open(name)
  t.is(again.size, shm.size)
})

test('a second create of the same name fails with EEXIST shaped like an fs error', (t) => {
  const name = uniqueName(t)
  using _first = SharedMemory.create(name, 64)
  const error = t.throws(() => SharedMemory.create(`/${name}`, 64)) as NodeJS.ErrnoException
  t.is(error.code, 'EEXIST')
  t.is(error.errno, -17)
  t.is(error.syscall, 'shm_open')
  t.is(error.path, `/${name}`)
  t.true(error instanceof Error)
})

test('opening or unlinking a missing name fails with ENOENT', (t) => {
  const name = uniqueName(t)
  const open = t.throws(() => SharedMemory.open(name)) as NodeJS.ErrnoException
  t.like(open, { code: 'ENOENT', errno: -2, syscall: 'shm_open', path: `/${name}` })
  const unlink = t.throws(() => SharedMemory.unlink(name)) as NodeJS.ErrnoException
  t.like(unlink, { code: 'ENOENT', errno: -2, syscall: 'shm_unlink', path: `/${name}` })
})

test('new segments are mode 0600 by default and an explicit mode is applied exactly', (t) => {
  const name = uniqueName(t)
  using _a = SharedMemory.create(name, 64)
  t.is(statSync(segmentFile(name)).mode & 0o777, 0o600)
  const other = uniqueName(t)
  using _b = SharedMemory.create(other, 64, { mode: 0o666 })
  t.is(statSync(segmentFile(other)).mode & 0o777, 0o666, 'not narrowed by the umask')
})

test('openOrCreate creates once, then opens without resizing or changing the mode', (t) => {
  const name = uniqueName(t)
  using a = SharedMemory.openOrCreate(name, 8192, { mode: 0o640 })
  new Uint8Array(a.buffer)[0] = 9
  using b = SharedMemory.openOrCreate(name, 10, { mode: 0o600 })
  t.is(b.size, 8192)
  t.is(new Uint8Array(b.buffer)[0], 9)
  t.is(statSync(segmentFile(name)).mode & 0o777, 0o640)
})

test('unlink removes the name; mappings stay usable until close', (t) => {
  const name = uniqueName(t)
  const shm = SharedMemory.create(name, 64)
  const view = new Uint8Array(shm.buffer)
  shm.unlink()
  t.throws(() => SharedMemory.open(name), { code: 'ENOENT' })
  view[3] = 3
  t.is(view[3], 3)
  t.throws(() => shm.unlink(), { code: 'ENOENT' })
  shm.close()
  t.is(view.length, 64, 'views keep their length after close')
  t.is(view[3], 0, 'and read zeros')
})

test('after close, a stale view neither sees nor reaches the object in another process', (t) => {
  const name = uniqueName(t)
  const shm = SharedMemory.create(name, 64)
  const view = new Uint8Array(shm.buffer)
  view[0] = 5
  shm.close()
  t.is(view[0], 0, 'the closed handle reads zeros where the object holds 5')
  view[1] = 9 // lands in this process's private blank page
  const entry = new URL('../index.js', import.meta.url).href
  const child = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { SharedMemory } from '${entry}'
       const shm = SharedMemory.open(process.argv[1])
       console.log([...new Uint8Array(shm.buffer, 0, 2)].join(','))
       shm.close()`,
      name,
    ],
    { encoding: 'utf8' },
  )
  t.is(child.status, 0, child.stderr)
  t.is(child.stdout.trim(), '5,0', 'the object still holds 5, and the stale write never reached it')
})

test('a read-only open sees the data, and its writes never reach the segment', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 64)
  new Uint8Array(shm.buffer).set([1, 2, 3])
  using ro = SharedMemory.open(name, { readOnly: true })
  t.true(ro.readOnly)
  const view = new Uint8Array(ro.buffer)
  t.deepEqual([...view.subarray(0, 3)], [1, 2, 3])
  view[0] = 99 // copy-on-write: no crash, and private to this mapping
  t.is(new Uint8Array(shm.buffer)[0], 1)
})

test('names with and without the leading slash are the same object', (t) => {
  const name = uniqueName(t)
  using a = SharedMemory.create(name, 64)
  using b = SharedMemory.open(`/${name}`)
  t.is(a.name, b.name)
  t.is(a.name, `/${name}`)
})

test('a segment larger than the free space of /dev/shm fails with ENOSPC at create and leaves no name', (t) => {
  const name = uniqueName(t)
  const free = statfsFree('/dev/shm')
  const error = t.throws(() => SharedMemory.create(name, free + 2 ** 30)) as NodeJS.ErrnoException
  t.is(error.code, 'ENOSPC')
  t.throws(() => SharedMemory.open(name), { code: 'ENOENT' })
})

function statfsFree(path: string): number {
  const s = statfsSync(path)
  return s.bavail * s.bsize
}
