#!/usr/bin/env node
// `npm run test:fork-stress`: the fork() stress test on every supported Node major.
//
//   node scripts/fork-stress.mjs [--versions 20,22,24,26] [--forks 100]
//
// For each version it starts `node --single-threaded scripts/fork-stress.mjs --run`, which
// holds a few hundred MB of live heap, keeps fs.promises reads, async pbkdf2 and dns.lookup in
// flight, and forks children one after another; each child allocates ~50 MB of short-lived
// objects and writes a checksum into shared memory. Every wait is bounded: a child that does not end within the limit is
// counted as a hang and killed. The run fails on any hang, crash, wrong result or failed read.
import { spawnSync } from 'node:child_process'
import { pbkdf2 } from 'node:crypto'
import { lookup } from 'node:dns'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const self = fileURLToPath(import.meta.url)
const option = (name, fallback) => {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : fallback
}
// 100 forks per major (200 until Node 26 joined the list): every child still runs its ~50 MB of
// scavenges under a parent of a few hundred MB with pool work in flight, and __test__/fork-pool
// adds 1,000 quick forks with pool work in flight to every suite run.
const FORKS = Number(option('--forks', '100'))
const CHILD_LIMIT_MS = 120_000 // per child; a healthy one needs well under a second

if (process.argv.includes('--run')) {
  await run()
} else {
  drive()
}

function drive() {
  const { nodeBinary } = createRequire(import.meta.url)('./node-bin.mjs')
  const versions = option('--versions', '20,22,24,26').split(',')
  let failed = false
  for (const major of versions) {
    const node = nodeBinary(Number(major))
    console.log(`\n=== fork stress on Node ${major} (${node})`)
    const started = Date.now()
    const result = spawnSync(
      node,
      ['--single-threaded', '--max-old-space-size=2048', self, '--run', '--forks', String(FORKS)],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 30 * 60_000, killSignal: 'SIGKILL' },
    )
    process.stdout.write(result.stdout ?? '')
    const line = (result.stdout ?? '').trim().split('\n').pop()
    let summary = null
    try {
      summary = JSON.parse(line)
    } catch {
      // reported below
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1)
    if (result.status !== 0 || !summary) {
      failed = true
      console.log(`=== Node ${major}: FAILED (${result.signal ?? `exit ${result.status}`}) after ${seconds} s`)
    } else {
      console.log(`=== Node ${major}: passed in ${seconds} s`)
    }
  }
  if (failed) process.exit(1)
}

async function run() {
  const { SharedMemory, fork } = createRequire(import.meta.url)('../index.js')
  const started = Date.now()

  // A few hundred MB of live heap: double arrays, objects and strings, kept until the end.
  const live = []
  for (let i = 0; i < 24; i++) live.push(doubles(i + 0.5))
  for (let i = 0; i < 20; i++) {
    live.push(Array.from({ length: 100_000 }, (_, j) => ({ i, j, s: `object ${i}/${j}` })))
  }
  const heapMb = Math.round(process.memoryUsage().heapUsed / 2 ** 20)

  // fs.promises reads in flight the whole time, on libuv's thread pool.
  const dir = mkdtempSync(join(tmpdir(), 'shmkit-stress-'))
  const file = join(dir, 'data.bin')
  writeFileSync(file, Buffer.alloc(4 << 20, 7))
  let reading = true
  let reads = 0
  let readErrors = 0
  const readers = Array.from({ length: 8 }, async () => {
    while (reading) {
      try {
        const data = await readFile(file)
        if (data.length === 4 << 20 && data[12345] === 7) reads++
        else readErrors++
      } catch {
        readErrors++
      }
    }
  })

  // Async crypto and dns.lookup in flight too, on the same pool: fork() parks the pool first.
  let pooled = 0
  const pool = [
    (done) => pbkdf2('secret', 'salt', 20_000, 32, 'sha256', done),
    (done) => lookup('localhost', done),
  ].map(async (job) => {
    while (reading) {
      await new Promise((resolve) => job(resolve))
      pooled++
    }
  })

  const area = SharedMemory.anonymous(FORKS * 8)
  const results = new Float64Array(area.buffer)
  const counts = { ok: 0, hang: 0, crash: 0, wrong: 0, signals: {} }
  const childMs = []
  for (let i = 0; i < FORKS; i++) {
    // Keep the parent's heap moving too: replace one slice before every fork.
    live[i % 24] = doubles(i + 0.25)
    const t0 = performance.now()
    const child = fork(() => {
      // ~50 MB of short-lived objects, arrays and strings: scavenges in the child.
      let sum = 0
      for (let round = 0; round < 10; round++) {
        const batch = []
        for (let k = 0; k < 50_000; k++) batch.push({ k, round, tag: `r${round}k${k}`, list: [k, k + 1, k + 2] })
        for (const item of batch) sum += item.list[2] - item.k
      }
      results[i] = sum + i
      return 0
    })
    const status = i % 2 === 0 ? child.wait({ timeout: CHILD_LIMIT_MS }) : await bounded(child.exited, CHILD_LIMIT_MS)
    if (status === null) {
      counts.hang++
      console.log(`child ${i} (pid ${child.pid}) did not end within ${CHILD_LIMIT_MS} ms: killed`)
      child.kill('SIGKILL')
      child.wait()
      continue
    }
    childMs.push(performance.now() - t0)
    if (status.signal) {
      counts.crash++
      counts.signals[status.signal] = (counts.signals[status.signal] ?? 0) + 1
      console.log(`child ${i} (pid ${child.pid}) died of ${status.signal}`)
    } else if (status.code !== 0 || results[i] !== 10 * 50_000 * 2 + i) {
      counts.wrong++
      console.log(`child ${i}: code ${status.code}, result ${results[i]}`)
    } else {
      counts.ok++
    }
    if ((i + 1) % 50 === 0) console.log(`${i + 1}/${FORKS} forks: ${JSON.stringify(counts)}`)
  }
  reading = false
  await Promise.all([...readers, ...pool])
  rmSync(dir, { recursive: true })
  childMs.sort((a, b) => a - b)
  const summary = {
    node: process.version,
    forks: FORKS,
    ...counts,
    parentHeapMb: heapMb,
    fsReads: reads,
    fsReadErrors: readErrors,
    cryptoAndDnsJobs: pooled,
    childMsMedian: Math.round(childMs[childMs.length >> 1] ?? 0),
    seconds: Math.round((Date.now() - started) / 100) / 10,
  }
  console.log(JSON.stringify(summary))
  live.length = 0
  if (counts.ok !== FORKS || readErrors > 0 || reads === 0) process.exitCode = 1
}

/** An array of a million doubles (8 MB of V8 heap). */
function doubles(value) {
  return Array.from({ length: 1_000_000 }, () => value)
}

/** Resolves like `promise`, or with `null` after `ms` (as `wait({ timeout })` does). */
function bounded(promise, ms) {
  let timer
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(null), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}
