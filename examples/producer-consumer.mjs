// Producer/consumer between two processes: a ring of slots in named shared memory, guarded
// by two semaphores that live in the same memory. `items` counts filled slots, `slots`
// counts free ones; neither process ever reads a slot the other is writing.
//
//   node examples/producer-consumer.mjs [count]
//
// The producer (this process) creates everything, starts the consumer (this file again,
// as a child) and fills the ring; the consumer checks every item and reports.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

// In your own code: import { SharedMemory, Semaphore, ... } from 'shmkit'
import { Semaphore, SharedMemory } from '../index.js'

const SLOTS = 16
const align = (/** @type {number} */ n) => Math.ceil(n / Math.max(Semaphore.ALIGN, 8)) * Math.max(Semaphore.ALIGN, 8)
// Layout: [items semaphore][slots semaphore][SLOTS Float64 slots]
const ITEMS_AT = 0
const SLOTS_AT = align(Semaphore.SIZE)
const RING_AT = align(SLOTS_AT + Semaphore.SIZE)
const SIZE = RING_AT + SLOTS * Float64Array.BYTES_PER_ELEMENT

const item = (/** @type {number} */ i) => i * 7 + 3

/**
 * @param {string} name
 * @param {number} count
 */
async function consumer(name, count) {
  const shm = SharedMemory.open(name)
  // The semaphores were initialised by the producer: attach, do not initialise again.
  const items = Semaphore.at(shm, ITEMS_AT)
  const slots = Semaphore.at(shm, SLOTS_AT)
  const ring = new Float64Array(shm.buffer, RING_AT, SLOTS)
  let sum = 0
  let wrong = 0
  for (let i = 0; i < count; i++) {
    await items.wait() // never blocks the event loop
    if (ring[i % SLOTS] !== item(i)) wrong++
    sum += ring[i % SLOTS]
    slots.post()
  }
  items.close()
  slots.close()
  shm.close()
  process.stdout.write(JSON.stringify({ count, sum, wrong }) + '\n')
}

/** @param {number} count */
async function producer(count) {
  const name = `pc${process.pid}`
  const shm = SharedMemory.create(name, SIZE)
  try {
    const items = Semaphore.init(shm, ITEMS_AT, 0)
    const slots = Semaphore.init(shm, SLOTS_AT, SLOTS)
    const ring = new Float64Array(shm.buffer, RING_AT, SLOTS)
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'consumer', name, String(count)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let report = ''
    child.stdout.setEncoding('utf8').on('data', (chunk) => (report += chunk))
    const exited = once(child, 'exit')
    // If the consumer dies early, stop waiting for free slots it will never post.
    const consumerGone = new AbortController()
    child.on('exit', () => consumerGone.abort())
    for (let i = 0; i < count; i++) {
      await slots.wait({ signal: consumerGone.signal })
      ring[i % SLOTS] = item(i)
      items.post()
    }
    const [code] = await exited
    const result = JSON.parse(report)
    const expected = (count * (count - 1) * 7) / 2 + 3 * count
    const ok = code === 0 && result.count === count && result.wrong === 0 && result.sum === expected
    console.log(`${ok ? 'ok' : 'FAILED'}: ${result.count} items passed, sum ${result.sum} (expected ${expected})`)
    items.close()
    slots.close()
    process.exitCode = ok ? 0 : 1
  } finally {
    shm.close()
    SharedMemory.unlink(name)
  }
}

if (process.argv[2] === 'consumer') await consumer(process.argv[3], Number(process.argv[4]))
else await producer(Number(process.argv[2] ?? 100_000))
