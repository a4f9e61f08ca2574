#!/usr/bin/env node
// `npm run demo`: each technique sharing data with a second process.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(import.meta.url)
let SharedMemory
try {
  ;({ SharedMemory } = require('../index.js'))
} catch {
  console.log('building the addon first (npm run build)…')
  spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' })
  ;({ SharedMemory } = require('../index.js'))
}

const child = (code, options = {}) =>
  spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', cwd: root, ...options })
const load = `import { createRequire } from 'node:module'; const { SharedMemory } = createRequire(process.cwd() + '/')('./index.js');`

console.log('1-2. /dev/zero and anonymous mappings are shared with fork()ed children (the Rust core):')
spawnSync('cargo', ['run', '--quiet', '--release', '-p', 'shmkit', '--example', 'seed'], {
  cwd: root,
  stdio: 'inherit',
})

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

console.log('\n4. an fd-backed region (memfd) handed to a spawned child as fd 3:')
const fdShm = SharedMemory.memfd(4096)
new Float64Array(fdShm.buffer)[0] = Math.PI
const r2 = child(
  `${load} const s = SharedMemory.fromFd(3); const f = new Float64Array(s.buffer);
   console.log('   child reads:', f[0]); f[1] = f[0] * 2; s.close()`,
  { stdio: ['ignore', 'pipe', 'pipe', fdShm.fd] },
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
