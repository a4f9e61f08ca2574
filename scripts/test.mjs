#!/usr/bin/env node
// `npm test`: everything a fresh clone needs, in order. Installs the JS dependencies, builds
// the addon (release, as shipped), runs the Rust tests, then the JS tests. Stops at the first
// failure with its exit code.
import { spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

function run(title, command, args, env = {}) {
  console.log(`\n=== ${title}: ${command} ${args.join(' ')}`)
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } })
  if (result.status !== 0) {
    console.error(`\n=== ${title} failed (${result.signal ?? `exit ${result.status}`})`)
    process.exit(result.status || 1)
  }
}

const lock = join(root, 'package-lock.json')
const installed = join(root, 'node_modules', '.package-lock.json')
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
  run('install JS dependencies', 'npm', ['ci', '--no-audit', '--no-fund'])
}
run('build the addon', 'npm', ['run', 'build'])
run('Rust tests', 'cargo', ['test', '--workspace', '--release'])
run('JS tests', 'npx', ['ava'], { FORCE_COLOR: '0' })
console.log('\n=== all tests passed')
