// Run by scripts/test-runtimes.mjs inside Bun or Deno (any runtime that loads Node-API
// addons): shmkit imported from this checkout by path, then the steps a user of that runtime
// relies on, each checked. Prints `ok <step>` per step; any failure throws (exit code 1).
//
//   <runtime> scripts/runtime-smoke.mjs <segment name> <node binary>
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { inspect } from 'node:util'

import { RobustMutex, Semaphore, SharedMemory, fork, inherited, shareWith } from '../index.mjs'

const [name, node] = process.argv.slice(2)
const ROUNDS = 200
const entry = new URL('../index.mjs', import.meta.url).href
const runtime = process.versions.bun ? `Bun ${process.versions.bun}` : `Deno ${process.versions.deno}`

// 1. A named segment and two named semaphores made by a Node process: answer each of its
// messages (blocking and Promise waits in turn), then leave a segment and a semaphore of our
// own for it to open after we exit.
{
  const shm = SharedMemory.open(name)
  const request = Semaphore.open(`${name}a`)
  const reply = Semaphore.open(`${name}b`)
  const words = new Uint32Array(shm.buffer)
  for (let i = 0; i < ROUNDS; i++) {
    const got = i % 2 === 0 ? request.waitSync({ timeout: 30_000 }) : await request.wait({ timeout: 30_000 })
    assert.ok(got, `round ${i}: no request from the Node process`)
    assert.equal(words[0], i)
    words[1] = i * 2 + 1
    reply.post()
  }
  for (const handle of [request, reply, shm]) handle.close()
  const back = SharedMemory.create(`${name}c`, 4096)
  new Uint32Array(back.buffer)[0] = 0xdeadbeef
  const backSem = Semaphore.create(`${name}d`)
  backSem.post()
  back.close()
  backSem.close()
  console.log(`ok named segment and semaphores with a Node process (${ROUNDS} round trips)`)
}

// 2. Close safety: escaped views keep their length but read zeros, and their writes reach only
// private blank pages; members of closed handles throw ERR_SHM_CLOSED, and inspecting never
// throws.
{
  const region = SharedMemory.anonymous(1 << 16)
  const bytes = new Uint8Array(region.buffer)
  const view = new DataView(region.buffer)
  bytes[100] = 7
  assert.equal(view.getUint8(100), 7)
  assert.match(inspect(region), /kind: ['"]anonymous['"]/)
  region.close()
  assert.equal(bytes.length, 1 << 16)
  assert.equal(bytes[100], 0)
  assert.equal(view.getUint8(100), 0)
  bytes[100] = 1 // a private blank page now, not a crash
  assert.equal(bytes.length, 1 << 16)
  assert.throws(() => region.buffer, { code: 'ERR_SHM_CLOSED' })
  assert.equal(region.closed, true)
  assert.match(inspect(region), /closed: true/)
  const sem = Semaphore.init(SharedMemory.anonymous(4096), 0, 1)
  sem.close()
  assert.throws(() => sem.post(), { code: 'ERR_SHM_CLOSED' })
  assert.match(inspect(sem), /closed: true/)
  console.log('ok close safety')
}

// 3. shareWith: a memfd region handed to a spawned Node child, each side seeing the other's writes.
{
  const region = SharedMemory.memfd(4096)
  const floats = new Float64Array(region.buffer)
  floats[0] = Math.PI
  const code = `import { inherited } from ${JSON.stringify(entry)}
const [region] = inherited()
const floats = new Float64Array(region.buffer)
if (floats[0] !== Math.PI) process.exit(3)
floats[1] = floats[0] * 2
region.close()`
  const child = spawn(node, ['--input-type=module', '-e', code], shareWith([region], { stdio: 'inherit' }))
  const [exitCode] = await once(child, 'exit')
  assert.equal(exitCode, 0)
  assert.equal(floats[1], Math.PI * 2)
  region.close()
  assert.equal(typeof inherited, 'function')
  console.log('ok shareWith to a spawned Node child')
}

// 4. A robust mutex in a region: lock, unlock, tryLock, and a second lock by the holder refused.
{
  const region = SharedMemory.anonymous(4096)
  const mutex = RobustMutex.init(region, 0)
  const { ownerDied } = mutex.lockSync({ timeout: 1000 })
  assert.equal(ownerDied, false)
  assert.throws(() => mutex.lockSync({ timeout: 1000 }), { code: 'EDEADLK' })
  mutex.unlock()
  assert.notEqual(mutex.tryLock(), null)
  mutex.unlock()
  assert.match(inspect(mutex), /offset: 0/)
  mutex.close()
  region.close()
  console.log('ok RobustMutex')
}

// 5. list() sees a segment this runtime made, in use by this process.
{
  const listed = `${name}e`
  const shm = SharedMemory.create(listed, 4096)
  try {
    const found = SharedMemory.list({ prefix: listed })
    assert.equal(found.length, 1)
    assert.equal(found[0].name, `/${listed}`)
    assert.equal(found[0].kind, 'segment')
    assert.equal(found[0].size, 4096)
    assert.equal(found[0].inUse, true)
  } finally {
    shm.close()
    SharedMemory.unlink(listed)
  }
  console.log('ok list')
}

// 6. fork() refuses here, and says why in this runtime's terms (no Node flag to add).
{
  assert.throws(
    () => fork(() => 0),
    (error) => {
      assert.equal(error.code, 'ERR_SHM_FORK_UNSAFE')
      assert.ok(error.message.includes(runtime), error.message)
      assert.ok(!error.message.includes('--single-threaded'), error.message)
      return true
    },
  )
  console.log('ok fork refused with a message for this runtime')
}
