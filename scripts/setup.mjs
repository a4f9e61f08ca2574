// What a fresh clone needs before anything runs: the JS dependencies (`npm ci` when
// node_modules is missing or older than the lockfile) and the native addon (`npm run build`
// when this platform's binary is missing). Used by `npm test` and `npm run demo`.
import { spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Runs a step with inherited output; exits with its status if it fails. */
export function run(title, command, args, env = {}) {
  console.log(`\n=== ${title}: ${command} ${args.join(' ')}`)
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } })
  if (result.status !== 0) {
    console.error(`\n=== ${title} failed (${result.signal ?? `exit ${result.status}`})`)
    process.exit(result.status || 1)
  }
}

/** `npm ci` unless node_modules is there and newer than package-lock.json. */
export function ensureInstalled() {
  const lock = join(root, 'package-lock.json')
  const installed = join(root, 'node_modules', '.package-lock.json')
  if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
    run('install JS dependencies', 'npm', ['ci', '--no-audit', '--no-fund'])
  }
}

/** `npm run build` (release) unless the entry loads a binary already. */
export function ensureBuilt() {
  const probe = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(join(root, 'index.js'))})`], {
    stdio: 'ignore',
  })
  if (probe.status !== 0) run('build the addon', 'npm', ['run', 'build'])
}
