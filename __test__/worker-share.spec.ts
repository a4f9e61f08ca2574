// Zero-copy sharing with worker threads: share() gives a token, SharedMemory.from(token) in any
// thread of the process is a handle over the same mapping.
import anyTest from 'ava'

import { SharedMemory } from '../index.js'
import { fixture, runNode, uniqueName, guardTitles, platform, procAvailable } from './helpers.js'

const test = guardTitles(anyTest, [
  {
    ok: platform.linux,
    need: 'Linux (/dev/zero among the kinds of region)',
    titles: ['a worker writes through a token'],
  },
  { ok: procAvailable, need: '/proc (descriptors and mappings)', titles: ['10,000 share/close cycles'] },
])

test('a worker writes through a token; the main thread and another process see it', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 4096)
  const ran = await runNode(fixture('share-workers.mjs'), ['visible', name], { execArgv: ['--expose-gc'] })
  t.is(ran.code, 0, ran.stderr)
  t.is(ran.stdout.trim(), 'written by a worker', 'the main thread of that process read it')
  t.is(Buffer.from(shm.buffer, 0, 19).toString(), 'written by a worker', 'this process reads it')
  const other = await runNode(fixture('share-workers.mjs'), ['read', name])
  t.is(other.stdout.trim(), 'written by a worker', other.stderr)
})

test("closing in one thread never breaks another thread's views, for every kind of region", async (t) => {
  const ran = await runNode(fixture('share-workers.mjs'), ['independent'], { execArgv: ['--expose-gc'] })
  t.is(ran.code, 0, ran.stderr)
  const results = JSON.parse(ran.stdout) as Record<string, Record<string, number>>
  t.deepEqual(Object.keys(results), ['anonymous', 'devZero', 'memfd', 'named', 'file'])
  for (const [kind, r] of Object.entries(results)) {
    t.deepEqual(
      r,
      {
        mainViewLength: 4096 * 2, // the main thread closed: its views keep their length
        mainReads: 0, // but read zeros where the memory holds 7
        bSeesStaleWrite: 0, // and their writes never reach the memory
        aReads: 7, // worker A still reads what the main thread wrote
        aWrites: 9,
        bSeesA: 9, // the same memory, not a copy
        aLengthAfterClose: 4096 * 2, // A closed: A's views keep their length
        aReadsAfterClose: 0, // and read zeros where the memory holds 9
        bStillWrites: 5, // B is unaffected until it closes too
        bLength: 4096 * 2,
      },
      kind,
    )
  }
})

test('10,000 share/close cycles across two workers leave fds and mappings at baseline', async (t) => {
  t.timeout(5 * 60_000)
  const ran = await runNode(fixture('share-workers.mjs'), ['cycles', '10000'], {
    execArgv: ['--expose-gc'],
    timeoutMs: 280_000,
  })
  t.is(ran.code, 0, ran.stderr)
  const report = JSON.parse(ran.stdout) as {
    cycles: number
    checked: number
    before: Record<string, number>
    after: Record<string, number>
  }
  t.log(JSON.stringify(report))
  t.is(report.checked, 10_000, "the main thread saw every worker's write")
  t.is(report.after.fds, report.before.fds)
  t.is(report.after.shared, report.before.shared)
  t.is(report.after.eightK, report.before.eightK, 'no region-sized mapping left')
})

test('tokens are single-use, unforgeable and local to the process', async (t) => {
  using shm = SharedMemory.anonymous(4096)
  const token = shm.share()
  t.is(token.kind, 'anonymous')
  t.is(token.size, 4096)
  t.regex(token.id, /^[0-9a-f]{32}$/)
  t.deepEqual(structuredClone(token), token, 'a plain, clonable object')
  const other = await runNode(fixture('share-token-elsewhere.mjs'), [JSON.stringify(token)])
  t.is(other.stdout.trim(), 'ERR_SHM_INVALID_TOKEN', 'another process cannot redeem it')
  using again = SharedMemory.from(token)
  new Uint8Array(again.buffer)[0] = 3
  t.is(new Uint8Array(shm.buffer)[0], 3)
  t.throws(() => SharedMemory.from(token), { code: 'ERR_SHM_INVALID_TOKEN' }, 'redeemed once only')
  for (const forged of [{ id: 'f'.repeat(32) }, { id: '1' }, { id: 12 }, {}, { id: `${token.id.slice(1)}0` }]) {
    t.throws(() => SharedMemory.from(forged as never), { code: 'ERR_SHM_INVALID_TOKEN' })
  }
  for (const junk of [null, undefined, 'token', 7]) {
    t.throws(() => SharedMemory.from(junk as never), { code: 'ERR_INVALID_ARG_TYPE' })
  }
  shm.close()
  t.throws(() => shm.share(), { code: 'ERR_SHM_CLOSED' })
  t.is(new Uint8Array(again.buffer)[0], 3, 'the redeemed handle outlives the sharer')
})

test('posting or cloning region.buffer itself copies (which is why share() exists)', (t) => {
  using shm = SharedMemory.anonymous(4096)
  const copy = structuredClone(shm.buffer)
  new Uint8Array(copy)[0] = 1
  t.is(new Uint8Array(shm.buffer)[0], 0, 'the copy is not the shared memory')
})
