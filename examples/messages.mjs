// Messages between processes without process.send: a primary hands jobs to two worker
// processes through one Channel and collects their results through another, both in one
// memfd region shared with the workers. Object mode carries any value `v8.serialize` takes,
// as process.send does with `serialization: 'advanced'`.
//
//   node examples/messages.mjs [jobs]
//
// Each job goes to exactly one worker; closing the jobs channel ends the workers' loops once
// every job is taken.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

// In your own code: import { Channel, SharedMemory, inherited, shareWith } from 'shmkit'
import { Channel, SharedMemory, inherited, shareWith } from '../index.js'

const CAPACITY = 64
const MAX_MESSAGE = 64 * 1024
const RESULTS_AT = Channel.size(CAPACITY, MAX_MESSAGE) // the second channel follows the first

function worker() {
  const [shm] = inherited()
  if (!(shm instanceof SharedMemory)) throw new Error('expected the shared region as fd 3')
  const jobs = Channel.at(shm, 0, { objectMode: true })
  const results = Channel.at(shm, RESULTS_AT, { objectMode: true })
  for (let job; (job = jobs.receiveSync()) !== null;) {
    results.sendSync({
      id: job.id,
      pid: process.pid,
      sum: job.numbers.reduce((/** @type {number} */ a, /** @type {number} */ b) => a + b, 0),
    })
  }
}

/** @param {number} count */
async function primary(count) {
  const shm = SharedMemory.memfd(2 * RESULTS_AT)
  const options = { capacity: CAPACITY, maxMessageSize: MAX_MESSAGE, objectMode: true }
  const jobs = Channel.init(shm, 0, options)
  const results = Channel.init(shm, RESULTS_AT, options)
  const self = fileURLToPath(import.meta.url)
  const workers = [1, 2].map(() => spawn(process.execPath, [self, 'worker'], shareWith([shm], { stdio: 'inherit' })))

  const perWorker = new Map()
  let next = 0
  let received = 0
  while (received < count) {
    // Keep the jobs channel fed without blocking on it, and collect whatever is done.
    while (next < count && jobs.trySend({ id: next, numbers: [next, 1, 2] })) next++
    if (next === count && !jobs.closed) jobs.close() // end of stream, once the workers took every job
    const result = results.receiveSync({ timeout: 10_000 })
    if (result === null) throw new Error('no result for 10 s')
    if (result.sum !== result.id + 3) throw new Error(`wrong result ${JSON.stringify(result)}`)
    perWorker.set(result.pid, (perWorker.get(result.pid) ?? 0) + 1)
    received++
  }
  await Promise.all(workers.map((w) => once(w, 'exit')))
  console.log(`${received} results, by worker:`, Object.fromEntries(perWorker))
  shm.close()
}

if (process.argv[2] === 'worker') worker()
else await primary(Number(process.argv[2] ?? 10_000))
