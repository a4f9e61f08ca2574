// Runs ava with its TAP reporter and counts the results, for scripts that must report numbers
// or compare the list of skipped tests with an expected one. Output passes through as it comes.
//
//   const { passed, skipped, failed, skippedTitles } = await runAva(['__test__/x.spec.ts'], { env })
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const cli = join(root, 'node_modules', 'ava', 'entrypoints', 'cli.mjs')

/** Runs `node <ava> --tap ...args` (the `node` on options.env's PATH) and counts its TAP lines. */
export function runAva(args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn('node', [cli, '--tap', ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
      ...options,
    })
    const counts = { passed: 0, skipped: 0, failed: 0, todo: 0, skippedTitles: [], failedTitles: [] }
    let pending = ''
    const take = (line) => {
      const ok = /^ok \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$/.exec(line)
      const notOk = /^not ok \d+ - (.*?)(?: # (TODO)\b.*)?$/.exec(line)
      if (ok?.[2] === 'SKIP') {
        counts.skipped++
        counts.skippedTitles.push(ok[1])
      } else if (ok?.[2] === 'TODO' || notOk?.[2] === 'TODO') counts.todo++
      else if (ok) counts.passed++
      else if (notOk) {
        counts.failed++
        counts.failedTitles.push(notOk[1])
      }
    }
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      process.stdout.write(chunk)
      pending += chunk
      const lines = pending.split('\n')
      pending = lines.pop()
      lines.forEach(take)
    })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (pending) take(pending)
      // ava exits non-zero on a failure it may not have printed as a test (a crashed worker).
      if ((code !== 0 || signal) && counts.failed === 0) {
        counts.failed++
        counts.failedTitles.push(`ava exited with ${signal ?? `code ${code}`}`)
      }
      resolve(counts)
    })
  })
}
