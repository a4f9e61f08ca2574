// Found by the property test: glibc linked the robust mutexes a thread holds through the mutexes'
// own bytes, so overwriting a held mutex, or unmapping it, made the next unlock write through a
// wild pointer (SIGSEGV). RobustMutex no longer uses glibc's mutex, but the same misuse must
// still be harmless. Each case runs in its own process so a regression shows as a crash.
import test from 'ava'

import { fixture, runNode } from '../helpers.js'

for (const scenario of ['overwrite-then-unlock', 'overwrite-then-other', 'close-while-held', 'gc-while-held']) {
  test(`no crash: ${scenario}`, async (t) => {
    const ran = await runNode(fixture('robust-list.mjs'), [scenario], { execArgv: ['--expose-gc'] })
    t.is(ran.signal, null, ran.stderr)
    t.is(ran.code, 0, ran.stderr)
    t.is(ran.stdout.trim(), `survived ${scenario}`)
  })
}
