// Handing regions to a spawned Node child: shareWith() in the parent, inherited() in the child.
import { spawn } from 'node:child_process'
import { once } from 'node:events'

import anyTest from 'ava'

import { inherited, Semaphore, SharedMemory, shareWith } from '../index.js'
import { fixture, uniqueName, uniqueSemName, guardTitles, platform } from './helpers.js'

const test = guardTitles(anyTest, [
  { ok: platform.linux, need: 'Linux (/dev/zero)', titles: ['anonymous, devZero and private regions'] },
])

function runPeer(options: ReturnType<typeof shareWith>) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [fixture('share-peer.mjs')], { ...options, stdio: options.stdio as never })
    let stdout = ''
    let stderr = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

test("a spawned child maps a memfd and a named region handed over, and both see each other's writes", async (t) => {
  using fd = SharedMemory.memfd(4096)
  const name = uniqueName(t)
  using named = SharedMemory.create(name, 4096)
  new Int32Array(fd.buffer)[0] = 41
  new Int32Array(named.buffer)[0] = 99
  const options = shareWith([fd, named], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH } })
  t.is(options.stdio.length, 4, 'the memfd travels as fd 3; the named region by name')
  t.is(options.env.PATH, process.env.PATH)
  const ran = await runPeer(options)
  t.is(ran.code, 0, ran.stderr)
  const report = JSON.parse(ran.stdout)
  t.deepEqual(report.seen, [
    { kind: 'memfd', name: null, readOnly: false, read: 41 },
    { kind: 'named', name: `/${name}`, readOnly: false, read: 99 },
  ])
  t.is(new Int32Array(fd.buffer)[1], 42, "the parent sees the child's write to the memfd")
  t.is(new Int32Array(named.buffer)[1], 100, "the parent sees the child's write to the named region")
  t.is(report.again, 0, 'inherited() consumes the hand-over')
  t.false(report.envLeft)
  t.is(report.fdsAfter, report.fdsBefore, 'the inherited descriptor was replaced by the mapping’s own')
})

test('the stdio string form and process.env are kept', async (t) => {
  using fd = SharedMemory.memfd(4096)
  const options = shareWith([fd])
  t.deepEqual(options.stdio.slice(0, 3), [undefined, undefined, undefined])
  t.is(typeof options.stdio[3], 'number')
  t.is(options.env.PATH, process.env.PATH)
  t.false('SHMKIT_INHERITED' in process.env, "the parent's own environment is untouched")
  const inherit = shareWith([fd], { stdio: 'inherit' })
  t.deepEqual(inherit.stdio.slice(0, 3), ['inherit', 'inherit', 'inherit'])
})

test('anonymous, devZero and private regions cannot be handed over', (t) => {
  using anon = SharedMemory.anonymous(64)
  using zero = SharedMemory.devZero(64)
  using priv = SharedMemory.memfd(64, { private: true })
  for (const region of [anon, zero, priv]) {
    const error = t.throws(() => shareWith([region])) as NodeJS.ErrnoException
    t.is(error.code, 'ERR_INVALID_ARG_VALUE')
    t.true(error instanceof TypeError)
  }
})

test('bad arguments', (t) => {
  using fd = SharedMemory.memfd(64)
  const code = (f: () => unknown) => (t.throws(f) as NodeJS.ErrnoException).code
  t.is(
    code(() => shareWith(fd as never)),
    'ERR_INVALID_ARG_TYPE',
  )
  t.is(
    code(() => shareWith([{}] as never)),
    'ERR_INVALID_ARG_TYPE',
  )
  t.is(
    code(() => shareWith([fd], 5 as never)),
    'ERR_INVALID_ARG_TYPE',
  )
  t.is(
    code(() => shareWith([fd], { stdio: 5 } as never)),
    'ERR_INVALID_ARG_TYPE',
  )
  const closed = SharedMemory.memfd(64)
  closed.close()
  t.is(
    code(() => shareWith([closed])),
    'ERR_SHM_CLOSED',
  )
})

test('inherited() without a hand-over is empty, and a malformed one is refused', (t) => {
  t.deepEqual(inherited(), [])
  process.env.SHMKIT_INHERITED = '{not json'
  t.teardown(() => delete process.env.SHMKIT_INHERITED)
  t.is((t.throws(() => inherited()) as NodeJS.ErrnoException).code, 'ERR_INVALID_ARG_VALUE')
  process.env.SHMKIT_INHERITED = JSON.stringify([{ kind: 'teleport' }])
  t.is((t.throws(() => inherited()) as NodeJS.ErrnoException).code, 'ERR_INVALID_ARG_VALUE')
})

test('named semaphores travel with shareWith too; an in-region one is refused with a pointer to its region', async (t) => {
  using shm = SharedMemory.memfd(8 * 1024)
  using ping = Semaphore.create(uniqueSemName(t))
  using pong = Semaphore.create(uniqueSemName(t))
  const numbers = new Float64Array(shm.buffer)
  numbers.forEach((_, i) => (numbers[i] = i))
  const child = spawn(
    process.execPath,
    [fixture('share-sem-peer.mjs')],
    shareWith([shm, ping, pong], { stdio: ['ignore', 'pipe', 'inherit'] }),
  )
  t.teardown(() => child.kill('SIGKILL'))
  let out = ''
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
  const exited = once(child, 'exit')
  ping.post()
  t.true(await pong.wait({ timeout: 30_000 }), 'the child answered')
  t.deepEqual([numbers[0], numbers[1], numbers[1023]], [0, 2, 2046])
  t.deepEqual(await exited, [0, null])
  t.is(out.trim(), `${ping.name} ${pong.name} memfd`)

  using region = SharedMemory.memfd(4096)
  using inside = Semaphore.init(region, 0, 0)
  t.like(
    t.throws(() => shareWith([inside])),
    { code: 'ERR_INVALID_ARG_VALUE' },
  )
})
