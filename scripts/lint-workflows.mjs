#!/usr/bin/env node
// `npm run lint:workflows`: checks every .github/workflows file against the workflow schema
// (action-validator, a dev dependency), then with actionlint (expressions, matrix and `needs`
// references, runner labels, and shellcheck on `run:` scripts when shellcheck is installed).
// actionlint is a Go program: it runs from PATH, or through `go run` at a pinned version when Go
// is installed; with neither, the script says that only the schema was checked.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const actionlintModule = 'github.com/rhysd/actionlint/cmd/actionlint@v1.7.12'
const workflows = readdirSync(join(root, '.github', 'workflows'))
  .filter((file) => /\.ya?ml$/.test(file))
  .map((file) => join('.github', 'workflows', file))
if (workflows.length === 0) throw new Error('no workflow files found')

let failed = false
function run(command, args) {
  console.log(`$ ${command} ${args.join(' ')}`)
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) failed = true
}
const found = (command) => spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0

const validator = join(root, 'node_modules', '@action-validator', 'cli', 'cli.mjs')
for (const file of workflows) run(process.execPath, [validator, file])

if (found('actionlint')) run('actionlint', workflows)
else if (found('go')) run('go', ['run', actionlintModule, ...workflows])
else console.log('actionlint: not run (neither actionlint nor Go is installed): schema check only')

if (failed) process.exit(1)
console.log(`workflow files ok: ${workflows.join(', ')}`)
