// Shared test helpers: unique names that are always cleaned up, and real child processes.
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import type { ExecutionContext, TestFn } from 'ava'

import { Semaphore, SharedMemory } from '../index.js'

export const here = dirname(fileURLToPath(import.meta.url))
export const fixture = (name: string) => join(here, 'fixtures', name)
/** Limits that only catch hangs are 4 times longer under emulation (qemu-user runs Node 10-30x slower). */
export const hangGuardScale = process.env.SHMKIT_TEST_EMULATOR ? 4 : 1

/** A fresh portable name (`t` + 13 random characters), unlinked when the test ends. */
export function uniqueName(t: ExecutionContext, prefix = 't'): string {
  const name = `${prefix}${randomBytes(8).toString('hex')}`.slice(0, 14)
  t.teardown(() => {
    try {
      SharedMemory.unlink(name)
    } catch {
      // already unlinked by the test itself, or never created
    }
  })
  return name
}

/** A fresh semaphore name (`s` + 13 random characters), unlinked when the test ends. */
export function uniqueSemName(t: ExecutionContext, prefix = 's'): string {
  const name = `${prefix}${randomBytes(8).toString('hex')}`.slice(0, 14)
  t.teardown(() => {
    try {
      Semaphore.unlink(name)
    } catch {
      // already unlinked by the test itself, or never created
    }
  })
  return name
}

export interface Ran {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs `node <script> ...args` to completion, killing it after `timeoutMs`. */
export function runNode(
  script: string,
  args: string[],
  options: SpawnOptions & { timeoutMs?: number; execArgv?: string[]; node?: string } = {},
): Promise<Ran> {
  const {
    timeoutMs = 60_000,
    execArgv = [],
    stdio = ['ignore', 'pipe', 'pipe'],
    node = process.execPath,
    ...spawnOptions
  } = options
  return new Promise((resolve, reject) => {
    const child = spawn(node, [...execArgv, script, ...args], { ...spawnOptions, stdio })
    let stdout = ''
    let stderr = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

/** Starts a long-lived child speaking line-based commands over stdin/stdout. */
export function startPeer(script: string, args: string[] = [], options: SpawnOptions = {}) {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['pipe', 'pipe', 'inherit'], ...options })
  let buffered = ''
  const waiting: Array<(line: string) => void> = []
  const lines: string[] = []
  child.stdout!.setEncoding('utf8')
  child.stdout!.on('data', (chunk: string) => {
    buffered += chunk
    let i
    while ((i = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, i)
      buffered = buffered.slice(i + 1)
      const next = waiting.shift()
      if (next) next(line)
      else lines.push(line)
    }
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  )
  return {
    child,
    exited,
    /** Sends one command line and resolves with the reply line (or rejects on timeout). */
    ask(command: string, timeoutMs = 30_000 * hangGuardScale): Promise<string> {
      child.stdin!.write(command + '\n')
      const queued = lines.shift()
      if (queued !== undefined) return Promise.resolve(queued)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`peer did not answer '${command}'`)), timeoutMs)
        waiting.push((line) => {
          clearTimeout(timer)
          resolve(line)
        })
      })
    },
    async stop() {
      child.stdin!.end()
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      const result = await exited
      clearTimeout(timer)
      return result
    },
  }
}

/** Open descriptors of this process. */
export const openFds = () => readdirSync('/proc/self/fd').length
/**
 * Descriptors opened since `before` (a `fdTargets()` snapshot), leaving out the ones the
 * runtime itself opens and closes on its own schedule (tsx's cache directory, and the handle
 * `readdirSync` uses to list /proc/self/fd).
 */
export function newFds(before: string[]): string[] {
  const known = new Set(before)
  return fdTargets().filter((fd) => !known.has(fd) && !/:(\/tmp\/tsx-|\?$|\/proc\/\d+\/fd$)/.test(fd))
}

/** What each open descriptor of this process refers to (for leak messages). */
export const fdTargets = () =>
  readdirSync('/proc/self/fd').map((fd) => {
    try {
      return `${fd}:${readlinkSync(`/proc/self/fd/${fd}`)}`
    } catch {
      return `${fd}:?`
    }
  })
/** Mappings of this process (lines of /proc/self/maps). */
export const mappingCount = () => readFileSync('/proc/self/maps', 'utf8').split('\n').length
/** Shared-memory mappings of this process: anonymous shared (`/dev/zero (deleted)`), `/dev/zero`, memfd, /dev/shm. */
export const sharedMappingCount = () =>
  readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => /\s(\/dev\/zero|\/memfd:|\/dev\/shm\/|\/SYSV)/.test(line)).length
/** Entries in /dev/shm (shared-memory objects and named semaphores of every user). */
export const shmEntries = () => (existsSync('/dev/shm') ? readdirSync('/dev/shm') : [])

/** Lets pending finalizers (the ArrayBuffer release callbacks) run. */
export const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

const builtExamples = new Map<string, string | null>()
/**
 * The executable of the core crate's example `name`, built by cargo in release mode (a no-op
 * after `npm test`'s Rust tests); null when cargo is missing or the build fails.
 */
export function cargoExample(name: string): string | null {
  if (!builtExamples.has(name)) {
    const built = spawnSync(
      'cargo',
      ['build', '--release', '-p', 'shmkit', '--example', name, '--message-format=json-render-diagnostics'],
      { cwd: join(here, '..'), encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    )
    let found: string | null = null
    for (const line of (built.stdout ?? '').split('\n')) {
      if (!line.startsWith('{')) continue
      const message = JSON.parse(line)
      if (message.reason === 'compiler-artifact' && message.target.name === name) found = message.executable
    }
    builtExamples.set(name, found)
  }
  return builtExamples.get(name) ?? null
}

// Platform guards. A spec (or one test) that needs Linux, glibc or /proc runs through one of
// these: elsewhere its tests are skipped and the reason is printed, never silently.
// SHMKIT_TEST_PRETEND=not-glibc or not-linux (comma-separated) makes the guards answer as on a
// musl or a non-Linux machine, so the expected skip lists (__test__/skips/) can be checked on
// this one; it changes no path and no behaviour of shmkit itself.
const PRETEND = new Set((process.env.SHMKIT_TEST_PRETEND ?? '').split(',').filter(Boolean))
for (const p of PRETEND) {
  if (p !== 'not-glibc' && p !== 'not-linux') throw new Error(`SHMKIT_TEST_PRETEND: unknown condition ${p}`)
}
const reallyGlibc =
  process.platform === 'linux' &&
  Boolean((process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime)

/** What this machine is, as the guards see it (after SHMKIT_TEST_PRETEND). */
export const platform = {
  linux: process.platform === 'linux' && !PRETEND.has('not-linux'),
  glibc: reallyGlibc && !PRETEND.has('not-linux') && !PRETEND.has('not-glibc'),
  darwin: process.platform === 'darwin',
  /** Linux with musl (not simulated: tests of musl's own answers need the real one). */
  musl: process.platform === 'linux' && !reallyGlibc,
  /** 'qemu-user' when the suite runs under user-mode emulation (set by scripts/test-arm64.mjs). */
  emulator: process.env.SHMKIT_TEST_EMULATOR ?? null,
  /**
   * Each handle's buffer lies over a mapping of its own (Linux's duplicating `mremap`), so
   * close() blanks its views even while a semaphore or mutex keeps the region: not on macOS,
   * and not under qemu-user, which refuses that `mremap` (see the README's Memory safety).
   */
  mappingPerHandle:
    process.platform === 'linux' && !PRETEND.has('not-linux') && process.env.SHMKIT_TEST_EMULATOR !== 'qemu-user',
}
/** /proc of this process and of others, as Linux gives it. */
export const procAvailable = platform.linux && existsSync('/proc/self/maps')

/**
 * The file a named semaphore `name` (without `/`) is kept in on Linux: shmkit's own
 * `/dev/shm/sem.NAME` with glibc and musl alike; on macOS it is a kernel object, not a file.
 */
export function semaphoreFile(name: string): string {
  if (process.platform !== 'linux') throw new Error('named semaphores are not files on this platform')
  return `/dev/shm/sem.${name}`
}
/** The file a named segment `name` (without `/`) is kept in on Linux. */
export function segmentFile(name: string): string {
  if (process.platform !== 'linux') throw new Error('shared-memory segments are not files on this platform')
  return `/dev/shm/${name}`
}

type Test = TestFn
/**
 * `test` where `ok`, otherwise a stand-in whose tests (and `.serial` ones) are all skipped,
 * after printing why once.
 */
export function onlyIf(test: Test, ok: boolean, reason: string): Test {
  if (ok) return test
  const spec = basename(test.meta.file.replace(/^file:\/\//, ''))
  console.log(`${spec}: skipping the tests that need ${reason}`)
  const skip = (...args: unknown[]) => (test.skip as (...a: unknown[]) => void)(...args)
  const serial = (...args: unknown[]) => (test.serial.skip as (...a: unknown[]) => void)(...args)
  return Object.assign(skip, test, {
    skip: test.skip,
    serial: Object.assign(serial, test.serial, { skip: test.serial.skip }),
  }) as unknown as Test
}
/** One condition of `guardTitles`: where `ok` is false, tests whose title matches are skipped. */
export interface TitleGuard {
  ok: boolean
  /** What those tests need, printed with each skip. */
  need: string
  titles: Array<string | RegExp>
}
/**
 * `test`, except that a test whose title matches a guard that does not hold here is skipped,
 * with its reason printed. Lets a spec name its platform-bound tests in one place at its top.
 */
export function guardTitles(test: Test, guards: TitleGuard[]): Test {
  const spec = basename(test.meta.file.replace(/^file:\/\//, ''))
  const failing = (title: unknown) =>
    typeof title === 'string'
      ? guards.find((g) => !g.ok && g.titles.some((m) => (typeof m === 'string' ? title.startsWith(m) : m.test(title))))
      : undefined
  const wrap =
    (run: (...a: unknown[]) => void, skip: (...a: unknown[]) => void) =>
    (title: unknown, ...rest: unknown[]) => {
      const guard = failing(title)
      if (!guard) return run(title, ...rest)
      console.log(`${spec}: skipping '${String(title)}': needs ${guard.need}`)
      return skip(title, ...rest)
    }
  const call = (f: unknown) => f as (...a: unknown[]) => void
  const serial = wrap(call(test.serial), call(test.serial.skip))
  return Object.assign(wrap(call(test), call(test.skip)), test, {
    serial: Object.assign(serial, test.serial),
  }) as unknown as Test
}

/** Tests that need Linux (/dev/shm, /proc, /dev/zero, fork). */
export const linuxOnly = (test: Test, what: string) => onlyIf(test, platform.linux, `Linux (${what})`)
/** Tests that need Linux with glibc. */
export const glibcOnly = (test: Test, what: string) => onlyIf(test, platform.glibc, `glibc (${what})`)
/** Tests that read /proc. */
export const withProc = (test: Test, what: string) => onlyIf(test, procAvailable, `/proc (${what})`)

/**
 * Runs the fixture `name` as another user (`uid`/`gid`), from a copy that user can read: the
 * checkout may sit in a directory others cannot enter (a 0700 home or `mktemp -d`). The copy
 * (fixture, the package's JavaScript files, the binaries; Node too when others cannot reach it) is a
 * 0755 temporary directory, removed when the test ends.
 */
export function runNodeAs(
  t: ExecutionContext,
  name: string,
  args: string[],
  { uid, gid }: { uid: number; gid: number },
): Promise<Ran> {
  const root = join(here, '..')
  const dir = mkdtempSync(join(tmpdir(), 'shmkit-other-user-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  chmodSync(dir, 0o755)
  mkdirSync(join(dir, '__test__', 'fixtures'), { recursive: true, mode: 0o755 })
  // The package's own JavaScript files (package.json "files") and the built binaries.
  const shipped = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { files: string[] }).files
  const copies = [
    ...shipped.filter((f) => /\.(c|m)?js$/.test(f)),
    ...readdirSync(root).filter((f) => /^shmkit\..+\.node$/.test(f)),
  ]
  for (const file of copies) copyFileSync(join(root, file), join(dir, file))
  copyFileSync(fixture(name), join(dir, '__test__', 'fixtures', name))
  let node = process.execPath
  if (!reachableByOthers(node)) {
    node = join(dir, 'node')
    copyFileSync(process.execPath, node)
  }
  for (const file of readdirSync(dir)) chmodSync(join(dir, file), 0o755)
  chmodSync(join(dir, '__test__', 'fixtures', name), 0o644)
  return runNode(join(dir, '__test__', 'fixtures', name), args, { uid, gid, cwd: dir, node })
}

/** Whether other users can reach `path`: every directory above it is searchable by them. */
function reachableByOthers(path: string): boolean {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) return false
    if (dir === dirname(dir)) return true
  }
}
