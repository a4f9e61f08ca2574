// Another process truncating shared memory under our mapping. memfd regions are sealed, so it
// cannot; named segments and files have no seal, and the documented outcome is SIGBUS for the
// process that touches the lost pages.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import anyTest from 'ava'

import { SharedMemory } from '../index.js'
import { fixture, runNode, uniqueName, linuxOnly } from './helpers.js'

const onLinux = linuxOnly(anyTest, 'memfd seals and /dev/shm')

onLinux('a child cannot truncate a shared memfd: the parent keeps running and reading', async (t) => {
  using shm = SharedMemory.memfd(1 << 20)
  t.true(shm.sealed)
  const view = new Uint8Array(shm.buffer)
  view[view.length - 1] = 42
  const fd = shm.fd!
  t.teardown(() => closeSync(fd))
  const ran = await runNode(fixture('truncate-memfd.mjs'), [], { stdio: ['ignore', 'pipe', 'pipe', fd] })
  t.is(ran.code, 0, ran.stderr)
  t.deepEqual(JSON.parse(ran.stdout), { sealed: true, shrink: 'EPERM', grow: 'EPERM' })
  t.is(view[view.length - 1], 42, 'every page is still there')
})

onLinux('a growable memfd may grow but never shrink; fromFd reports an unsealed fd', async (t) => {
  using growable = SharedMemory.memfd(4096, { growable: true })
  const fd = growable.fd!
  t.teardown(() => closeSync(fd))
  const ran = await runNode(fixture('truncate-memfd.mjs'), [], { stdio: ['ignore', 'pipe', 'pipe', fd] })
  t.deepEqual(JSON.parse(ran.stdout), { sealed: true, shrink: 'EPERM', grow: 'truncated' })

  const name = uniqueName(t)
  using named = SharedMemory.create(name, 4096)
  const raw = openSync(`/dev/shm/${name}`, 'r+')
  t.teardown(() => closeSync(raw))
  using unsealed = SharedMemory.fromFd(raw)
  t.false(unsealed.sealed, 'a shared-memory object has no seals')
  t.false(named.sealed)
  using anonymous = SharedMemory.anonymous(4096)
  t.false(anonymous.sealed)
})

/** Starts the victim on `target`, truncates with `truncate` once it is ready, and returns how it ended. */
async function truncatedUnder(kind: string, target: string, truncate: () => void) {
  const child = spawn(process.execPath, [fixture('truncate-victim.mjs'), kind, target], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stdout = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
  const exited = once(child, 'exit')
  while (!stdout.includes('ready')) await once(child.stdout, 'data')
  truncate()
  child.stdin.end('go\n')
  const [code, signal] = await exited
  return { code, signal, stdout }
}

onLinux('a named segment truncated by another process: a process that touches it dies with SIGBUS', async (t) => {
  const name = uniqueName(t)
  using shm = SharedMemory.create(name, 1 << 16)
  const ended = await truncatedUnder('named', name, () => truncateSync(`/dev/shm/${name}`, 0))
  t.is(ended.signal, 'SIGBUS', `documented outcome; got ${JSON.stringify(ended)}`)
  t.false(shm.closed, 'this process only mapped it and never touched the lost pages')
})

onLinux(
  'a mapped file rewritten with writeFileSync (O_TRUNC): a process that touches it dies with SIGBUS',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'shmkit-trunc-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const path = join(dir, 'data')
    SharedMemory.file(path, 1 << 16).close()
    const ended = await truncatedUnder('file', path, () => writeFileSync(path, 'x'))
    t.is(ended.signal, 'SIGBUS', `documented outcome; got ${JSON.stringify(ended)}`)
  },
)
