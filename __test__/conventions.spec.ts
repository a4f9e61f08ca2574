// Checks of docs/api-conventions.md that hold for the whole API: every error code is in the
// ShmErrorCode type, and every handle with close() also has [Symbol.dispose].
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

import test from 'ava'

import * as shmkit from '../index.js'
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
  // Quoted codes, and the names listed in error.rs's `codes!` (one a line, each a constant
  // holding its own name).
  const thrown = new Set(
    texts.flatMap((text) =>
      [...text.matchAll(/['"]((?:ERR|ABORT)_[A-Z_]+)['"]/g), ...text.matchAll(/^\s*((?:ERR|ABORT)_[A-Z_]+),$/gm)].map(
        (m) => m[1],
      ),
    ),
  )
  t.true(thrown.size > 5, `found the codes: ${[...thrown].join(', ')}`)
  const missing = [...thrown].filter((code) => !listed.has(code))
  t.deepEqual(missing, [], 'codes missing from ShmErrorCode')
})

test('every class with close() is disposable: [Symbol.dispose] is close', (t) => {
  const classes = Object.entries(shmkit as Record<string, unknown>).flatMap(([name, value]) => {
    const proto =
      typeof value === 'function' ? (value.prototype as Record<PropertyKey, unknown> | undefined) : undefined
    return proto && typeof proto.close === 'function' ? [[name, proto] as const] : []
  })
  t.true(classes.length >= 4, `classes with close(): ${classes.map(([name]) => name).join(', ')}`)
  for (const [name, proto] of classes) t.is(proto[Symbol.dispose], proto.close, name)
})
