#!/usr/bin/env node
// `npm run bench`: builds the addon, the native floor and the Node floor (release), runs every
// benchmark in rounds, prints a table and writes bench/results.json (quick or partial runs:
// bench/results-quick.json). See bench/README.md.
//
//   node bench/run.mjs [--quick] [--rounds N] [--only pp,bulk,life,mutex,fork,chan] [--no-build] [--out FILE]
//
// Each round starts every program afresh, in a fixed order, so a ratio is taken between two
// measurements made minutes apart at most; the reported ratio is the median over the rounds
// of the ratio inside each round, and the reported value the median of the values.
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..')

function parseArgs(argv) {
  const options = { quick: false, rounds: null, only: null, build: true, out: null }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--quick') options.quick = true
    else if (arg === '--no-build') options.build = false
    else if (arg === '--rounds') options.rounds = Number(argv[++i])
    else if (arg === '--only') options.only = new Set(argv[++i].split(','))
    else if (arg === '--out') options.out = argv[++i]
    else throw new Error(`unknown argument ${arg} (see bench/README.md)`)
  }
  if (options.rounds !== null && !(Number.isInteger(options.rounds) && options.rounds > 0)) {
    throw new Error('--rounds takes a positive integer')
  }
  options.rounds ??= options.quick ? 1 : 5
  // A quick or partial run must not replace the committed full results.
  options.out ??= join(here, options.quick || options.only ? 'results-quick.json' : 'results.json')
  return options
}

const options = parseArgs(process.argv.slice(2))
const size = options.quick
  ? { ppIters: 20_000, ppWarm: 2_000, bulkMib: 256, bulkReps: 1, lifeOps: 2_000, forkOps: 20 }
  : { ppIters: 100_000, ppWarm: 10_000, bulkMib: 256, bulkReps: 3, lifeOps: 10_000, forkOps: 100 }
const HEAP_MB = 50
const native = join(root, 'target', 'release', 'examples', 'bench_native')
const nativeChannel = join(root, 'target', 'release', 'examples', 'bench_channel')
// Channel benchmarks: message sizes with their counts per run, producer counts, transports.
const CHAN_SIZES = [
  // Enough messages that the timed nine tenths are past the JIT's warm-up (tens of
  // thousands of calls on each end) for every transport.
  ['64', 64, options.quick ? 20_000 : 1_000_000],
  ['4k', 4096, options.quick ? 10_000 : 300_000],
  ['1m', 1 << 20, options.quick ? 100 : 500],
]
const CHAN_PRODUCERS = [1, 4]
const CHAN_CASES = ['shmkit_sync', 'shmkit_view', 'shmkit_into', 'shmkit_async', 'ipc_json', 'ipc_adv', 'uds', 'worker']

function canPin() {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' })
    return cpus().length >= 2
  } catch {
    return false
  }
}
const pinned = canPin()
const placements = pinned ? ['same', 'diff'] : ['none']
const spinPlacement = pinned ? 'diff' : 'none'

/** Every program of one round: [group, label, command, args]. */
function plan() {
  const node = process.execPath
  const steps = []
  const pp = (kase, placement) => [
    'pp',
    `${kase} ${placement}`,
    node,
    [join(here, 'pingpong.mjs'), kase, placement, String(size.ppIters), String(size.ppWarm)],
  ]
  for (const placement of placements) {
    steps.push([
      'pp',
      `native ${placement}`,
      native,
      ['pingpong', String(size.ppIters), String(size.ppWarm), placement === 'none' ? 'same' : placement],
    ])
    for (const kase of ['sem_sync', 'sem_async', 'ipc', 'uds']) steps.push(pp(kase, placement))
    // wait/notify on words; the async cases again on the waiter threads (SHMKIT_IO_URING=0).
    for (const kase of ['word_sync', 'word_async', 'word_async_threads', 'sem_async_threads']) {
      steps.push(pp(kase, placement))
    }
    if (placement !== 'diff') steps.push(pp('worker_atomics', placement), pp('worker_word', placement))
  }
  if (pinned) {
    steps.push(['pp', 'native spin', native, ['pingpong', String(size.ppIters), String(size.ppWarm), 'spin']])
    steps.push(pp('atomics_spin', spinPlacement))
  }
  steps.push(['bulk', 'native', native, ['bulk', String(size.bulkMib), String(size.bulkReps)]])
  for (const kase of ['copyout', 'ipc', 'stdin']) {
    steps.push(['bulk', kase, node, [join(here, 'bulk.mjs'), kase, String(size.bulkMib), String(size.bulkReps)]])
  }
  steps.push(['life', 'native', native, ['lifecycle', String(size.lifeOps)]])
  for (const label of ['4k', '1m']) {
    for (const kase of LIFE_CASES) {
      steps.push(['life', `${kase} ${label}`, node, [join(here, 'lifecycle.mjs'), kase, label, String(size.lifeOps)]])
      const floorArgs = [join(here, 'lifecycle.mjs'), kase, label, String(size.lifeOps), 'floor']
      steps.push(['life', `floor ${kase} ${label}`, node, floorArgs])
    }
  }
  steps.push(['mutex', 'native', native, ['mutex', String(size.ppIters)]])
  steps.push(['mutex', 'shmkit', node, [join(here, 'mutex.mjs'), String(size.ppIters)]])
  steps.push(['fork', 'native', native, ['fork', String(HEAP_MB), String(size.forkOps)]])
  steps.push([
    'fork',
    'shmkit',
    node,
    ['--single-threaded', join(here, 'fork.mjs'), String(HEAP_MB), String(size.forkOps)],
  ])
  // The channel targets compare 1 MiB messages with memcpy, which the bulk group measures.
  if (options.only && !options.only.has('bulk')) {
    steps.push(['chan', 'native memcpy', native, ['bulk', String(size.bulkMib), String(size.bulkReps)]])
  }
  for (const [label, bytes, count] of CHAN_SIZES) {
    for (const producers of CHAN_PRODUCERS) {
      const args = [String(bytes), String(count), String(producers)]
      steps.push(['chan', `native ${producers}to1 ${label}`, nativeChannel, args])
      for (const kase of CHAN_CASES) {
        steps.push(['chan', `${kase} ${producers}to1 ${label}`, node, [join(here, 'channel.mjs'), kase, ...args]])
      }
    }
  }
  for (const kase of ['rt_async', 'rt_uds']) {
    steps.push(['chan', kase, node, [join(here, 'channel.mjs'), kase, String(options.quick ? 2_000 : 20_000)]])
  }
  return steps.filter(([group]) => !options.only || options.only.has(group))
}

const LIFE_CASES = ['create.anonymous', 'create.devzero', 'create.memfd', 'create.named', 'open.named', 'open.fd']

function run(command, args) {
  const result = spawnSync(command, args, {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 10 * 60_000,
  })
  if (result.status !== 0) {
    throw new Error(
      `${relative(root, command) || command} ${args.join(' ')}: ${result.error ?? `exit ${result.status ?? result.signal}`}`,
    )
  }
  const values = new Map()
  for (const line of result.stdout.split('\n')) {
    const [tag, id, value, unit] = line.split('\t')
    if (tag === 'RESULT') values.set(id, { value: Number(value), unit })
  }
  return values
}

function build() {
  const step = (title, command, args) => {
    process.stderr.write(`=== ${title}\n`)
    const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] })
    if (result.status !== 0) throw new Error(`${title} failed`)
  }
  step('build the addon (release)', 'npm', ['run', 'build'])
  step('build the native floor (release)', 'cargo', [
    'build',
    '--release',
    '-p',
    'shmkit',
    '--example',
    'bench_native',
    '--example',
    'bench_channel',
  ])
  step('build the Node floor (release)', 'cargo', ['build', '--release', '-p', 'shmkit-bench-floor'])
}

// Baselines: the measurement each row is divided by, in the same round.
function baselineOf(id) {
  let m
  if ((m = /^pp\.(shmkit|node)\.\w+\.(\w+)$/.exec(id))) {
    if (id.startsWith('pp.shmkit.atomics_spin.')) return `pp.native.spin.${m[2]}`
    return `pp.native.sem.${m[2] === 'none' ? 'same' : m[2]}`
  }
  if (id.startsWith('bulk.') && id !== 'bulk.native.memcpy') return 'bulk.native.memcpy'
  if ((m = /^life\.(?:shmkit|pinned|floor)\.(.+\.(?:4k|1m))$/.exec(id))) return `life.native.${m[1]}`
  if ((m = /^(life\.\w+\..+\.(?:4k|1m))\.last10$/.exec(id))) return `${m[1]}.first10`
  if ((m = /^mutex\.shmkit\.(.+)$/.exec(id))) return `mutex.native.${m[1]}`
  if ((m = /^fork\.shmkit\.(small|\d+m)$/.exec(id))) return `fork.native.${m[1]}`
  if ((m = /^fork\.native\.(\d+m)_scattered$/.exec(id))) return `fork.native.${m[1]}`
  if (/^chan\.\w+\.(?:\w+\.)?\dto1\.\w+_gbps$/.test(id)) return 'bulk.native.memcpy'
  if ((m = /^chan\.(?:shmkit|node)\.\w+\.(\dto1\.\w+)$/.exec(id))) return `chan.native.${m[1]}`
  return null
}

// Targets (ids as in the issue); `ratio` is compared with `limit`.
const pp = (p) => (pinned ? p : 'none')
const TARGETS = [
  ['P1', `pp.shmkit.sem_sync.${pp('same')}`, `pp.native.sem.${pp('same')}`, '<=', 2.0],
  ['P1-stretch', `pp.shmkit.sem_sync.${pp('same')}`, `pp.native.sem.${pp('same')}`, '<=', 1.5],
  ['P1a', `pp.shmkit.sem_async.${pp('same')}`, `pp.native.sem.${pp('same')}`, '<=', 3.0],
  ['P1a-uds', `pp.shmkit.sem_async.${pp('same')}`, `pp.node.uds.${pp('same')}`, '<', 1.0],
  // wait/notify (issue 11): the async round trip on one CPU (io_uring) against the Rust
  // core's blocking one and a Unix socket; the blocking wait against the Rust core.
  ['W1', `pp.shmkit.word_async.${pp('same')}`, `pp.native.sem.${pp('same')}`, '<=', 2.0],
  ['W1-uds', `pp.shmkit.word_async.${pp('same')}`, `pp.node.uds.${pp('same')}`, '<', 1.0],
  ['W1-sem', `pp.shmkit.sem_async.${pp('same')}`, `pp.native.sem.${pp('same')}`, '<=', 2.0],
  ['W2', `pp.shmkit.word_sync.${pp('same')}`, `pp.native.sem.${pp('same')}`, '<=', 1.5],
  ['P3', `pp.shmkit.atomics_spin.${spinPlacement}`, `pp.native.spin.${spinPlacement}`, '<=', 4.0],
  ['P3-ipc', `pp.shmkit.atomics_spin.${spinPlacement}`, `pp.node.ipc.${pp('diff')}`, '<=', 0.01],
  ['B1', 'bulk.shmkit.copyout', 'bulk.native.memcpy', '>=', 0.85],
  ['B1-ipc', 'bulk.shmkit.copyout', 'bulk.node.ipc', '>=', 10],
  ['B3-stdin', 'bulk.shmkit.copyout', 'bulk.node.stdin', '>=', 5],
  ['L1', 'life.shmkit.create.named.1m', 'life.native.create.named.1m', '<=', 1.5],
  ['L2', 'life.shmkit.open.named.1m', 'life.native.open.named.1m', '<=', 1.5],
  ...['4k', '1m'].flatMap((s) =>
    LIFE_CASES.map((c) => [
      `${c.startsWith('create') ? 'L1' : 'L2'}.${c.split('.')[1]}.${s}`,
      `life.shmkit.${c}.${s}`,
      `life.native.${c}.${s}`,
      '<=',
      1.5,
    ]),
  ),
  ...['4k', '1m'].flatMap((s) =>
    LIFE_CASES.flatMap((c) => [
      [`L3.${c}.${s}`, `life.shmkit.${c}.${s}.last10`, `life.shmkit.${c}.${s}.first10`, '<=', 1.2],
      [`L3-maps.${c}.${s}`, `life.shmkit.${c}.${s}.maps_delta`, null, '<', Math.max(1, size.lifeOps / 100)],
    ]),
  ),
  ...LIFE_CASES.map((c) => [`L4.${c}.1m`, `life.shmkit.${c}.1m.major_gcs`, null, '<=', (12 * size.lifeOps) / 10_000]),
  ['F1', `fork.shmkit.${HEAP_MB}m`, `fork.native.${HEAP_MB}m`, '<=', 2.0],
  // Channel (messages per second: higher is better).
  ...CHAN_PRODUCERS.flatMap((p) => [
    [`C1-json.${p}to1`, `chan.shmkit.sync.${p}to1.64`, `chan.node.ipc_json.${p}to1.64`, '>=', 20],
    [`C1-adv.${p}to1`, `chan.shmkit.sync.${p}to1.64`, `chan.node.ipc_adv.${p}to1.64`, '>=', 20],
    [`C1-uds.${p}to1`, `chan.shmkit.sync.${p}to1.64`, `chan.node.uds.${p}to1.64`, '>=', 5],
    [`C2.${p}to1`, `chan.shmkit.view.${p}to1.1m_gbps`, 'bulk.native.memcpy', '>=', 0.7],
    [`C2-native.${p}to1`, `chan.native.${p}to1.1m_gbps`, 'bulk.native.memcpy', '>=', 0.7],
    [`C4.${p}to1`, `chan.shmkit.sync.${p}to1.4k`, `chan.native.${p}to1.4k`, '>=', 0.5],
    [`C4-into.${p}to1`, `chan.shmkit.into.${p}to1.4k`, `chan.native.${p}to1.4k`, '>=', 0.5],
  ]),
  ['C3', 'chan.shmkit.rt_async', 'chan.node.rt_uds', '<', 1.0],
]

const median = (values) => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

function compare(ratio, op, limit) {
  if (ratio === null) return null
  return op === '<=' ? ratio <= limit : op === '<' ? ratio < limit : ratio >= limit
}

function fmt(value) {
  if (value === null || value === undefined) return '-'
  const a = Math.abs(value)
  if (a === 0) return '0'
  if (a >= 1000) return value.toFixed(0)
  if (a >= 100) return value.toFixed(1)
  if (a >= 1) return value.toFixed(2)
  return value.toPrecision(3)
}

function table(header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join('  ')
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

async function main() {
  if (options.build) build()
  const steps = plan()
  const load = [loadavg()[0]]
  const rounds = []
  const failures = []
  process.stderr.write(
    `=== ${options.rounds} round(s), ${steps.length} programs each, ${options.quick ? 'quick' : 'full'} mode, ` +
      `${pinned ? 'pinned with taskset' : 'not pinned (no taskset or one CPU)'}, load ${load[0].toFixed(2)}\n`,
  )
  for (let r = 0; r < options.rounds; r++) {
    const values = new Map()
    for (const [group, label, command, args] of steps) {
      process.stderr.write(`round ${r + 1}/${options.rounds} ${group} ${label}\n`)
      try {
        for (const [id, v] of run(command, args)) values.set(id, v)
      } catch (error) {
        failures.push(error.message)
        process.stderr.write(`FAILED: ${error.message}\n`)
      }
    }
    rounds.push(values)
    load.push(loadavg()[0])
  }

  const ids = [...new Set(rounds.flatMap((round) => [...round.keys()]))]
  const unitOf = (id) => rounds.find((round) => round.has(id))?.get(id).unit
  const valueOf = (id) => median(rounds.map((round) => round.get(id)?.value))
  const ratioOf = (id, baseline) =>
    baseline === null
      ? null
      : median(
          rounds.map((round) => {
            const a = round.get(id)?.value
            const b = round.get(baseline)?.value
            return a === undefined || b === undefined || b === 0 ? NaN : a / b
          }),
        )
  const rows = ids.map((id) => {
    const baseline = baselineOf(id)
    const known = baseline !== null && ids.includes(baseline)
    return {
      id,
      value: valueOf(id),
      unit: unitOf(id),
      baseline_id: known ? baseline : null,
      ratio: known ? ratioOf(id, baseline) : null,
    }
  })
  const targets = TARGETS.map(([id, measure, baseline, op, limit]) => {
    const present = ids.includes(measure) && (baseline === null || ids.includes(baseline))
    const value = present ? valueOf(measure) : null
    const ratio = !present ? null : baseline === null ? value : ratioOf(measure, baseline)
    return {
      id,
      value,
      unit: present ? unitOf(measure) : null,
      baseline_id: baseline,
      ratio: baseline === null ? null : ratio,
      measure,
      target: `${baseline === null ? 'value' : 'ratio'} ${op} ${limit}`,
      met: compare(ratio, op, limit),
    }
  })
  const environment = [
    ['env.rounds', options.rounds, 'count'],
    ['env.cpus', cpus().length, 'count'],
    ['env.loadavg_start', load[0], 'load'],
    ['env.loadavg_max', Math.max(...load), 'load'],
    ['env.loadavg_end', load.at(-1), 'load'],
    ['env.pinned', pinned ? 1 : 0, 'bool'],
  ].map(([id, value, unit]) => ({ id, value, unit, baseline_id: null, ratio: null }))

  const shown = rows.filter((r) => !/\.(first10|last10|maps_delta|gcs|major_gcs)$/.test(r.id))
  console.log('\nMeasurements (median over rounds; ratio = median of same-round value / baseline)\n')
  console.log(
    table(
      ['id', 'value', 'unit', 'baseline', 'ratio'],
      shown.map((r) => [r.id, fmt(r.value), r.unit, r.baseline_id ?? '-', fmt(r.ratio)]),
    ),
  )
  console.log('\nTargets\n')
  console.log(
    table(
      ['target', 'measure', 'value', 'unit', 'baseline', 'ratio', 'needs', 'met'],
      targets.map((t) => [
        t.id,
        t.measure,
        fmt(t.value),
        t.unit ?? '-',
        t.baseline_id ?? '-',
        fmt(t.ratio),
        t.target,
        t.met === null ? 'n/a' : t.met ? 'yes' : 'NO',
      ]),
    ),
  )
  const missed = targets.filter((t) => t.met === false).map((t) => t.id)
  console.log(
    `\n${targets.filter((t) => t.met).length} targets met, ${missed.length} missed${missed.length ? `: ${missed.join(', ')}` : ''}`,
  )
  console.log(`load average (1 min): ${load.map((l) => l.toFixed(2)).join(' → ')}`)

  mkdirSync(dirname(options.out), { recursive: true })
  writeFileSync(options.out, JSON.stringify([...rows, ...targets, ...environment], null, 2) + '\n')
  console.log(`wrote ${relative(process.cwd(), options.out)}`)
  if (failures.length > 0) {
    console.error(`\n${failures.length} program(s) failed; their rows are missing:\n${failures.join('\n')}`)
    process.exitCode = 1
  }
}

await main()
