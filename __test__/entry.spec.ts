// The package's entries: the ESM entry (index.mjs) gives the CommonJS entry's very objects as
// named exports; package.json's exports map and files list hold both; the loader's error in a
// source checkout says to build; every class prints what it holds and never throws doing so.
import { copyFileSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { inspect } from 'node:util'

import anyTest from 'ava'

import { fixture, here, runNode, uniqueName, uniqueSemName, guardTitles, platform } from './helpers.js'

const test = guardTitles(anyTest, [
  { ok: platform.linux, need: 'Linux (fork() from Node)', titles: ['a forked child prints'] },
])

const root = join(here, '..')
// By URL: index.mjs has no declarations of its own (package.json gives index.d.ts for both).
const esm = (await import(pathToFileURL(join(root, 'index.mjs')).href)) as typeof import('../index.js') & {
  default: unknown
}
const require = createRequire(import.meta.url)
const cjs = require('../index.js') as Record<string, unknown>
const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))

test('index.mjs exports every export of index.js by name, the same objects, and them as default', (t) => {
  const named = Object.keys(esm)
    .filter((key) => key !== 'default')
    .sort()
  t.deepEqual(named, Object.keys(cjs).sort())
  for (const key of named) t.is((esm as Record<string, unknown>)[key], cjs[key], key)
  t.is(esm.default, cjs)
})

test('package.json declares CommonJS, maps import/require/types to the entries, and ships them', (t) => {
  t.is(packageJson.type, 'commonjs')
  t.deepEqual(packageJson.exports['.'], { types: './index.d.ts', import: './index.mjs', require: './index.js' })
  for (const file of ['index.js', 'index.mjs', 'share.js', 'index.d.ts', 'binding.js'])
    t.true(packageJson.files.includes(file))
})

test('in a source checkout without a binary, the loader says to run npm run build', async (t) => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'shmkit-checkout-')))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const file of ['index.js', 'index.mjs', 'binding.js', 'package.json', 'Cargo.toml']) {
    copyFileSync(join(root, file), join(dir, file))
  }
  for (const entry of ['index.js', 'index.mjs']) {
    const ran = await runNode(join(dir, entry), [], { env: { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: '' } })
    t.is(ran.code, 1)
    t.true(ran.stderr.includes("code: 'ERR_SHM_UNSUPPORTED_PLATFORM'"), ran.stderr)
    t.true(ran.stderr.includes('run `npm run build`'), ran.stderr)
    t.false(ran.stderr.includes('reinstall'), ran.stderr)
  }
  // Without Cargo.toml it is an installed package: then the advice is to reinstall.
  rmSync(join(dir, 'Cargo.toml'))
  const ran = await runNode(join(dir, 'index.js'), [], { env: { ...process.env, NAPI_RS_NATIVE_LIBRARY_PATH: '' } })
  t.true(ran.stderr.includes('reinstall'), ran.stderr)
})

const { RobustMutex, Semaphore, SharedMemory } = esm

test('a region prints its kind, name, size and closed, and still prints once closed', (t) => {
  const name = uniqueName(t)
  const region = SharedMemory.create(name, 4096)
  t.is(inspect(region), `SharedMemory { kind: 'named', name: '/${name}', size: 4096, closed: false }`)
  region.close()
  t.is(inspect(region), `SharedMemory { kind: 'named', name: '/${name}', size: 4096, closed: true }`)
  const anonymous = SharedMemory.anonymous(8192)
  t.is(
    inspect([anonymous], { breakLength: Infinity }),
    `[ SharedMemory { kind: 'anonymous', name: null, size: 8192, closed: false } ]`,
  )
  anonymous.close()
})

test('a semaphore prints its name or offset and value; a closed one leaves out what it cannot read', (t) => {
  const name = uniqueSemName(t)
  const named = Semaphore.create(name, { initial: 2 })
  t.is(inspect(named), `Semaphore { name: '/${name}', value: 2, closed: false }`)
  named.close()
  t.is(inspect(named), `Semaphore { name: '/${name}', closed: true }`)
  const region = SharedMemory.anonymous(4096)
  const inRegion = Semaphore.init(region, 64, 5)
  t.is(inspect(inRegion), 'Semaphore { offset: 64, value: 5, closed: false }')
  inRegion.close()
  t.notThrows(() => inspect(inRegion))
  t.regex(inspect(inRegion), /^Semaphore \{.*closed: true \}$/)
  region.close()
})

test('a robust mutex prints its offset, and inspecting a closed one does not throw', (t) => {
  const region = SharedMemory.anonymous(4096)
  const mutex = RobustMutex.init(region, 128)
  t.is(inspect(mutex), 'RobustMutex { offset: 128, closed: false }')
  mutex.close()
  t.notThrows(() => inspect(mutex))
  t.regex(inspect(mutex), /^RobustMutex \{.*closed: true \}$/)
  region.close()
})

test('every exported class has a custom inspect', (t) => {
  const custom = Symbol.for('nodejs.util.inspect.custom')
  const classes = Object.entries(cjs).filter(
    ([name, value]) => typeof value === 'function' && /^[A-Z]/.test(name) && (value as Function).prototype,
  )
  t.true(classes.length >= 4)
  for (const [name, value] of classes) {
    t.is(typeof (value as Function).prototype[custom], 'function', `${name} has [inspect.custom]`)
  }
})

test('a forked child prints its pid and whether it runs or how it ended', async (t) => {
  const ran = await runNode(fixture('inspect-child.mjs'), [], { execArgv: ['--single-threaded'] })
  t.is(ran.code, 0, ran.stderr)
  const seen = JSON.parse(ran.stdout) as { pid: number; running: string; ended: string; again: string }
  t.is(seen.running, `ForkedChild { pid: ${seen.pid}, state: 'running' }`)
  t.is(seen.ended, `ForkedChild { pid: ${seen.pid}, state: 'exited with 3' }`)
  t.is(seen.again, seen.ended)
})
