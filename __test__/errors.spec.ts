// Every error code the binding or the entry point can throw is listed in the ShmErrorCode type,
// so TypeScript users can switch over them.
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

import test from 'ava'

import { here } from './helpers.js'

const root = join(here, '..')
const source = join(root, 'crates', 'shmkit-node', 'src')

test('every ERR_* code thrown by the binding or index.js is in ShmErrorCode', (t) => {
  const typings = readFileSync(join(root, 'index.d.ts'), 'utf8')
  const union = /export type ShmErrorCode =([^]*?)\n\n/.exec(typings)?.[1] ?? ''
  const listed = new Set([...union.matchAll(/'([A-Z_]+)'/g)].map((m) => m[1]))
  const texts = [
    readFileSync(join(root, 'index.js'), 'utf8'),
    ...readdirSync(source, { recursive: true })
      .filter((f) => String(f).endsWith('.rs'))
      .map((f) => readFileSync(join(source, String(f)), 'utf8')),
  ]
  const thrown = new Set(
    texts.flatMap((text) => [...text.matchAll(/['"]((?:ERR|ABORT)_[A-Z_]+)['"]/g)].map((m) => m[1])),
  )
  t.true(thrown.size > 5, `found the codes: ${[...thrown].join(', ')}`)
  const missing = [...thrown].filter((code) => !listed.has(code))
  t.deepEqual(missing, [], 'codes missing from ShmErrorCode')
})
