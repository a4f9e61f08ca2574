#!/usr/bin/env node
// `npm run test:runtimes`: the smoke lane for the other runtimes a Node user runs, Bun and Deno
// (pinned, installed from npm by scripts/runtimes.mjs). For each, this Node process creates a
// named segment and two named semaphores and exchanges messages with scripts/runtime-smoke.mjs
// running in that runtime, which then checks close safety, shareWith to a spawned Node child,
// RobustMutex, list() and fork()'s refusal; afterwards this process opens the segment and the
// semaphore the runtime left, and imports and requires shmkit there from a project that links it
// into node_modules. Every name is unlinked, whatever happens. linux-x64 (glibc) only:
// the runtimes' npm packages used here are for that platform.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { RUNTIMES, runtimeBinary } from './runtimes.mjs'
import { ensureBuilt, ensureInstalled } from './setup.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const ROUNDS = 200 // as in runtime-smoke.mjs

ensureInstalled()
ensureBuilt()
const { Semaphore, SharedMemory } = createRequire(import.meta.url)('../index.js')

const lanes = {
  bun: (binary, args) => [binary, [...args]],
  deno: (binary, args) => [binary, ['run', '--allow-all', ...args]],
}

/** `import`/`require('shmkit')` from a project whose node_modules/shmkit links to this checkout. */
function linked(runtime, binary) {
  const project = mkdtempSync(join(tmpdir(), 'shmkit-linked-'))
  try {
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'linked', private: true, type: 'module' }))
    mkdirSync(join(project, 'node_modules'))
    symlinkSync(join(here, '..'), join(project, 'node_modules', 'shmkit'), 'dir')
    const check = `if (SharedMemory.anonymous(4096).size !== 4096) throw new Error('no region')`
    writeFileSync(join(project, 'esm.mjs'), `import { SharedMemory } from 'shmkit'\n${check}\n`)
    writeFileSync(join(project, 'cjs.cjs'), `const { SharedMemory } = require('shmkit')\n${check}\n`)
    for (const program of ['esm.mjs', 'cjs.cjs']) {
      const [command, args] = lanes[runtime](binary, [program])
      const ran = spawnSync(command, args, { cwd: project, encoding: 'utf8', timeout: 60_000 })
      assert.equal(ran.status, 0, `${runtime} ${program} with a linked node_modules/shmkit:\n${ran.stderr}`)
    }
    console.log('ok import and require from a linked node_modules/shmkit')
  } finally {
    rmSync(project, { recursive: true, force: true })
  }
}

async function lane(runtime) {
  const binary = runtimeBinary(runtime)
  const name = `rt${randomBytes(5).toString('hex')}`
  const names = { shm: name, request: `${name}a`, reply: `${name}b`, back: `${name}c`, backSem: `${name}d` }
  const started = Date.now()
  try {
    const shm = SharedMemory.create(names.shm, 4096)
    const request = Semaphore.create(names.request)
    const reply = Semaphore.create(names.reply)
    const words = new Uint32Array(shm.buffer)
    const [command, args] = lanes[runtime](binary, [join(here, 'runtime-smoke.mjs'), name, process.execPath])
    const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit'] })
    const exited = once(child, 'exit')
    let gone = false
    void exited.then(() => (gone = true))
    for (let i = 0; i < ROUNDS; i++) {
      words[0] = i
      request.post()
      // Poll in slices so a runtime that died is noticed instead of waited for.
      let answered = false
      for (let slice = 0; slice < 300 && !answered && !gone; slice++) answered = await reply.wait({ timeout: 100 })
      if (!answered) answered = reply.tryWait()
      assert.ok(answered, `${runtime}: no reply to message ${i}${gone ? ' (the runtime exited)' : ''}`)
      assert.equal(words[1], i * 2 + 1, `${runtime}: reply ${i}`)
    }
    const [code, signal] = await exited
    assert.equal(code, 0, `${runtime} exited with ${signal ?? code}`)
    for (const handle of [request, reply, shm]) handle.close()
    // What the runtime created, opened by name from Node after it exited.
    const back = SharedMemory.open(names.back)
    assert.equal(new Uint32Array(back.buffer)[0], 0xdeadbeef)
    back.close()
    const backSem = Semaphore.open(names.backSem)
    assert.equal(backSem.tryWait(), true)
    backSem.close()
    linked(runtime, binary)
    console.log(
      `=== ${runtime} ${RUNTIMES[runtime].version} lane passed in ${((Date.now() - started) / 1000).toFixed(1)} s`,
    )
  } finally {
    for (const segment of [names.shm, names.back, `${name}e`]) {
      try {
        SharedMemory.unlink(segment)
      } catch {
        // never created, or removed already
      }
    }
    for (const sem of [names.request, names.reply, names.backSem]) {
      try {
        Semaphore.unlink(sem)
      } catch {
        // never created, or removed already
      }
    }
  }
}

if (process.platform !== 'linux' || process.arch !== 'x64') {
  throw new Error(
    `test:runtimes uses the linux-x64 builds of Bun and Deno; this is ${process.platform}-${process.arch}`,
  )
}
const runtimes = process.argv.length > 2 ? process.argv.slice(2) : Object.keys(lanes)
for (const runtime of runtimes) {
  console.log(`\n=== ${runtime} lane`)
  await lane(runtime)
}
console.log(`\n=== test:runtimes passed (${runtimes.join(', ')})`)
