// Found by the lifetime property test: close() right after zlib.deflate(view, cb) aborted the
// process (node_zlib.cc: Buffer::IsWithinBounds), because close() detached the buffer and zlib
// writes its input chunk by chunk through offsets into it. close() now blanks the memory in
// place instead; a Channel's released zero-copy view likewise. Each kind runs in a child so an abort shows as a signal, not a dead test run.
import test from 'ava'

import { fixture, runNode, uniqueName } from '../helpers.js'

for (const kind of ['anonymous', 'devZero', 'memfd', 'named', 'file', 'private']) {
  test(`deflate of a ${kind} region, then close(), 50 times: no abort`, async (t) => {
    const ran = await runNode(fixture('zlib-close.mjs'), [kind, uniqueName(t), '50'], { timeoutMs: 120_000 })
    t.is(ran.signal, null, ran.stderr)
    t.is(ran.code, 0, ran.stderr)
    t.is(ran.stdout.trim(), 'deflated 50')
  })
}

test('deflate of a Channel view, then release(), 50 times: no abort', async (t) => {
  const ran = await runNode(fixture('zlib-close.mjs'), ['channelView', '-', '50'], { timeoutMs: 120_000 })
  t.is(ran.signal, null, ran.stderr)
  t.is(ran.code, 0, ran.stderr)
  t.is(ran.stdout.trim(), 'deflated 50')
})
