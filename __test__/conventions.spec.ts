// Checks of docs/api-conventions.md that hold for the whole API: every error code is in the
// ShmErrorCode type, and every handle with close() also has [Symbol.dispose].
import { readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import * as shmkit from '../index.js'
import { here, uniqueName, uniqueSemName } from './helpers.js'

const root = join(here, '..')
const source = join(root, 'crates', 'shmkit-node', 'src')

test('every ERR_* code thrown by the binding or index.js is in ShmErrorCode', (t) => {
  const typings = readFileSync(join(root, 'index.d.ts'), 'utf8')
  const union = /export type ShmErrorCode =([^]*?)\n\n/.exec(typings)?.[1] ?? ''
  const listed = new Set([...union.matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]))
  const texts = [
    readFileSync(join(root, 'index.js'), 'utf8'),
    ...readdirSync(source, { recursive: true })
      .filter((f) => String(f).endsWith('.rs'))
      .map((f) => readFileSync(join(source, String(f)), 'utf8')),
  ]
  // Quoted codes, and the names listed in error.rs's `codes!` (one a line, each a constant
  // holding its own name).
  const thrown = new Set(
    texts.flatMap((text) =>
      [...text.matchAll(/['"]((?:ERR|ABORT)_[A-Z_]+)['"]/g), ...text.matchAll(/^\s*((?:ERR|ABORT)_[A-Z_]+),$/gm)].map(
        (m) => m[1],
      ),
    ),
  )
  t.true(thrown.size > 5, `found the codes: ${[...thrown].join(', ')}`)
  const missing = [...thrown].filter((code) => !listed.has(code))
  t.deepEqual(missing, [], 'codes missing from ShmErrorCode')
})

test('every class with close() is disposable: [Symbol.dispose] is close', (t) => {
  const classes = Object.entries(shmkit as Record<string, unknown>).flatMap(([name, value]) => {
    const proto =
      typeof value === 'function' ? (value.prototype as Record<PropertyKey, unknown> | undefined) : undefined
    return proto && typeof proto.close === 'function' ? [[name, proto] as const] : []
  })
  t.true(classes.length >= 4, `classes with close(): ${classes.map(([name]) => name).join(', ')}`)
  for (const [name, proto] of classes) t.is(proto[Symbol.dispose], proto.close, name)
})

test('every options object is checked the same way, and the error names the option', (t) => {
  const { Channel, RobustMutex, Semaphore, SharedMemory, waitAsync } = shmkit
  using shm = SharedMemory.anonymous(4096)
  using sem = Semaphore.init(shm, 0)
  using mutex = RobustMutex.init(shm, 64)
  const words = new Int32Array(shm.buffer)
  const name = uniqueName(t)
  const semName = uniqueSemName(t)
  const file = join(tmpdir(), name)
  // Every call below must fail before creating anything; should one not, nothing stays.
  t.teardown(() => {
    for (const remove of [() => SharedMemory.unlink(name), () => Semaphore.unlink(semName), () => rmSync(file)]) {
      try {
        remove()
      } catch {
        // not there: the call failed first, as it should
      }
    }
  })
  const bad = (opts: unknown) => opts as never
  // [what, call, code, the option the message names]
  const cases: Array<[string, () => unknown, string, string]> = [
    ['anonymous private', () => SharedMemory.anonymous(64, bad({ private: 1 })), 'ERR_INVALID_ARG_TYPE', 'private'],
    ['memfd growable', () => SharedMemory.memfd(64, bad({ growable: 'no' })), 'ERR_INVALID_ARG_TYPE', 'growable'],
    ['create mode', () => SharedMemory.create(name, 64, { mode: 0o1000 }), 'ERR_OUT_OF_RANGE', 'mode'],
    ['create reserve', () => SharedMemory.create(name, 64, bad({ reserve: 0 })), 'ERR_INVALID_ARG_TYPE', 'reserve'],
    ['open readOnly', () => SharedMemory.open(name, bad({ readOnly: 'yes' })), 'ERR_INVALID_ARG_TYPE', 'readOnly'],
    ['open owner', () => SharedMemory.open(name, bad({ owner: 'me' })), 'ERR_INVALID_ARG_VALUE', 'owner'],
    ['openOrCreate owner', () => SharedMemory.openOrCreate(name, 64, { owner: -1 }), 'ERR_OUT_OF_RANGE', 'owner'],
    ['file create', () => SharedMemory.file(file, 64, bad({ create: 1 })), 'ERR_INVALID_ARG_TYPE', 'create'],
    ['Semaphore.create initial', () => Semaphore.create(semName, { initial: -1 }), 'ERR_OUT_OF_RANGE', 'initial'],
    ['Semaphore.open owner', () => Semaphore.open(semName, bad({ owner: true })), 'ERR_INVALID_ARG_TYPE', 'owner'],
    ['waitSync timeout', () => sem.waitSync({ timeout: -1 }), 'ERR_OUT_OF_RANGE', 'timeout'],
    ['wait signal', () => sem.wait(bad({ signal: {} })), 'ERR_INVALID_ARG_TYPE', 'signal'],
    ['lockSync timeout', () => mutex.lockSync({ timeout: Number.NaN }), 'ERR_OUT_OF_RANGE', 'timeout'],
    ['lock timeout', () => mutex.lock(bad({ timeout: '1' })), 'ERR_INVALID_ARG_TYPE', 'timeout'],
    ['list prefix', () => SharedMemory.list(bad({ prefix: 1 })), 'ERR_INVALID_ARG_TYPE', 'prefix'],
    ['removeUnused dryRun', () => SharedMemory.removeUnused('x', bad({ dryRun: 1 })), 'ERR_INVALID_ARG_TYPE', 'dryRun'],
    ['Channel.at objectMode', () => Channel.at(shm, 0, bad({ objectMode: 1 })), 'ERR_INVALID_ARG_TYPE', 'objectMode'],
    ['waitAsync timeout', () => waitAsync(words, 0, 0, bad({ timeout: 'x' })), 'ERR_INVALID_ARG_TYPE', 'timeout'],
  ]
  for (const [what, call, code, option] of cases) {
    const error = t.throws(call, { code }, what) as Error | undefined
    t.regex(error?.message ?? '', new RegExp(`["']options\\.${option}["']`), what)
  }
  // Options themselves: undefined and null are "no options"; anything else but an object is
  // ERR_INVALID_ARG_TYPE, whether napi converts the argument or the method reads it.
  t.is(sem.waitSync({ timeout: 0 }), false)
  sem.post()
  t.is(sem.waitSync(null), true)
  sem.post()
  t.is(sem.waitSync(undefined), true)
  for (const call of [
    () => sem.waitSync(bad(5)),
    () => mutex.lockSync(bad('x')),
    () => Semaphore.open(semName, bad(1)),
  ]) {
    const error = t.throws(call, { code: 'ERR_INVALID_ARG_TYPE' }) as Error | undefined
    t.regex(error?.message ?? '', /The "options" argument must be of type object/)
  }
})
