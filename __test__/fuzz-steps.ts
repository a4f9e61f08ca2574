// The actions of the property test (fuzz.spec.ts), kept apart so a failing sequence can be
// replayed on its own: FUZZ_TRACE=1 prints every action, and fuzz-replay.ts runs a list of them.
import { randomFill } from 'node:crypto'
import { closeSync, openSync, read, write, writeSync } from 'node:fs'
import { deflate } from 'node:zlib'

import fc from 'fast-check'

import { fork, inherited, RobustMutex, Semaphore, SharedMemory, shareWith, type SharedMemoryToken } from '../index.js'

const junk = fc.oneof(
  fc.constantFrom(undefined, null, 0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, '', '/', '//x', 'a/b', true),
  fc.string({ maxLength: 40 }),
  fc.bigInt(),
  fc.object({ maxDepth: 1 }),
  fc.integer(),
)
/** Sizes at the ArrayBuffer limits: 2**32 is Node 20's largest, beyond it a typed refusal. */
export const limitSize = fc.constantFrom(2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 33)
const size = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 1, max: 3 * 4096 }) },
  { weight: 2, arbitrary: fc.constantFrom(1, 4096, 65536) },
  { weight: 1, arbitrary: limitSize },
  { weight: 2, arbitrary: junk },
)
/** Native work that keeps using a view after it was started: thread-pool jobs and the kernel. */
export const inflightWork = fc.constantFrom('zlib', 'randomFill', 'fs.write', 'fs.read')
const index = fc.nat({ max: 1_000_000 })
const pick = fc.nat({ max: 1_000 })

export const action = fc.oneof(
  fc.record({
    op: fc.constant('anonymous' as const),
    size,
    opts: fc.option(fc.record({ private: fc.oneof(fc.boolean(), junk) })),
  }),
  fc.record({ op: fc.constant('devZero' as const), size, opts: fc.option(fc.record({ private: fc.boolean() })) }),
  fc.record({ op: fc.constant('memfd' as const), size }),
  fc.record({ op: fc.constant('fromFd' as const), pick, fd: fc.option(junk) }),
  fc.record({
    op: fc.constantFrom('create' as const, 'openOrCreate' as const),
    pick,
    junkName: fc.option(junk, { freq: 4 }),
    size,
    opts: fc.option(fc.record({ mode: fc.oneof(fc.integer({ min: 0, max: 0o777 }), junk), reserve: fc.boolean() })),
  }),
  fc.record({
    op: fc.constant('open' as const),
    pick,
    junkName: fc.option(junk, { freq: 4 }),
    opts: fc.option(fc.record({ readOnly: fc.boolean(), private: fc.oneof(fc.boolean(), junk) })),
  }),
  fc.record({ op: fc.constant('unlinkName' as const), pick, junkName: fc.option(junk, { freq: 4 }) }),
  fc.record({ op: fc.constantFrom('close' as const, 'unlink' as const, 'flush' as const, 'meta' as const), pick }),
  fc.record({
    op: fc.constant('view' as const),
    pick,
    type: fc.constantFrom('u8', 'f64', 'dv', 'buf', 'i32'),
    offset: fc.oneof(fc.nat({ max: 9000 }), fc.constant(-1)),
  }),
  fc.record({ op: fc.constant('touch' as const), pick, at: index, value: fc.integer() }),
  fc.record({
    op: fc.constantFrom('mutexInit' as const, 'mutexAt' as const),
    pick,
    offset: fc.oneof(fc.constantFrom(0, 8, 64, 4064, 4072), junk),
  }),
  fc.record({
    op: fc.constantFrom(
      'lock' as const,
      'tryLock' as const,
      'unlockMutex' as const,
      'consistent' as const,
      'closeMutex' as const,
      'mutexHeld' as const,
      'lockAsync' as const,
    ),
    pick,
  }),
  fc.record({ op: fc.constant('list' as const), dryRun: fc.boolean() }),
  // Refused here (the test runner is not --single-threaded): fork must throw, typed, and create nothing.
  fc.record({
    op: fc.constant('fork' as const),
    arg: fc.oneof(
      fc.constant(() => 0),
      junk,
    ),
  }),
  fc.record({
    op: fc.constant('shareWith' as const),
    picks: fc.array(pick, { maxLength: 3 }),
    junkItem: fc.option(junk, { freq: 3 }),
  }),
  fc.record({ op: fc.constant('inherited' as const) }),
  // close() while native work still uses one of the handle's views.
  fc.record({ op: fc.constant('closeInFlight' as const), pick, work: inflightWork, offset: fc.nat({ max: 9000 }) }),
  fc.record({ op: fc.constant('share' as const), pick }),
  fc.record({ op: fc.constant('redeem' as const), pick, junkToken: fc.option(junk, { freq: 3 }) }),
  fc.record({
    op: fc.constantFrom('semCreate' as const, 'semOpenOrCreate' as const, 'semOpen' as const, 'semUnlinkName' as const),
    pick,
    junkName: fc.option(junk, { freq: 4 }),
    opts: fc.option(
      fc.record({ initial: fc.oneof(fc.nat({ max: 5 }), junk), mode: fc.oneof(fc.constantFrom(0o600, 0o640), junk) }),
    ),
  }),
  fc.record({
    op: fc.constantFrom('semInitIn' as const, 'semAt' as const),
    pick,
    offset: fc.oneof(fc.constantFrom(0, 32, 64, 128, 4064, 4090), junk),
    initial: fc.oneof(fc.nat({ max: 3 }), junk),
  }),
  fc.record({
    op: fc.constantFrom(
      'semPost' as const,
      'semTryWait' as const,
      'semWaitSync' as const,
      'semWait' as const,
      'semValue' as const,
      'semClose' as const,
      'semUnlink' as const,
      'semDestroy' as const,
      'semAbort' as const,
    ),
    pick,
  }),
)

export type Action = typeof action extends fc.Arbitrary<infer A> ? A : never

export interface State {
  prefix: string
  names: string[]
  handles: SharedMemory[]
  views: ArrayBufferView[]
  mutexes: RobustMutex[]
  semaphores: Semaphore[]
  /** Promises of pending async waits: each must settle (resolve or reject with a typed error). */
  waits: Promise<unknown>[]
  /** Tokens from share() not redeemed yet (each keeps its region mapped until redeemed). */
  tokens: SharedMemoryToken[]
}

/** Starts `work` on `view` (at most 256 KiB of it); resolves when its callback ran, with or without error. */
function startWork(work: string, view: Uint8Array): Promise<unknown> {
  const part = view.subarray(0, 1 << 18)
  return new Promise((resolve) => {
    switch (work) {
      case 'zlib':
        deflate(part, resolve)
        break
      case 'randomFill':
        randomFill(part, resolve)
        break
      case 'fs.write': {
        const fd = openSync('/dev/null', 'w')
        write(fd, part, 0, part.length, null, (error) => {
          closeSync(fd)
          resolve(error)
        })
        break
      }
      default: {
        const fd = openSync('/dev/zero', 'r')
        read(fd, part, 0, part.length, null, (error) => {
          closeSync(fd)
          resolve(error)
        })
      }
    }
  }).then((error) => {
    // The work must complete normally: never EFAULT, never a crash.
    if (error) throw new Error(`${work} on a view closed in flight failed: ${String(error)}`)
  })
}

const at = <T>(list: T[], n: number): T | undefined => (list.length ? list[n % list.length] : undefined)

// Codes an error may carry: Node's argument codes, ours (ABORT_ERR included), or an errno name.
export const typedCode =
  /^(ERR_INVALID_ARG_TYPE|ERR_INVALID_ARG_VALUE|ERR_OUT_OF_RANGE|ERR_SHM_[A-Z_]+|ABORT_ERR|E[A-Z0-9]+)$/

/** Rejections of async waits must be typed too; anything else fails the run. */
function typedOnly(error: unknown): never | undefined {
  const code = (error as NodeJS.ErrnoException)?.code
  if (typeof code === 'string' && typedCode.test(code)) return undefined
  throw new Error(`untyped rejection: ${String(error)}`)
}

export function step(s: State, a: Action) {
  if (process.env.FUZZ_TRACE) writeSync(2, `${JSON.stringify(a, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}\n`)
  // Every name that can reach the OS starts with this run's random prefix, so the test can
  // never touch (or leave behind) anyone else's objects: junk strings are appended to it, and
  // junk of other types stays junk (and is refused before any syscall).
  const name = (pick: number, junkName: unknown) =>
    junkName === null ? at(s.names, pick) : typeof junkName === 'string' ? `${s.prefix}${junkName}` : junkName
  switch (a.op) {
    case 'anonymous':
      s.handles.push(SharedMemory.anonymous(a.size as number, a.opts as never))
      break
    case 'devZero':
      s.handles.push(SharedMemory.devZero(a.size as number, a.opts))
      break
    case 'memfd':
      s.handles.push(SharedMemory.memfd(a.size as number))
      break
    case 'fromFd': {
      // Only our own memfds (through a duplicate we close) or invalid numbers: a random real fd
      // could be a file of the runner.
      if (a.fd !== null) {
        if (typeof a.fd === 'number' && Number.isInteger(a.fd) && a.fd >= 0) break // not ours
        s.handles.push(SharedMemory.fromFd(a.fd as number))
        break
      }
      const fd =
        at(
          s.handles.filter((h) => !h.closed && h.kind === 'memfd'),
          a.pick,
        )?.fd ?? -1
      try {
        s.handles.push(SharedMemory.fromFd(fd))
      } finally {
        if (fd >= 0) closeSync(fd)
      }
      break
    }
    case 'create':
    case 'openOrCreate':
      s.handles.push(SharedMemory[a.op](name(a.pick, a.junkName) as string, a.size as number, a.opts as never))
      break
    case 'open':
      s.handles.push(SharedMemory.open(name(a.pick, a.junkName) as string, a.opts as never))
      break
    case 'unlinkName':
      SharedMemory.unlink(name(a.pick, a.junkName) as string)
      break
    case 'close':
      at(s.handles, a.pick)?.close()
      break
    case 'closeInFlight': {
      const h = at(s.handles, a.pick)
      if (!h) break
      const buffer = h.buffer // ERR_SHM_CLOSED once closed
      const view = new Uint8Array(buffer, Math.min(a.offset, buffer.byteLength))
      s.waits.push(startWork(a.work, view))
      h.close()
      break
    }
    case 'share': {
      const h = at(s.handles, a.pick)
      if (h) s.tokens.push(h.share())
      break
    }
    case 'redeem': {
      if (a.junkToken !== null) {
        s.handles.push(SharedMemory.from(a.junkToken as never))
        break
      }
      const i = s.tokens.length ? a.pick % s.tokens.length : -1
      if (i < 0) break
      const [token] = s.tokens.splice(i, 1)
      s.handles.push(SharedMemory.from(token))
      break
    }
    case 'unlink':
      at(s.handles, a.pick)?.unlink()
      break
    case 'flush':
      at(s.handles, a.pick)?.flush()
      break
    case 'meta': {
      const h = at(s.handles, a.pick)
      if (h) void [h.size, h.name, h.kind, h.closed, h.private, h.readOnly, h.closed ? null : h.sealed]
      const fd = h && !h.closed ? h.fd : null
      if (typeof fd === 'number') closeSync(fd) // a duplicate the caller owns
      break
    }
    case 'view': {
      const h = at(s.handles, a.pick)
      if (!h) break
      const buffer = h.buffer
      const offset = Math.min(Math.max(a.offset, 0), buffer.byteLength) & ~7
      s.views.push(
        a.type === 'u8'
          ? new Uint8Array(buffer, offset)
          : a.type === 'f64'
            ? new Float64Array(buffer, offset)
            : a.type === 'i32'
              ? new Int32Array(buffer, offset)
              : a.type === 'dv'
                ? new DataView(buffer, offset)
                : Buffer.from(buffer, offset),
      )
      break
    }
    case 'touch': {
      const v = at(s.views, a.pick)
      if (!v) break
      if (v instanceof DataView) {
        // Views keep their length after close (blank pages); a buffer detached by transfer()
        // reads length 0.
        if (v.byteLength > 0) v.setUint8(a.at % v.byteLength, a.value & 0xff)
      } else {
        const array = v as unknown as { length: number; [i: number]: number }
        array[a.at % Math.max(array.length, 1)] = a.value
        void array[a.at % Math.max(array.length, 1)]
        void array.length
      }
      break
    }
    case 'mutexInit':
    case 'mutexAt': {
      const h = at(s.handles, a.pick)
      if (!h) break
      s.mutexes.push(
        a.op === 'mutexInit' ? RobustMutex.init(h, a.offset as number) : RobustMutex.at(h, a.offset as number),
      )
      break
    }
    case 'lock':
      // Always bounded: a mutex attached to memory the test scribbled on may be garbage.
      at(s.mutexes, a.pick)?.lockSync({ timeout: 5 })
      break
    case 'tryLock':
      at(s.mutexes, a.pick)?.tryLock()
      break
    case 'unlockMutex':
      at(s.mutexes, a.pick)?.unlock()
      break
    case 'consistent':
      at(s.mutexes, a.pick)?.markConsistent()
      break
    case 'closeMutex': {
      // close() never unlocks, and a lock this thread holds keeps its region mapped until
      // unlocked or the thread ends; the mapping count checked at the end would grow. Closing
      // while held has its own tests (mutex.spec.ts, regressions/issue-8-*).
      const m = at(s.mutexes, a.pick)
      if (m && !m.closed && m.held) m.unlock()
      m?.close()
      break
    }
    case 'lockAsync': {
      const m = at(s.mutexes, a.pick)
      if (m) s.waits.push(m.lock({ timeout: 20 }).catch(typedOnly))
      break
    }
    case 'mutexHeld':
      void at(s.mutexes, a.pick)?.held
      break
    case 'list':
      SharedMemory.list({ prefix: s.prefix })
      SharedMemory.removeUnused(s.prefix, { dryRun: a.dryRun })
      break
    case 'semCreate':
      s.semaphores.push(Semaphore.create(name(a.pick, a.junkName) as string, a.opts as never))
      break
    case 'semOpenOrCreate':
      s.semaphores.push(Semaphore.openOrCreate(name(a.pick, a.junkName) as string, a.opts as never))
      break
    case 'semOpen':
      s.semaphores.push(Semaphore.open(name(a.pick, a.junkName) as string))
      break
    case 'semUnlinkName':
      Semaphore.unlink(name(a.pick, a.junkName) as string)
      break
    case 'semInitIn':
    case 'semAt': {
      const h = at(s.handles, a.pick)
      if (!h) break
      s.semaphores.push(
        a.op === 'semInitIn'
          ? Semaphore.init(h, a.offset as number, a.initial as number)
          : Semaphore.at(h, a.offset as number),
      )
      break
    }
    case 'fork':
      fork(a.arg as () => unknown)
      break
    case 'shareWith': {
      const items: unknown[] = a.picks.map((p: number, i: number) => (i % 2 ? at(s.semaphores, p) : at(s.handles, p)))
      if (a.junkItem !== null) items.push(a.junkItem)
      shareWith(items as SharedMemory[], { stdio: 'ignore' })
      break
    }
    case 'inherited':
      inherited()
      break
    case 'semPost':
      at(s.semaphores, a.pick)?.post()
      break
    case 'semTryWait':
      at(s.semaphores, a.pick)?.tryWait()
      break
    case 'semWaitSync':
      at(s.semaphores, a.pick)?.waitSync({ timeout: 2 })
      break
    case 'semWait': {
      const sem = at(s.semaphores, a.pick)
      if (sem) s.waits.push(sem.wait({ timeout: 20 }).catch(typedOnly))
      break
    }
    case 'semAbort': {
      const sem = at(s.semaphores, a.pick)
      if (!sem) break
      const controller = new AbortController()
      s.waits.push(sem.wait({ signal: controller.signal }).catch(typedOnly))
      controller.abort()
      break
    }
    case 'semValue': {
      const sem = at(s.semaphores, a.pick)
      if (sem) void [sem.value, sem.name, sem.offset, sem.closed]
      break
    }
    case 'semClose':
      at(s.semaphores, a.pick)?.close()
      break
    case 'semUnlink':
      at(s.semaphores, a.pick)?.unlink()
      break
    case 'semDestroy':
      at(s.semaphores, a.pick)?.destroy()
      break
  }
}
