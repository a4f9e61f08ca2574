#!/usr/bin/env node
// Runs the JS suite and compares the tests it skipped with the list expected for this platform
// (__test__/skips/<leg>.txt: one `spec › title` a line, `*` for any text, `#` comments). A test skipped that the
// list does not name fails the run: a platform must not lose coverage unnoticed. With --exact, a
// listed test that ran fails too (the lists for conditions simulated here are exact).
//
// With --pretend, only the specs that use a platform guard of helpers.ts run: the simulated
// condition changes nothing but the guards' answers, so every other spec would run exactly as
// in `npm test`.
//
//   node scripts/check-skips.mjs <leg> [--exact] [--pretend not-glibc,not-linux] [-- ava args]
//   npm run test:platform-skips      # the simulated musl and macOS legs, on a glibc Linux machine
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { runAva } from './ava-tap.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const argv = process.argv.slice(2)
const dashes = argv.indexOf('--')
const own = dashes >= 0 ? argv.slice(0, dashes) : argv
const avaArgs = dashes >= 0 ? argv.slice(dashes + 1) : []
const leg = own.find((a, i) => !a.startsWith('--') && own[i - 1] !== '--pretend')
if (!leg) throw new Error('usage: check-skips.mjs <leg> [--exact] [--pretend conditions] [-- ava args]')
const exact = own.includes('--exact')
const pretend = own.includes('--pretend') ? own[own.indexOf('--pretend') + 1] : undefined

const listFile = join(root, '__test__', 'skips', `${leg}.txt`)
const expected = readFileSync(listFile, 'utf8')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line && !line.startsWith('#'))

// The specs whose tests a guard of the simulated conditions can skip.
const LINUX_GUARDS =
  /\b(linuxOnly|glibcOnly|withProc|procAvailable|platform\.(linux|glibc|darwin|musl|mappingPerHandle))\b/
const GLIBC_GUARDS = /\b(glibcOnly|platform\.(glibc|musl))\b/
const guards = pretend?.split(',').includes('not-linux') ? LINUX_GUARDS : GLIBC_GUARDS
const guarded = readdirSync(join(root, '__test__'))
  .filter((file) => file.endsWith('.spec.ts') && guards.test(readFileSync(join(root, '__test__', file), 'utf8')))
  .map((file) => `__test__/${file}`)
if (pretend && avaArgs.length === 0) {
  avaArgs.push(...guarded)
  console.log(`=== ${leg}: the specs with guards of ${pretend} (the others do not look): ${guarded.join(' ')}`)
}

const env = { ...process.env, FORCE_COLOR: '0', ...(pretend ? { SHMKIT_TEST_PRETEND: pretend } : {}) }
console.log(`=== ${leg}: the JS suite${pretend ? ` with SHMKIT_TEST_PRETEND=${pretend}` : ''}`)
const counts = await runAva(avaArgs, { cwd: root, env })

// ava leaves out the `spec › ` prefix when it runs a single file.
const specFiles = avaArgs.filter((arg) => arg.endsWith('.spec.ts'))
const prefix = specFiles.length === 1 ? `${specFiles[0].replace(/^.*\//, '').replace(/\.spec\.ts$/, '')} › ` : ''
const skipped = new Set(counts.skippedTitles.map((title) => prefix + title))
// A `*` in a listed line matches any text (the docs test's titles carry README line numbers).
const patterns = expected.map(
  (line) =>
    new RegExp(
      `^${line
        .split('*')
        .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*')}$`,
    ),
)
const unexpected = [...skipped].filter((title) => !patterns.some((pattern) => pattern.test(title)))
const ran = expected.filter((_, i) => ![...skipped].some((title) => patterns[i].test(title)))
console.log(`\n=== ${leg}: ${counts.passed} passed, ${counts.skipped} skipped, ${counts.failed} failed`)
let ok = counts.failed === 0
if (unexpected.length > 0) {
  ok = false
  console.log(`=== skipped, but not in ${listFile}:\n  ${unexpected.join('\n  ')}`)
}
if (ran.length > 0) {
  if (exact) ok = false
  console.log(`=== listed in ${listFile}, but not skipped:\n  ${ran.join('\n  ')}`)
}
if (counts.failed > 0) console.log(`=== failed:\n  ${counts.failedTitles.join('\n  ')}`)
console.log(ok ? `=== ${leg}: skips as expected (${skipped.size})` : `=== ${leg}: FAILED`)
process.exit(ok ? 0 : 1)
