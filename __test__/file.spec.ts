// Regular-file mappings shared between two real Node processes.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { SharedMemory } from '../index.js'
import { fixture, runNode } from './helpers.js'

function tempDir(t: import('ava').ExecutionContext) {
  const dir = mkdtempSync(join(tmpdir(), 'shmkit-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

test('a file mapping written by another process is read here, and is on disk after flush', async (t) => {
  const path = join(tempDir(t), 'data.bin')
  using shm = SharedMemory.file(path, 1 << 20)
  t.is(shm.kind, 'file')
  t.is(shm.name, path)
  t.is(statSync(path).size, 1 << 20)
  t.is(statSync(path).mode & 0o777, 0o600)

  const ran = await runNode(fixture('file-writer.mjs'), [path, '500000', 'written by the child'])
  t.is(ran.code, 0, ran.stderr)
  t.is(Buffer.from(shm.buffer, 500000, 20).toString(), 'written by the child')

  Buffer.from(shm.buffer).write('parent bytes', 7)
  shm.flush()
  t.is(readFileSync(path).subarray(7, 19).toString(), 'parent bytes')
})

test('a file is mapped whole without a size, and extended but never shortened with one', (t) => {
  const path = join(tempDir(t), 'existing.bin')
  writeFileSync(path, Buffer.alloc(10_000, 1))
  using whole = SharedMemory.file(path)
  t.is(whole.size, 10_000)
  using part = SharedMemory.file(path, 100)
  t.is(part.size, 100)
  t.is(statSync(path).size, 10_000)
  using bigger = SharedMemory.file(path, 20_000)
  t.is(statSync(path).size, 20_000)
  t.is(new Uint8Array(bigger.buffer)[9_999], 1)
})

test('private and read-only file mappings never write the file', (t) => {
  const path = join(tempDir(t), 'orig.bin')
  writeFileSync(path, 'original')
  using priv = SharedMemory.file(path, null, { private: true })
  Buffer.from(priv.buffer).write('CHANGED!')
  priv.flush()
  using ro = SharedMemory.file(path, null, { readOnly: true })
  t.is(Buffer.from(ro.buffer).toString(), 'original')
  Buffer.from(ro.buffer).write('ALSO NO!')
  t.is(readFileSync(path, 'utf8'), 'original')
})

test('file errors carry the path', (t) => {
  const path = join(tempDir(t), 'missing.bin')
  t.like(
    t.throws(() => SharedMemory.file(path)),
    { code: 'ENOENT', syscall: 'open', path },
  )
  t.like(
    t.throws(() => SharedMemory.file(path, 10, { create: false })),
    { code: 'ENOENT' },
  )
  writeFileSync(path, '')
  t.like(
    t.throws(() => SharedMemory.file(path)),
    { code: 'ERR_OUT_OF_RANGE' },
  )
})
