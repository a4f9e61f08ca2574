// Property test: random sequences of every API call, with valid and invalid arguments, in any
// order. The process must never crash, every error must be typed, and at the end nothing may be
// left behind: no descriptors, no mappings, no names.
import { writeSync } from 'node:fs'

import fc from 'fast-check'
import anyTest from 'ava'

import { Semaphore, SharedMemory, waitMechanism } from '../index.js'
import { action, type State, step, typedCode } from './fuzz-steps.js'
import { fdTargets, newFds, sharedMappingCount, shmEntries, turn, uniqueName, linuxOnly } from './helpers.js'

const test = linuxOnly(anyTest, 'fork(), /dev/zero and /proc')

test.serial('thousands of random calls: no crash, only typed errors, nothing left behind', async (t) => {
  const prefix = uniqueName(t, 'z').slice(0, 9)
  // This thread's async-wait mechanism (an io_uring and its eventfd, or a threadsafe
  // function) lives as long as the thread: make it before counting descriptors.
  t.log(`async waits: ${waitMechanism()}`)
  const fds = fdTargets()
  const shared = sharedMappingCount()
  let steps = 0
  let errors = 0
  const succeeded = new Map<string, number>()
  await fc.assert(
    fc.asyncProperty(fc.array(action, { minLength: 100, maxLength: 300 }), async (actions) => {
      if (process.env.FUZZ_TRACE) writeSync(2, 'RUN\n')
      const s: State = {
        prefix,
        names: [0, 1, 2, 3].map((i) => `${i % 2 ? '/' : ''}${prefix}${i}`),
        handles: [],
        views: [],
        mutexes: [],
        semaphores: [],
        waits: [],
        tokens: [],
      }
      try {
        for (const a of actions) {
          steps++
          try {
            step(s, a)
            succeeded.set(a.op, (succeeded.get(a.op) ?? 0) + 1)
          } catch (error) {
            errors++
            const e = error as NodeJS.ErrnoException
            if (e instanceof TypeError && /detached|out of bounds|Offset is outside/.test(e.message) && !e.code)
              continue
            if (e instanceof RangeError && !e.code && /offset|length|bounds|Invalid typed array/i.test(e.message))
              continue
            if (!(e instanceof Error) || typeof e.code !== 'string' || !typedCode.test(e.code)) {
              throw new Error(
                `untyped error from ${JSON.stringify(a, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}: ${String(error)}`,
              )
            }
          }
        }
        // Every async wait settles (in time), and only with typed rejections.
        await Promise.race([
          Promise.all(s.waits),
          new Promise((_, reject) => setTimeout(() => reject(new Error('an async wait never settled')), 30_000)),
        ])
      } finally {
        // A token keeps its region mapped until redeemed: redeem the rest, then close all.
        for (const token of s.tokens.splice(0)) s.handles.push(SharedMemory.from(token))
        for (const sem of s.semaphores) sem.close()
        await Promise.allSettled(s.waits)
        for (const m of s.mutexes) {
          if (!m.closed && m.held) m.unlock() // close() never unlocks; a held lock keeps its region mapped
          m.close()
        }
        for (const h of s.handles) h.close()
        // Everything created under the prefix, pool names and junk-suffixed ones alike.
        for (const entry of shmEntries()) {
          try {
            if (entry.startsWith(prefix)) SharedMemory.unlink(entry)
            else if (entry.startsWith(`sem.${prefix}`)) Semaphore.unlink(entry.slice(4))
          } catch {}
        }
      }
    }),
    {
      numRuns: Number(process.env.FUZZ_RUNS ?? 25),
      seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31),
      verbose: true,
    },
  )
  await turn()
  t.log(
    `${steps} steps, ${errors} typed errors; succeeded: ${[...succeeded].map(([op, n]) => `${op} ${n}`).join(', ')}`,
  )
  // The main kinds of call got through, so the errors are not all there is.
  for (const op of [
    'anonymous',
    'devZero',
    'memfd',
    'create',
    'view',
    'touch',
    'close',
    'mutexInit',
    'lock',
    'semInitIn',
    'semPost',
    'semWait',
    'shareWith',
    'list',
    'closeInFlight',
    'share',
    'redeem',
  ]) {
    t.true((succeeded.get(op) ?? 0) > 0, `${op} never succeeded`)
  }
  t.true(steps >= Number(process.env.FUZZ_RUNS ?? 25) * 100)
  t.deepEqual(newFds(fds), [], 'descriptors opened and not closed')
  t.is(sharedMappingCount(), shared, 'shared-memory mappings')
  t.deepEqual(
    shmEntries().filter((e) => e.startsWith(prefix) || e.startsWith(`sem.${prefix}`)),
    [],
    'names',
  )
})
