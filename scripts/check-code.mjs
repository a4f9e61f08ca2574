#!/usr/bin/env node
// `npm run check`: what the tests do not see. The crates build with the oldest Rust they
// declare (`rust-version` in Cargo.toml, installed with rustup if missing), clippy (`-D
// warnings`) and oxlint pass with the project's rules (Cargo.toml, .oxlintrc.json), rustfmt
// and prettier find nothing to change, and the TypeScript of the tests type-checks against
// the generated index.d.ts. Stops at the first failure with its exit code; prints each step's
// time.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import { ensureInstalled, root, run } from './setup.mjs'

const manifest = readFileSync(join(root, 'Cargo.toml'), 'utf8')
const msrv = manifest.match(/^\[workspace\.package\][^[]*?^rust-version\s*=\s*"([^"]+)"/ms)?.[1]
if (!msrv) {
  console.error('Cargo.toml declares no rust-version under [workspace.package]')
  process.exit(1)
}

const started = performance.now()
const times = []
function step(title, command, args) {
  const t0 = performance.now()
  run(title, command, args)
  times.push(`${((performance.now() - t0) / 1000).toFixed(1).padStart(7)} s  ${title}`)
}

ensureInstalled()
step(`install Rust ${msrv} (the declared rust-version)`, 'rustup', [
  'toolchain',
  'install',
  msrv,
  '--profile',
  'minimal',
])
// Its own target directory, so the pinned toolchain's build cache is left alone.
step(`cargo check with Rust ${msrv}`, 'cargo', [
  `+${msrv}`,
  'check',
  '--workspace',
  '--all-targets',
  '--all-features',
  '--locked',
  '--target-dir',
  join('target', `msrv-${msrv}`),
])
step('clippy', 'cargo', ['clippy', '--workspace', '--all-targets', '--locked', '--', '-D', 'warnings'])
step('rustfmt', 'cargo', ['fmt', '--all', '--', '--check'])
step('oxlint', 'npx', ['oxlint', '--deny-warnings'])
step('prettier', 'npx', ['prettier', '--check', '.'])
step('typecheck', 'npx', ['tsc', '--noEmit', '-p', 'tsconfig.json'])

console.log(`\n=== checks passed\n${times.join('\n')}`)
console.log(`${((performance.now() - started) / 1000).toFixed(1).padStart(7)} s  total`)
