// Loading shmkit where no binary can load (Windows, a missing or a broken binary) throws one
// clear error naming the platform and the supported ones, never napi-rs's generic loader error.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { parseTriple } from '@napi-rs/cli'
import test, { type ExecutionContext } from 'ava'

import { fixture, here, runNode } from './helpers.js'

const root = join(here, '..')
const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  napi: { targets: string[] }
}
/** The platform names of the published binaries, as the napi CLI derives them from `napi.targets`. */
const published = packageJson.napi.targets.map((triple) => parseTriple(triple).platformArchABI)

/** This machine's platform name; libc is read from the filesystem, not the way the entry does it. */
function thisPlatform(): string {
  const name = `${process.platform}-${process.arch}`
  if (process.platform !== 'linux') return name
  const musl = readdirSync('/lib').some((file) => file.startsWith('ld-musl-'))
  return `${name}-${musl ? 'musl' : 'gnu'}`
}

interface Described {
  code?: string
  message: string
  platform?: string
  supportedPlatforms?: string[]
  hasCause: boolean
}
type Outcome = { exports: string[]; error?: undefined } | { error: Described; exports?: undefined }

/** Loads `entry` in a fresh Node (with require() and with import()) and returns what each did. */
async function load(t: ExecutionContext, entry: string, execArgv: string[] = []) {
  const env = { ...process.env }
  delete env.NAPI_RS_NATIVE_LIBRARY_PATH
  const ran = await runNode(fixture('load-entry.cjs'), [entry], { execArgv, env })
  t.is(ran.code, 0, ran.stderr)
  return JSON.parse(ran.stdout) as { require: Outcome; import: Outcome }
}

/** A directory holding the package's entry and generated loader, and no binary. */
function packageWithoutBinary(t: ExecutionContext): string {
  // The real path: require() reports binaries by it (macOS's tmpdir is behind a symlink).
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'shmkit-platform-')))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const file of ['index.js', 'binding.js', 'package.json']) copyFileSync(join(root, file), join(dir, file))
  return dir
}

function assertUnsupported(t: ExecutionContext, outcome: Outcome, platform: string): Described {
  if (outcome.error === undefined) throw new Error(`loaded, with exports ${outcome.exports.join(', ')}`)
  const error = outcome.error
  t.is(error.code, 'ERR_SHM_UNSUPPORTED_PLATFORM')
  t.is(error.platform, platform)
  t.deepEqual(error.supportedPlatforms, published)
  // The message itself names the platform and every supported one, and carries no chain
  // of loader attempts.
  for (const name of [platform, ...published]) t.true(error.message.includes(name), `message names ${name}`)
  t.false(error.hasCause)
  return error
}

test('the supported platforms are exactly the published napi targets', async (t) => {
  const { require } = await load(t, join(root, 'index.js'), ['--require', fixture('as-windows.cjs')])
  t.deepEqual(require.error?.supportedPlatforms, published)
  t.is(published.length, 6)
})

test('on Windows loading shmkit throws ERR_SHM_UNSUPPORTED_PLATFORM, from require() and from import()', async (t) => {
  const outcome = await load(t, join(root, 'index.js'), ['--require', fixture('as-windows.cjs')])
  const platform = `win32-${process.arch}`
  t.false(published.includes(platform))
  assertUnsupported(t, outcome.require, platform)
  assertUnsupported(t, outcome.import, platform)
})

test('uncaught, the error is one error, not the loader attempts', async (t) => {
  const ran = await runNode(join(root, 'index.js'), [], { execArgv: ['--require', fixture('as-windows.cjs')] })
  t.is(ran.code, 1)
  t.true(ran.stderr.includes("code: 'ERR_SHM_UNSUPPORTED_PLATFORM'"), ran.stderr)
  t.false(ran.stderr.includes('Cannot find native binding'), ran.stderr)
  t.false(ran.stderr.includes('Cannot find module'), ran.stderr)
  t.false(ran.stderr.includes('[cause]'), ran.stderr)
})

test('a supported platform whose binary is missing names the platform package to install', async (t) => {
  const platform = thisPlatform()
  t.true(published.includes(platform), `tests run on a supported platform, not ${platform}`)
  const dir = packageWithoutBinary(t)
  const outcome = await load(t, join(dir, 'index.js'))
  const error = assertUnsupported(t, outcome.require, platform)
  t.true(error.message.includes(`shmkit-${platform}`))
  assertUnsupported(t, outcome.import, platform)
})

test('a binary that is there but cannot load is reported with the reason', async (t) => {
  const platform = thisPlatform()
  const dir = packageWithoutBinary(t)
  writeFileSync(join(dir, `shmkit.${platform}.node`), 'not a shared object\n')
  const outcome = await load(t, join(dir, 'index.js'))
  const error = assertUnsupported(t, outcome.require, platform)
  t.true(error.message.includes(join(dir, `shmkit.${platform}.node`)), error.message)
})

test('with its binary the entry loads and re-exports the generated binding, for require() and import()', async (t) => {
  const outcome = await load(t, join(root, 'index.js'))
  t.true(outcome.require.exports?.includes('SharedMemory'))
  t.true(outcome.import.exports?.includes('SharedMemory'))
})
