#!/usr/bin/env node
// `npm run demo`: each technique sharing data with a second process. fork() needs
// `node --single-threaded`, so the demo restarts itself with that flag.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { ensureBuilt, ensureInstalled, root } from './setup.mjs'

const self = fileURLToPath(import.meta.url)
if (!process.execArgv.includes('--single-threaded')) {
  // A fresh clone: install and build first, as `npm test` does.
  ensureInstalled()
  ensureBuilt()
  const again = spawnSync(
    process.execPath,
    ['--single-threaded', ...process.execArgv, self, ...process.argv.slice(2)],
    {
      stdio: 'inherit',
    },
  )
  process.exit(again.status ?? 1)
}

const require = createRequire(import.meta.url)
const { SharedMemory, fork, getpid, childWrite, shareWith } = require('../index.js')

const child = (code, options = {}) =>
  spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', cwd: root, ...options })
const load = `import { createRequire } from 'node:module'; const { SharedMemory, inherited } = createRequire(process.cwd() + '/')('./index.js');`

for (const [n, technique, label] of [
  [1, 'devZero', 'a MAP_SHARED mapping of /dev/zero'],
  [2, 'anonymous', 'an anonymous MAP_SHARED mapping'],
]) {
  console.log(`\n${n}. ${label}, shared with a child made by fork():`)
  const area = SharedMemory[technique](4096)
  const view = new Int32Array(area.buffer)
  view[0] = 20
  const forked = fork(() => {
    childWrite(1, `   child ${getpid()} reads ${view[0]} and writes ${view[0] + 22}\n`)
    view[1] = view[0] + 22
  })
  const { code } = forked.wait({ timeout: 60_000 }) ?? { code: 'still running after 60 s' }
  console.log(`   parent ${process.pid} reads ${view[1]} after the child (pid ${forked.pid}) exited with code ${code}`)
  area.close()
}

console.log('   with { private: true } (MAP_PRIVATE, copy-on-write) the child writes its own copy:')
const priv = SharedMemory.anonymous(4096, { private: true })
const privView = new Int32Array(priv.buffer)
fork(() => {
  privView[1] = 42
}).wait({ timeout: 60_000 })
console.log(`   parent reads ${privView[1]}`)
priv.close()

console.log('\n3. named POSIX shared memory between two unrelated Node processes:')
const name = `demo${process.pid}`
const shm = SharedMemory.create(name, 4096)
Buffer.from(shm.buffer).write('written by the parent')
const r = child(
  `${load} const s = SharedMemory.open('${name}'); const b = Buffer.from(s.buffer);
   console.log('   child reads:', JSON.stringify(b.toString('utf8', 0, 21))); b.write('and the child answers', 100); s.close()`,
)
process.stdout.write(r.stdout + r.stderr)
console.log('   parent reads:', JSON.stringify(Buffer.from(shm.buffer).toString('utf8', 100, 121)))
shm.close()
SharedMemory.unlink(name)

console.log('\n4. an fd-backed region (memfd) handed to a spawned child with shareWith():')
const fdShm = SharedMemory.memfd(4096)
new Float64Array(fdShm.buffer)[0] = Math.PI
const r2 = child(
  `${load} const [s] = inherited(); const f = new Float64Array(s.buffer);
   console.log('   child reads:', f[0]); f[1] = f[0] * 2; s.close()`,
  shareWith([fdShm], { stdio: ['ignore', 'pipe', 'pipe'] }),
)
process.stdout.write(r2.stdout + r2.stderr)
console.log('   parent reads:', new Float64Array(fdShm.buffer)[1])
fdShm.close()

console.log('\n5. a file mapping, durable after flush():')
const dir = mkdtempSync(join(tmpdir(), 'shmkit-demo-'))
const file = SharedMemory.file(join(dir, 'data.bin'), 4096)
const r3 = child(
  `${load} const s = SharedMemory.file(${JSON.stringify(join(dir, 'data.bin'))}); Buffer.from(s.buffer).write('on disk'); s.flush(); s.close()`,
)
process.stdout.write(r3.stdout + r3.stderr)
console.log('   parent reads:', JSON.stringify(Buffer.from(file.buffer).toString('utf8', 0, 7)))
file.close()
rmSync(dir, { recursive: true })
