// An in-region semaphore shared with children made by fork(): the seed's "we still need to
// synchronize access", with the lock and the data in one anonymous region.
import anyTest from 'ava'

import { fixture, runNode, linuxOnly } from './helpers.js'

const test = linuxOnly(anyTest, 'fork() from Node')

test('4 forked children each add 1 20000 times under an in-region semaphore: the count is exact', async (t) => {
  const ran = await runNode(fixture('sem-fork.mjs'), ['4', '20000'], {
    execArgv: ['--single-threaded'],
    timeoutMs: 180_000,
  })
  t.is(ran.code, 0, ran.stderr)
  t.deepEqual(JSON.parse(ran.stdout), { statuses: ['0/null'], count: 80_000 })
})
