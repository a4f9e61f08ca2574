// Shared test helpers: unique names that are always cleaned up, and real child processes.
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import type { ExecutionContext } from 'ava'

import { Semaphore, SharedMemory } from '../index.js'

export const here = dirname(fileURLToPath(import.meta.url))
export const fixture = (name: string) => join(here, 'fixtures', name)

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
    ask(command: string, timeoutMs = 30_000): Promise<string> {
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
