// Property test of region lifetimes: 2,000 short random sequences of factories at the size
// limits, views, writes, close() with native work in flight, and share()/from() across handles.
// The process must never crash, errors must be typed, every in-flight operation must complete
// normally, and afterwards no descriptor, shared mapping or name is left.
import fc from 'fast-check'
import anyTest from 'ava'

import { SharedMemory } from '../index.js'
import { inflightWork, limitSize, type State, step, typedCode } from './fuzz-steps.js'
import { fdTargets, newFds, sharedMappingCount, shmEntries, turn, uniqueName, linuxOnly } from './helpers.js'

const test = linuxOnly(anyTest, '/dev/zero, /proc/self and /dev/shm')

const pick = fc.nat({ max: 1_000 })
const size = fc.oneof(fc.integer({ min: 1, max: 3 * 4096 }), limitSize)
const action = fc.oneof(
  fc.record({ op: fc.constantFrom('anonymous' as const, 'devZero' as const, 'memfd' as const), size }),
  fc.record({
    op: fc.constantFrom('create' as const, 'openOrCreate' as const),
    pick,
    junkName: fc.constant(null),
    size,
  }),
  fc.record({ op: fc.constant('open' as const), pick, junkName: fc.constant(null) }),
  fc.record({ op: fc.constant('close' as const), pick }),
  fc.record({
    op: fc.constant('view' as const),
    pick,
    type: fc.constantFrom('u8', 'f64', 'dv', 'buf', 'i32'),
    offset: fc.nat({ max: 9000 }),
  }),
  fc.record({ op: fc.constant('touch' as const), pick, at: fc.nat({ max: 1_000_000 }), value: fc.integer() }),
  fc.record({ op: fc.constant('closeInFlight' as const), pick, work: inflightWork, offset: fc.nat({ max: 9000 }) }),
  fc.record({ op: fc.constant('share' as const), pick }),
  fc.record({ op: fc.constant('redeem' as const), pick, junkToken: fc.constant(null) }),
)

test.serial('2,000 random lifetime sequences: no crash, typed errors only, nothing left behind', async (t) => {
  t.timeout(10 * 60_000) // 2,000 sequences take about a minute on a busy 2-core machine
  const prefix = uniqueName(t, 'l').slice(0, 9)
  const fds = fdTargets()
  const shared = sharedMappingCount()
  let sequences = 0
  let steps = 0
  const succeeded = new Map<string, number>()
  await fc.assert(
    fc.asyncProperty(fc.array(action, { minLength: 5, maxLength: 25 }), async (actions) => {
      sequences++
      const s: State = {
        prefix,
        names: [0, 1, 2].map((i) => `${prefix}${i}`),
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
            step(s, a as never)
            succeeded.set(a.op, (succeeded.get(a.op) ?? 0) + 1)
          } catch (error) {
            const e = error as NodeJS.ErrnoException
            if (e instanceof TypeError && /detached|out of bounds|Offset is outside/.test(e.message) && !e.code)
              continue
            if (e instanceof RangeError && !e.code && /offset|length|bounds|Invalid typed array/i.test(e.message))
              continue
            if (typeof e?.code !== 'string' || !typedCode.test(e.code)) throw error
          }
        }
        await Promise.all(s.waits) // every in-flight operation completed normally
      } finally {
        for (const token of s.tokens.splice(0)) s.handles.push(SharedMemory.from(token))
        await Promise.allSettled(s.waits)
        for (const h of s.handles) h.close()
        for (const entry of shmEntries()) if (entry.startsWith(prefix)) SharedMemory.unlink(entry)
      }
    }),
    {
      numRuns: Number(process.env.FUZZ_LIFETIME_RUNS ?? 2000),
      seed: Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31),
      verbose: true,
    },
  )
  await turn()
  t.log(
    `${sequences} sequences, ${steps} steps; succeeded: ${[...succeeded].map(([op, n]) => `${op} ${n}`).join(', ')}`,
  )
  t.true(sequences >= Number(process.env.FUZZ_LIFETIME_RUNS ?? 2000))
  for (const op of ['anonymous', 'create', 'closeInFlight', 'share', 'redeem', 'touch']) {
    t.true((succeeded.get(op) ?? 0) > 0, `${op} never succeeded`)
  }
  t.deepEqual(newFds(fds), [], 'descriptors opened and not closed')
  t.is(sharedMappingCount(), shared, 'shared-memory mappings')
  t.deepEqual(
    shmEntries().filter((e) => e.startsWith(prefix)),
    [],
    'names',
  )
})
