// fork() and libuv's thread pool: a pool thread inside async work (crypto, dns.lookup, fs, zlib)
// may hold a lock a child would inherit held. fork() parks every pool thread first, so no
// work is mid-way when the child is made; work that does not finish in time is a refusal.
import anyTest from 'ava'

import { fixture, runNode, linuxOnly } from './helpers.js'

const onLinux = linuxOnly(anyTest, 'fork() from Node')

onLinux(
  '1,000 forks with async crypto, dns.lookup and fs work in flight: no hang, crash or wrong result',
  async (t) => {
    t.timeout(5 * 60_000) // about 35 s on an idle 2-core machine, much more under load
    const ran = await runNode(fixture('fork-pool-stress.mjs'), ['1000'], {
      execArgv: ['--single-threaded'],
      timeoutMs: 280_000,
    })
    t.is(ran.code, 0, ran.stderr)
    const report = JSON.parse(ran.stdout) as Record<string, unknown>
    t.log(JSON.stringify(report))
    t.like(report, { forks: 1000, ok: 1000, hang: 0, crash: 0, wrong: 0, refused: 0 })
    t.true((report.forksWithWorkInFlight as number) > 500, 'most forks had thread-pool work in flight')
  },
)

onLinux(
  'a pool thread stuck in work makes fork() refuse with the reason, and fork works once it is done',
  async (t) => {
    const ran = await runNode(fixture('fork-pool-busy.mjs'), [], { execArgv: ['--single-threaded'] })
    t.is(ran.code, 0, ran.stderr)
    const result = JSON.parse(ran.stdout) as { busy: { code: string; message: string }; read: number; idle: object }
    t.is(result.busy.code, 'ERR_SHM_FORK_UNSAFE')
    t.regex(result.busy.message, /thread-pool threads were still busy .* wait for that work to finish before fork\(\)/)
    t.is(result.read, 1)
    t.deepEqual(result.idle, { code: 7, signal: null })
  },
)
