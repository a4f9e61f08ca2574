// Out of space: too-large creates fail at once with ENOSPC and leave no name; `reserve`
// guarantees the pages. Runs in a private mount namespace with a 16 MiB /dev/shm, so the
// outcome does not depend on this machine's free space.
import { spawnSync } from 'node:child_process'

import anyTest from 'ava'

import { fixture, linuxOnly } from './helpers.js'

const test = linuxOnly(anyTest, 'a private /dev/shm mount')

const canUnshare =
  process.getuid?.() === 0 &&
  spawnSync('unshare', ['-m', '--propagation', 'private', 'true'], { stdio: 'ignore' }).status === 0

const withSmallShm = canUnshare ? test : test.skip
if (!canUnshare) console.log('space: needs root and unshare(1) to mount a small private /dev/shm; skipping')

withSmallShm('ENOSPC at create instead of SIGBUS later, and reserved pages can all be touched', (t) => {
  const script = `mount -t tmpfs -o size=16m tmpfs /dev/shm && exec "$0" "$1"`
  const ran = spawnSync(
    'unshare',
    ['-m', '--propagation', 'private', 'sh', '-c', script, process.execPath, fixture('small-shm.mjs')],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  )
  t.is(ran.status, 0, ran.stderr)
  t.deepEqual(ran.stdout.trim().split('\n'), [
    'too-big err ENOSPC',
    'too-big-left-nothing err ENOENT',
    'lazy ok',
    'reserved ok',
    'touch-reserved ok',
    'reserve-more err ENOSPC',
    'reserve-more-left-nothing err ENOENT',
    'lazy-touch signal SIGBUS',
  ])
})
