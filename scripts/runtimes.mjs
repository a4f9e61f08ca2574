#!/usr/bin/env node
// Finds or installs the other JavaScript runtimes shmkit is checked in, Bun and Deno, from their
// npm packages (the official binaries), at pinned versions, cached under node_modules/.cache.
//
//   import { runtimeBinary } from './runtimes.mjs'; const bun = runtimeBinary('bun')
//   node scripts/runtimes.mjs bun      # prints the path
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Each runtime: its npm package for linux-x64 (glibc), the pinned version, the binary inside. */
export const RUNTIMES = {
  bun: { package: '@oven/bun-linux-x64', version: '1.4.5', binary: 'bin/bun' },
  deno: { package: '@deno/linux-x64-glibc', version: '2.9.6', binary: 'deno' },
}

/** The path of the runtime's binary, installed on first use. */
export function runtimeBinary(name) {
  const runtime = RUNTIMES[name]
  if (!runtime) throw new Error(`unknown runtime ${name}: one of ${Object.keys(RUNTIMES).join(', ')}`)
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`${runtime.package} only runs on linux-x64, not ${process.platform}-${process.arch}`)
  }
  const prefix = join(root, 'node_modules', '.cache', 'shmkit-runtimes', `${name}-${runtime.version}`)
  const binary = join(prefix, 'node_modules', ...runtime.package.split('/'), runtime.binary)
  if (!existsSync(binary)) {
    mkdirSync(prefix, { recursive: true })
    execFileSync(
      'npm',
      [
        'install',
        '--prefix',
        prefix,
        '--no-save',
        '--no-package-lock',
        '--no-audit',
        '--no-fund',
        '--ignore-scripts',
        `${runtime.package}@${runtime.version}`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    )
    chmodSync(binary, 0o755) // npm keeps the mode of packed files, but not every packer sets it
  }
  const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim()
  if (!version.includes(runtime.version)) throw new Error(`${binary} reports ${version}, not ${runtime.version}`)
  return binary
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(runtimeBinary(process.argv[2] ?? 'bun'))
}
