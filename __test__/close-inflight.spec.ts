// close() while native work still uses a view: the thread pool (zlib, crypto, fs) and the
// kernel (socket writes) hold raw pointers into the region. close() must never unmap under
// them: no crash, no EFAULT, never another region's bytes, and once the views are collected
// the fds, shared mappings and memory are back where they started.
import anyTest from 'ava'

import { fixture, runNode, linuxOnly } from './helpers.js'

const test = linuxOnly(anyTest, '/dev/zero among the kinds of region')

const ROUNDS = 200
const operations = ['zlib', 'pbkdf2', 'randomFill', 'fs.write', 'fs.read', 'socket.write']

interface Usage {
  fds: number
  shared: number
  regionSized: number
  rss: number
}

for (const operation of operations) {
  test(`${operation}: close() while it is in flight, ${ROUNDS} times over every kind of region`, async (t) => {
    t.timeout(5 * 60_000) // 35-50 s each on a loaded 2-core machine
    const ran = await runNode(fixture('close-inflight.mjs'), [operation, String(ROUNDS)], {
      execArgv: ['--expose-gc'],
      timeoutMs: 280_000,
    })
    t.is(ran.signal, null, `crashed: ${ran.stderr}`)
    t.is(ran.code, 0, ran.stderr)
    const report = JSON.parse(ran.stdout) as {
      rounds: number
      outcomes: Record<string, number>
      foreignBytes: number
      before: Usage
      after: Usage
    }
    t.log(JSON.stringify(report))
    t.deepEqual(report.outcomes, { ok: report.rounds }, 'every operation completed without EFAULT')
    t.is(report.foreignBytes, 0, 'no byte of a region mapped later was ever written out')
    t.is(report.after.fds, report.before.fds, 'fds back to baseline')
    t.is(report.after.shared, report.before.shared, 'shared mappings back to baseline')
    t.is(report.after.regionSized, report.before.regionSized, 'every blanked range was released')
    // 200 regions of 4 MiB, each filled: a leak of them would be 800 MiB.
    t.true(report.after.rss - report.before.rss < 100 * 2 ** 20, `RSS grew by ${report.after.rss - report.before.rss}`)
  })
}
