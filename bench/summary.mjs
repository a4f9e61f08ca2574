#!/usr/bin/env node
// Prints the Markdown tables of the README's "Performance" section from bench/results.json
// (or the file given), so that the README quotes the committed results exactly.
//
//   node bench/summary.mjs [results.json]
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const file = process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), 'results.json')
const rows = JSON.parse(readFileSync(file, 'utf8'))
const byId = new Map(rows.map((row) => [row.id, row]))
const get = (id) => byId.get(id)

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return '–'
  const a = Math.abs(value)
  if (a === 0) return '0'
  if (a >= 1000) return Math.round(value).toLocaleString('en-US')
  return Number(value.toPrecision(digits)).toString()
}
const times = (value) => (value === null || value === undefined ? '–' : `${fmt(value)}×`)
const with_ = (row) => (row ? `${fmt(row.value)} ${row.unit}` : '–')

/** A Markdown table; the first `text` columns are left-aligned, the rest (numbers) right. */
function table(header, body, text = 1) {
  const line = (cells) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map((h, i) => (i < text ? '---' : '---:'))), ...body.map(line)].join('\n')
}

const verdict = (ok) => (ok === null || ok === undefined ? 'n/a' : ok ? 'met' : '**missed**')

function target(id, what) {
  const t = get(id)
  if (!t) return [id, what, '–', '–', '–', '–', 'n/a']
  return [
    id,
    what,
    with_(t),
    t.baseline_id ? `\`${t.baseline_id}\` ${with_(get(t.baseline_id))}` : '–',
    t.ratio === null ? '–' : times(t.ratio),
    t.target.replace('ratio ', '').replace('value ', ''),
    verdict(t.met),
  ]
}

/** One line for a family of targets (`L3.` …): how many met, and the worst. */
function family(prefix, label, what, worst) {
  const members = rows.filter((r) => r.id.startsWith(prefix) && 'met' in r)
  if (members.length === 0) return [label, what, '–', '–', '–', '–', 'n/a']
  const key = (r) => (r.ratio ?? r.value ?? 0) * (worst === 'max' ? 1 : -1)
  const bad = members.reduce((a, b) => (key(b) > key(a) ? b : a))
  const met = members.filter((r) => r.met).length
  return [
    label,
    what,
    `worst: ${bad.id.slice(prefix.length)} ${bad.ratio === null ? with_(bad) : times(bad.ratio)}`,
    '–',
    '–',
    bad.target.replace('ratio ', '').replace('value ', ''),
    `${met}/${members.length} ${met === members.length ? 'met' : '**missed**'}`,
  ]
}

const out = []
const env = (id) => get(id)?.value
out.push(
  `${env('env.rounds')} rounds on ${env('env.cpus')} vCPUs, ${env('env.pinned') ? 'pinned with taskset' : 'not pinned'}; ` +
    `load average ${fmt(env('env.loadavg_start'), 2)} at the start, ${fmt(env('env.loadavg_max'), 2)} at most, ` +
    `${fmt(env('env.loadavg_end'), 2)} at the end.`,
  '',
)
out.push(
  table(
    ['target', 'what', 'shmkit', 'baseline (same run)', 'ratio', 'needs', ''],
    [
      target('P1', 'round trip, `waitSync`, two processes, same CPU'),
      target('P1-stretch', 'the same, stretch goal'),
      target('P1a', 'round trip, `await wait()`, same CPU'),
      target('P1a-uds', 'the same, against a Unix socket'),
      target('P3', 'hot path: `Atomics` on a region, different CPUs'),
      target('P3-ipc', 'the same, against Node IPC'),
      target('B1', '256 MiB copied out of a region into a `Buffer`'),
      target('B1-ipc', 'the same, against Node IPC'),
      target('B3-stdin', 'the same, against a child’s stdin'),
      target('L1', 'create + close + unlink, named, 1 MiB'),
      target('L2', 'open + close, named, 1 MiB'),
      family('L1.', 'L1, all', 'create + close, every technique and size', 'max'),
      family('L2.', 'L2, all', 'open + close, every technique and size', 'max'),
      family('L3.', 'L3', 'last 10 % / first 10 % of 10,000 ops', 'max'),
      family('L3-maps.', 'L3, maps', 'mappings left after 10,000 ops', 'max'),
      family('L4.', 'L4', 'full GCs in 10,000 create/open + close of 1 MiB', 'max'),
      target('F1', '`fork` + `wait` from JS, 50 MB heap'),
      ...['1to1', '4to1'].flatMap((p) => {
        const from = p === '1to1' ? '1 → 1' : '4 → 1'
        return [
          target(`C1-json.${p}`, `channel, 64 B, ${from}, copies, against \`process.send\``),
          target(`C1-adv.${p}`, 'the same, against `process.send` advanced'),
          target(`C1-uds.${p}`, 'the same, against a Unix socket'),
          target(`C2.${p}`, `channel, 1 MiB, ${from}, views, against \`memcpy\``),
          target(`C2-native.${p}`, 'the same through the Rust channel'),
          target(`C4.${p}`, `channel, 4 KiB, ${from}, copies, against the Rust channel`),
          target(`C4-into.${p}`, 'the same with `receiveInto`'),
        ]
      }),
      target('C3', 'round trip through two channels, `await receive()`'),
    ],
    2,
  ),
  '',
)

const pp = rows.filter((r) => r.id.startsWith('pp.') && !('met' in r))
out.push(
  table(
    ['round trip', 'µs', '× Rust core'],
    pp.map((r) => [`\`${r.id}\``, fmt(r.value), r.baseline_id ? times(r.ratio) : '(floor)']),
  ),
  '',
)
const bulk = rows.filter((r) => r.id.startsWith('bulk.') && !('met' in r))
out.push(
  table(
    ['256 MiB parent → child', 'GB/s', '× memcpy'],
    bulk.map((r) => [`\`${r.id}\``, fmt(r.value), r.baseline_id ? times(r.ratio) : '(floor)']),
  ),
  '',
)
const cases = rows
  .filter((r) => /^life\.shmkit\.[a-z]+\.[a-z]+\.(4k|1m)$/.test(r.id))
  .map((r) => r.id.slice('life.shmkit.'.length))
out.push(
  table(
    [
      'lifecycle (10,000 ops)',
      'Rust µs',
      'Rust, pinned µs',
      'Node floor µs',
      'JS µs',
      'JS ÷ Rust',
      'floor ÷ Rust',
      'JS ÷ floor',
      'last/first 10 %',
      'maps Δ',
      'full GCs, floor / JS',
    ],
    cases.map((c) => {
      const js = get(`life.shmkit.${c}`)
      const floor = get(`life.floor.${c}`)
      return [
        c,
        fmt(get(`life.native.${c}`)?.value),
        fmt(get(`life.pinned.${c}`)?.value),
        fmt(floor?.value),
        fmt(js.value),
        times(js.ratio),
        times(floor?.ratio),
        times(floor ? js.value / floor.value : null),
        times(get(`life.shmkit.${c}.last10`)?.ratio),
        fmt(get(`life.shmkit.${c}.maps_delta`)?.value),
        `${fmt(get(`life.floor.${c}.major_gcs`)?.value)} / ${fmt(get(`life.shmkit.${c}.major_gcs`)?.value)}`,
      ]
    }),
  ),
  '',
)
// Messages per second (GB/s for 1 MiB), one column per transport.
const transports = [
  ['native', 'Rust channel'],
  ['shmkit.sync', 'JS `Channel`, copy'],
  ['shmkit.view', 'JS, view'],
  ['shmkit.into', 'JS, into'],
  ['shmkit.async', 'JS, async'],
  ['node.ipc_json', '`process.send` json'],
  ['node.ipc_adv', '`process.send` advanced'],
  ['node.uds', 'Unix socket'],
  ['node.worker', '`MessagePort` (threads)'],
]
const messageRows = ['64', '4k', '1m'].flatMap((size) =>
  ['1to1', '4to1'].map((p) => {
    const label = `${p === '1to1' ? '1 → 1' : '4 → 1'}, ${{ 64: '64 B', '4k': '4 KiB', '1m': '1 MiB, GB/s' }[size]}`
    const suffix = size === '1m' ? `${p}.1m_gbps` : `${p}.${size}`
    return [label, ...transports.map(([impl]) => fmt(get(`chan.${impl}.${suffix}`)?.value))]
  }),
)
out.push(table(['from → to, size', ...transports.map(([, name]) => name)], messageRows), '')

const fork = rows.filter((r) => /^fork\.[a-z]+\.[a-z0-9_]+$/.test(r.id) && !('met' in r))
out.push(
  table(
    ['fork + wait, per cycle', 'µs', 'ratio', 'to'],
    fork.map((r) => [
      `\`${r.id}\``,
      fmt(r.value),
      r.baseline_id ? times(r.ratio) : '–',
      r.baseline_id ? `\`${r.baseline_id}\`` : '–',
    ]),
  ),
)
console.log(out.join('\n'))
