// Helpers shared by the benchmark programs: result lines, CPU pinning and child processes.
// Every program prints `RESULT\t<id>\t<value>\t<unit>` lines on stdout; bench/run.mjs
// collects them per round.
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'

/** The addon, loaded the way a user's code would (the package entry). */
export const shmkit = createRequire(import.meta.url)('../index.js')

/** Prints one measurement for the runner. */
export function result(id, value, unit) {
  process.stdout.write(`RESULT\t${id}\t${Number(value).toPrecision(7)}\t${unit}\n`)
}

/** Whether `taskset` is there to pin processes to CPUs. */
export function canPin() {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** Pins every thread of this process (and the threads it starts later) to `cpu`. */
export function pinSelf(cpu) {
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' })
}

/** Spawns `node [execArgv] script ...args` pinned to `cpu` (`null`: not pinned). */
export function spawnNode(cpu, script, args, options = {}, execArgv = []) {
  const argv = [...execArgv, script, ...args]
  return cpu === null
    ? spawn(process.execPath, argv, options)
    : spawn('taskset', ['-c', String(cpu), process.execPath, ...argv], options)
}

/** Resolves when `child` exits with code 0, rejects otherwise. */
export function exited(child, what) {
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${what}: child exited with ${signal ?? code}`)),
    )
  })
}

/** Microseconds since `start` (a `process.hrtime.bigint()` value), per operation. */
export function usPerOp(start, end, ops) {
  return Number(end - start) / 1000 / ops
}

/** Lines in /proc/self/maps: one per mapping. */
export function mappingCount() {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').length - 1
}

/** CPU placements for ping-pong: `same` (both on CPU 0), `diff` (CPU 0 and CPU 1). */
export const PLACEMENTS = { same: [0, 0], diff: [0, 1] }
