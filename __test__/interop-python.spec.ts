// Python's multiprocessing.shared_memory opens shmkit segments by name and sees the same bytes,
// both ways: a named segment holds exactly the user's bytes, no header.
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'

import test from 'ava'

import { SharedMemory } from '../index.js'
import { here, uniqueName } from './helpers.js'

const python = ['python3', 'python'].find(
  (p) => spawnSync(p, ['-c', 'import multiprocessing.shared_memory'], { stdio: 'ignore' }).status === 0,
)
const withPython = python ? test : test.skip
if (!python) console.log('interop-python: no python3 with multiprocessing.shared_memory on PATH; skipping')

function py(...args: string[]) {
  const ran = spawnSync(python!, [join(here, 'interop', 'python_peer.py'), ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  if (ran.status !== 0) throw new Error(`python failed: ${ran.stderr}`)
  return ran.stdout.trim().split('\n')
}

withPython('Python reads what shmkit wrote, and shmkit reads what Python wrote back', (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 10_000)
  const bytes = new Uint8Array(shm.buffer)
  const message = Buffer.from('written by shmkit \u00e9\u20ac')
  bytes.set(message, 4321)
  const [hex, size] = py('read', name, '4321', String(message.length))
  t.is(hex, message.toString('hex'))
  t.is(Number(size), 10_000, 'no header: Python sees exactly the size shmkit created')

  const reply = Buffer.from([0, 1, 2, 250, 251, 252, 253, 254, 255])
  py('write', `/${name}`, '9991', reply.toString('hex'))
  t.deepEqual([...bytes.subarray(9991, 10_000)], [...reply])
  t.notThrows(() => SharedMemory.open(name).close(), 'Python did not unlink the name')
})

withPython("shmkit opens a segment Python created, and its bytes are Python's", (t) => {
  const name = uniqueName(t)
  const data = Buffer.from('made by python')
  py('create', name, '8192', '100', data.toString('hex'))
  using shm = SharedMemory.open(name)
  t.is(shm.size, 8192)
  t.is(Buffer.from(shm.buffer, 100, data.length).toString(), 'made by python')
  t.true(new Uint8Array(shm.buffer, 0, 100).every((b) => b === 0))
  new Uint8Array(shm.buffer)[0] = 42
  t.is(py('read', name, '0', '1')[0], '2a')
})
