// Memory safety: no sequence of calls crashes the process, and every misuse fails with a
// typed error.
import anyTest from 'ava'

import { SharedMemory } from '../index.js'
import { fixture, runNode, uniqueName, guardTitles, platform } from './helpers.js'

const test = guardTitles(anyTest, [
  { ok: platform.linux, need: 'Linux (/dev/zero)', titles: ['devZero:', 'devZero rejects'] },
])

const makers: Record<string, (t: import('ava').ExecutionContext) => SharedMemory> = {
  anonymous: () => SharedMemory.anonymous(4096),
  devZero: () => SharedMemory.devZero(4096),
  named: (t) => SharedMemory.create(uniqueName(t), 4096),
  memfd: () => SharedMemory.memfd(4096),
}

for (const [kind, make] of Object.entries(makers)) {
  test(`${kind}: after close views keep their length, read zeros, and reading or writing them does not crash`, (t) => {
    const shm = make(t)
    t.is(shm.kind as string, kind)
    const bytes = new Uint8Array(shm.buffer)
    const doubles = new Float64Array(shm.buffer)
    const view = new DataView(shm.buffer)
    const buf = Buffer.from(shm.buffer)
    const slice = bytes.subarray(100, 200)
    bytes[0] = 1
    bytes[150] = 3
    doubles[10] = 2.5
    t.is(view.getUint8(0), 1)
    t.is(buf[0], 1)

    shm.close()
    t.true(shm.closed)
    // Not detached (native work in flight may still hold the memory): the same lengths, but
    // the memory behind them is private zero pages now.
    t.is(bytes.length, 4096)
    t.is(doubles.length, 512)
    t.is(buf.length, 4096)
    t.is(slice.length, 100)
    t.is(bytes[0], 0)
    t.is(slice[50], 0)
    t.is(doubles[10], 0)
    t.is(view.getUint8(0), 0)
    t.true(bytes.every((b) => b === 0))
    // Writes land in this process's blank pages only.
    bytes.fill(7)
    view.setFloat64(8, 1)
    t.is(bytes[4095], 7)
    t.is(buf.toString('latin1', 0, 1), '\x07')
  })
}

test('named: a write through a view of a closed handle never reaches the shared object', (t) => {
  const name = uniqueName(t)
  const shm = SharedMemory.create(name, 4096)
  const other = SharedMemory.open(name)
  t.teardown(() => other.close())
  const stale = new Uint8Array(shm.buffer)
  const live = new Uint8Array(other.buffer)
  stale[0] = 1
  t.is(live[0], 1, 'before close, both handles see the same memory')
  shm.close()
  t.is(stale[0], 0, 'the closed handle reads zeros where the object holds 1')
  t.is(live[0], 1)
  stale[1] = 9
  live[2] = 4
  t.is(live[1], 0, 'the stale write is not seen by the other handle')
  t.is(stale[2], 0, 'nor does the stale view see new writes to the object')
})

test('close is idempotent and other members throw ERR_SHM_CLOSED afterwards', (t) => {
  const name = uniqueName(t)
  const shm = SharedMemory.create(name, 128)
  shm.close()
  t.notThrows(() => shm.close())
  t.notThrows(() => shm[Symbol.dispose]())
  t.throws(() => shm.buffer, { code: 'ERR_SHM_CLOSED' })
  t.throws(() => shm.flush(), { code: 'ERR_SHM_CLOSED' })
  t.throws(() => shm.unlink(), { code: 'ERR_SHM_CLOSED' })
  t.throws(() => shm.fd, { code: 'ERR_SHM_CLOSED' })
  // Metadata stays readable.
  t.is(shm.size, 128)
  t.is(shm.name, `/${name}`)
  t.is(shm.kind, 'named')
  t.true(shm.closed)
  // Closing never unlinks: the name is still there.
  SharedMemory.unlink(name)
})

test('using closes at the end of the block', (t) => {
  let escaped: Uint8Array
  {
    using shm = SharedMemory.anonymous(64)
    escaped = new Uint8Array(shm.buffer)
    escaped[0] = 1
    t.is(typeof shm[Symbol.dispose], 'function')
  }
  t.is(escaped.length, 64)
  t.is(escaped[0], 0, 'the closed region reads zeros')
})

test('buffer is one ArrayBuffer over the mapping, created once', (t) => {
  using shm = SharedMemory.anonymous(4096)
  t.is(shm.buffer, shm.buffer)
  t.true(shm.buffer instanceof ArrayBuffer)
  t.is(shm.buffer.byteLength, 4096)
  t.true(
    new Uint8Array(shm.buffer).every((b) => b === 0),
    'fresh memory is zeroed',
  )
  new Uint32Array(shm.buffer)[1] = 0xdeadbeef
  t.is(new DataView(shm.buffer).getUint32(4, true), 0xdeadbeef)
  t.is(Atomics.add(new Int32Array(shm.buffer), 10, 5), 0)
  t.is(Atomics.load(new Int32Array(shm.buffer), 10), 5)
})

const badSizes: Array<[unknown, string]> = [
  [undefined, 'ERR_INVALID_ARG_TYPE'],
  [null, 'ERR_INVALID_ARG_TYPE'],
  ['4096', 'ERR_INVALID_ARG_TYPE'],
  [4096n, 'ERR_INVALID_ARG_TYPE'],
  [{}, 'ERR_INVALID_ARG_TYPE'],
  [0, 'ERR_OUT_OF_RANGE'],
  [-1, 'ERR_OUT_OF_RANGE'],
  [1.5, 'ERR_OUT_OF_RANGE'],
  [NaN, 'ERR_OUT_OF_RANGE'],
  [Infinity, 'ERR_OUT_OF_RANGE'],
  [2 ** 53, 'ERR_OUT_OF_RANGE'],
  [Number.MAX_VALUE, 'ERR_OUT_OF_RANGE'],
]

for (const factory of ['anonymous', 'devZero', 'memfd'] as const) {
  test(`${factory} rejects bad sizes with Node's codes`, (t) => {
    for (const [size, code] of badSizes) {
      const error = t.throws(() =>
        (SharedMemory[factory] as (s: unknown) => SharedMemory)(size),
      ) as NodeJS.ErrnoException
      t.is(error?.code, code, `size ${String(size)}`)
      t.true(code === 'ERR_INVALID_ARG_TYPE' ? error instanceof TypeError : error instanceof RangeError)
    }
  })
}

test('create rejects bad names and sizes before touching the OS', (t) => {
  const badNames: Array<[unknown, string]> = [
    [undefined, 'ERR_INVALID_ARG_TYPE'],
    [42, 'ERR_INVALID_ARG_TYPE'],
    [Symbol('x'), 'ERR_INVALID_ARG_TYPE'],
    ['', 'ERR_INVALID_ARG_VALUE'],
    ['/', 'ERR_INVALID_ARG_VALUE'],
    ['//jobs', 'ERR_INVALID_ARG_VALUE'],
    ['a/b', 'ERR_INVALID_ARG_VALUE'],
    ['/a/b', 'ERR_INVALID_ARG_VALUE'],
    ['x\0y', 'ERR_INVALID_ARG_VALUE'],
    ['x'.repeat(30), 'ERR_INVALID_ARG_VALUE'],
    ['/' + 'x'.repeat(30), 'ERR_INVALID_ARG_VALUE'],
  ]
  for (const [name, code] of badNames) {
    const error = t.throws(() => SharedMemory.create(name as string, 64)) as NodeJS.ErrnoException
    t.is(error?.code, code, `name ${String(name)}`)
    t.true(error instanceof TypeError)
  }
  const name = uniqueName(t)
  for (const [size, code] of badSizes) {
    t.is((t.throws(() => SharedMemory.create(name, size as number)) as NodeJS.ErrnoException).code, code)
  }
  t.throws(() => SharedMemory.open(name), { code: 'ENOENT' }, 'nothing was created')
  // 29 characters plus the slash is the longest portable name.
  const longest = uniqueName(t) + 'x'.repeat(15)
  using ok = SharedMemory.create(longest, 64)
  t.is(ok.name?.length, 30)
  t.teardown(() => SharedMemory.unlink(longest))
})

test('options are checked: type, and each field', (t) => {
  t.like(
    t.throws(() => SharedMemory.anonymous(64, 5 as never)),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  t.like(
    t.throws(() => SharedMemory.anonymous(64, 'x' as never)),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  t.like(
    t.throws(() => SharedMemory.anonymous(64, { private: 1 } as never)),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  const name = uniqueName(t)
  t.like(
    t.throws(() => SharedMemory.create(name, 64, { mode: 0o1000 })),
    { code: 'ERR_OUT_OF_RANGE' },
  )
  t.like(
    t.throws(() => SharedMemory.create(name, 64, { mode: -1 })),
    { code: 'ERR_OUT_OF_RANGE' },
  )
  t.like(
    t.throws(() => SharedMemory.create(name, 64, { mode: 1.5 })),
    { code: 'ERR_OUT_OF_RANGE' },
  )
  t.like(
    t.throws(() => SharedMemory.create(name, 64, { mode: '600' as never })),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  t.like(
    t.throws(() => SharedMemory.create(name, 64, { reserve: 'yes' as never })),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  t.like(
    t.throws(() => SharedMemory.open(name, { readOnly: 0 } as never)),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  t.like(
    t.throws(() => SharedMemory.fromFd(-1)),
    { code: 'ERR_OUT_OF_RANGE' },
  )
  t.like(
    t.throws(() => SharedMemory.fromFd(99999)),
    { code: 'EBADF', syscall: 'fcntl' },
  )
  t.like(
    t.throws(() => SharedMemory.file('')),
    { code: 'ERR_INVALID_ARG_VALUE' },
  )
  t.like(
    t.throws(() => SharedMemory.file(5 as never)),
    { code: 'ERR_INVALID_ARG_TYPE' },
  )
  // null and undefined mean "no options".
  using a = SharedMemory.anonymous(64, null)
  using b = SharedMemory.anonymous(64, undefined)
  t.false(a.private || b.private)
})

test('a handle that is never closed is unmapped by GC only after its views are gone', async (t) => {
  const ran = await runNode(fixture('gc-unclosed.mjs'), [])
  t.is(ran.code, 0, ran.stderr)
  t.regex(ran.stdout, /view survived GC: 42/)
  t.regex(ran.stdout, /mappings released: true/)
})

test('unlink on a region without a shared-memory name is ERR_SHM_UNSUPPORTED', (t) => {
  using shm = SharedMemory.anonymous(64)
  t.like(
    t.throws(() => shm.unlink()),
    { code: 'ERR_SHM_UNSUPPORTED' },
  )
})

test('an ArrayBuffer moved away with transfer() stays mapped after close but no longer reaches the memory', (t) => {
  const shm = SharedMemory.anonymous(4096)
  new Uint8Array(shm.buffer)[0] = 9
  const transfer = (shm.buffer as ArrayBuffer & { transfer?: () => ArrayBuffer }).transfer
  if (typeof transfer !== 'function') {
    // Node 20 has no ArrayBuffer.prototype.transfer; structuredClone copies instead of moving.
    const copy = structuredClone(shm.buffer, { transfer: [shm.buffer] })
    shm.close()
    t.is(new Uint8Array(copy)[0], 9)
    return
  }
  const moved = transfer.call(shm.buffer)
  t.is(new Uint8Array(moved)[0], 9)
  shm.close()
  // close() released the memory at once, but never unmaps under a buffer: the moved buffer
  // keeps its addresses (zero pages now) until it is collected, so it reads zeros and its
  // writes go nowhere instead of faulting.
  const view = new Uint8Array(moved)
  t.is(view.length, 4096)
  t.is(view[0], 0)
  view[4095] = 1
  t.is(view[4095], 1)
})
