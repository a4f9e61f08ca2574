#!/usr/bin/env node
// The docs test: every code block of README.md and docs/*.md, and every file in examples/, is
// type-checked with tsc and run on the oldest supported Node (20), so the docs cannot drift
// from the code. `__test__/docs.spec.ts` runs it under `npm test`; alone:
//
//   node scripts/docs-test.mjs [file.md ...]
//
// What runs: ```ts / ```typescript blocks are type-checked, compiled by tsc (which lowers
// `using`) and run; ```js / ```mjs blocks are type-checked (checkJs) and run as written, so a
// `using` there fails on Node 20 as it would for a reader; ```python blocks run with python3;
// ```rust blocks are the body of a `main` returning a `Result` (so `?` works), compiled against
// the `shmkit` crate and run by `rustdoc --test`. Other languages (sh, text) are listed as not
// run, with the reason.
//
// Conventions inside a block:
// - `import ... from 'shmkit'` resolves to this checkout.
// - a line `// name.mjs` (a file name alone) starts a second file of the block, written beside
//   the first (say a `worker.mjs` that the first spawns); the first file is the one run.
// - a block that mentions `node --single-threaded` is run with that flag (fork needs it).
// - `console.log(...) // 42` (Python: `print(...)  # 42`): a one-word comment after it is an
//   expected output line; the printed lines must contain those words in order.
// - names given to SharedMemory/Semaphore create/open/openOrCreate/unlink/removeUnused, to
//   Python's SharedMemory(...) and as `prefix:` are made unique for the run (a random prefix
//   is put in front of every quoted occurrence), and every one is unlinked afterwards.
//
// Directives: an HTML comment right before a block (blank lines allowed between).
//   <!-- docs-test: skip: the reason -->       not run; the reason is printed
//   <!-- docs-test: before
//   ...a Node.js ESM program run first (say the other process's side), names rewritten too...
//   -->
//   <!-- docs-test: after
//   ...a Node.js ESM program run after the block succeeded, to check what it left...
//   -->
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { basename, dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..')

const RUN_AS = {
  ts: 'ts',
  typescript: 'ts',
  mts: 'ts',
  js: 'js',
  javascript: 'js',
  mjs: 'js',
  python: 'python',
  py: 'python',
  rust: 'rust',
}
const NOT_RUN = {
  sh: 'shell commands (install, build and test steps), not run here',
  bash: 'shell commands, not run here',
  console: 'shell commands, not run here',
}

/** The markdown files whose blocks are checked: README.md and docs/*.md. */
export function docFiles() {
  const docs = join(root, 'docs')
  const inDocs = existsSync(docs)
    ? readdirSync(docs)
        .filter((file) => file.endsWith('.md'))
        .sort()
        .map((file) => join(docs, file))
    : []
  return [join(root, 'README.md'), ...inDocs]
}

/** Every file of examples/, each run as a program from the repository root. */
export function exampleFiles() {
  const dir = join(root, 'examples')
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter((file) => /\.(mjs|js|cjs|mts|ts)$/.test(file))
    .sort()
    .map((file) => join(dir, file))
}

/**
 * The fenced code blocks of a markdown text, each with its 1-based line (of the opening fence),
 * language, files (split at `// name.ext` lines), directives and expected output.
 */
export function extractBlocks(path, text = readFileSync(path, 'utf8')) {
  const lines = text.split('\n')
  const where = relative(root, path) || path
  const blocks = []
  let pending = [] // directives seen since the last block
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    const directive = /^\s*<!--\s*docs-test:\s*(skip|before|after)\b:?\s*(.*)$/.exec(line)
    if (directive) {
      let body = directive[2]
      let j = i
      while (!body.includes('-->') && j + 1 < lines.length) body += '\n' + lines[++j]
      pending.push({ kind: directive[1], text: body.slice(0, body.lastIndexOf('-->')).trim(), line: i + 1 })
      i = j
      continue
    }
    const fence = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/.exec(line)
    if (!fence) {
      // Other one-line HTML comments (`<!-- prettier-ignore -->`) keep the directives seen.
      if (line.trim() !== '' && !/^\s*<!--.*-->\s*$/.test(line)) pending = []
      continue
    }
    const [, indent, marker, lang] = fence
    const code = []
    let j = i + 1
    while (j < lines.length && !lines[j].trimStart().startsWith(marker)) {
      code.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j])
      j++
    }
    blocks.push(describeBlock(where, i + 1, lang.toLowerCase(), code, pending))
    pending = []
    i = j
  }
  return blocks
}

function describeBlock(file, line, lang, code, directives) {
  const skip = directives.find((d) => d.kind === 'skip')
  const block = {
    file,
    line,
    lang,
    title: `${file}:${line} (${lang || 'no language'})`,
    runAs: RUN_AS[lang],
    skip: skip ? skip.text || 'no reason given' : undefined,
    before: directives.filter((d) => d.kind === 'before').map((d) => d.text),
    after: directives.filter((d) => d.kind === 'after').map((d) => d.text),
    code: code.join('\n'),
    files: [],
    expected: [],
    execArgv: [],
  }
  if (!block.skip && !block.runAs) {
    block.skip = NOT_RUN[lang] ?? `a ${lang ? `\`${lang}\`` : 'plain'} block: not code this test runs`
  }
  // Files: a line that is only `// name.ext` starts another one.
  const extension = { ts: '.mts', js: '.mjs', python: '.py', rust: '.md' }[block.runAs] ?? '.txt'
  let current = { name: `main${extension}`, lines: [], firstLine: line + 1 }
  code.forEach((text, k) => {
    const named = /^\/\/\s*([\w.-]+\.(?:mjs|cjs|js|mts|ts))\s*$/.exec(text)
    if (named && (block.runAs === 'ts' || block.runAs === 'js')) {
      if (current.lines.some((l) => l.trim() !== '')) block.files.push(current)
      current = { name: named[1], lines: [], firstLine: line + 2 + k }
    } else {
      current.lines.push(text)
    }
  })
  block.files.push(current)
  for (const text of code) {
    const expected = /console\.log\(.*\)\s*\/\/\s*(\S+)\s*$/.exec(text) ?? /\bprint\(.*\)\s*#\s*(\S+)\s*$/.exec(text)
    if (expected) block.expected.push(expected[1])
  }
  if (/node --single-threaded/.test(block.code)) block.execArgv.push('--single-threaded')
  return block
}

/** The names a block's code (and its before/after programs) gives to named objects. */
export function namesIn(texts) {
  const names = new Set()
  const patterns = [
    /\b(?:SharedMemory|Semaphore)\.(?:create|open|openOrCreate|unlink|removeUnused)\(\s*(['"])\/?([\w.-]+)\1/g,
    /\bSharedMemory\(\s*(?:name\s*=\s*)?(['"])\/?([\w.-]+)\1/g, // Python's multiprocessing.shared_memory
    /\bprefix:\s*(['"])\/?([\w.-]+)\1/g,
    /\b(?:Region|Semaphore)::(?:create|open|open_or_create|unlink)\(\s*(")\/?([\w.-]+)\1/g, // Rust
  ]
  for (const text of texts) for (const pattern of patterns) for (const m of text.matchAll(pattern)) names.add(m[2])
  return [...names].sort((a, b) => b.length - a.length)
}

/** `text` with every quoted occurrence of each name (with or without its `/`) given the prefix. */
export function rewriteNames(text, names, prefix) {
  let out = text
  for (const name of names) {
    const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    out = out.replace(
      new RegExp(`(['"\`])(/?)${escaped}\\1`, 'g'),
      (_, quote, slash) => `${quote}${slash}${prefix}${name}${quote}`,
    )
  }
  return out
}

/**
 * Writes every block into a work directory, type-checks them (and `examples`) with one tsc run,
 * and returns what `runBlock` needs. `prefix` starts every object name the blocks use.
 */
export function prepare(blocks, { examples = [], prefix = `dt${randomBytes(3).toString('hex')}` } = {}) {
  const work = mkdtempSync(join(tmpdir(), 'shmkit-docs-'))
  // `import ... from 'shmkit'` anywhere under the work directory is this checkout.
  mkdirSync(join(work, 'node_modules'))
  symlinkSync(root, join(work, 'node_modules', 'shmkit'), 'dir')
  symlinkSync(join(root, 'node_modules', '@types'), join(work, 'node_modules', '@types'), 'dir')
  const sources = []
  const lineMap = new Map() // a written file -> (its line -> the markdown line)
  blocks.forEach((block, index) => {
    if (block.skip) return
    block.dir = join(work, 'src', `${index}-${basename(block.file).replace(/\W/g, '_')}-${block.line}`)
    mkdirSync(block.dir, { recursive: true })
    block.names = namesIn([block.code, ...block.before, ...block.after])
    block.prefix = prefix
    for (const file of block.files) {
      const path = join(block.dir, file.name)
      let text = rewriteNames(file.lines.join('\n'), block.names, prefix)
      // rustdoc tests markdown: the block becomes the body of a main that may use `?`.
      if (block.runAs === 'rust') text = `\`\`\`rust\n${RUST_MAIN}\n${text}\n# Ok(())\n# }\n\`\`\``
      writeFileSync(path, text + '\n')
      lineMap.set(path, (line) => `${block.file}:${file.firstLine + line - 1}`)
      if (block.runAs === 'ts' || block.runAs === 'js') sources.push(path)
    }
    block.programs = { before: [], after: [] }
    for (const kind of ['before', 'after']) {
      block[kind].forEach((text, k) => {
        const path = join(block.dir, `${kind}-${k}.mjs`)
        writeFileSync(path, rewriteNames(text, block.names, prefix) + '\n')
        lineMap.set(path, (line) => `${block.file}:${block.line} (its ${kind} program, line ${line})`)
        block.programs[kind].push(path)
        sources.push(path)
      })
    }
  })
  for (const example of examples) lineMap.set(example, (line) => `${relative(root, example)}:${line}`)

  const outDir = join(work, 'out')
  writeFileSync(
    join(work, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        moduleDetection: 'force',
        lib: ['ES2022', 'ESNext.Disposable'],
        types: ['node'],
        typeRoots: [join(work, 'node_modules', '@types')],
        strict: true,
        allowJs: true,
        checkJs: true,
        skipLibCheck: true,
        rootDir: '/',
        outDir,
        noEmitOnError: false,
      },
      files: [...sources, ...examples],
    }),
  )
  const tsc = spawnSync(
    process.execPath,
    [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', work, '--pretty', 'false'],
    // tsc prints paths relative to its working directory: run it in `work`, where they are read.
    { cwd: work, encoding: 'utf8' },
  )
  const diagnostics = new Map() // a written file -> its tsc errors, located in the markdown
  let last
  for (const line of tsc.stdout.split('\n')) {
    const m = /^(.+?)\((\d+),(\d+)\): (error .*)$/.exec(line)
    if (m) {
      const path = m[1].startsWith('/') ? m[1] : join(work, m[1])
      const at = lineMap.get(path)
      last = `${at ? at(Number(m[2])) : `${path}:${m[2]}`}: ${m[4]}`
      if (!diagnostics.has(path)) diagnostics.set(path, [])
      diagnostics.get(path).push(last)
    } else if (line.startsWith(' ') && last) {
      last += `\n${line}` // a continuation of the previous message
    }
  }
  if (tsc.status !== 0 && diagnostics.size === 0) {
    throw new Error(`tsc failed without diagnostics it could place:\n${tsc.stdout}${tsc.stderr}`)
  }
  const outPath = (path) =>
    join(outDir, relative('/', path))
      .replace(/\.mts$/, '.mjs')
      .replace(/\.ts$/, '.js')
  const rust = blocks.some((block) => !block.skip && block.runAs === 'rust') ? rustCrate() : null
  return {
    work,
    outDir,
    prefix,
    diagnostics,
    outPath,
    rust,
    cleanup: () => rmSync(work, { recursive: true, force: true }),
  }
}

const RUST_MAIN = '# fn main() -> Result<(), Box<dyn std::error::Error>> {'

/** Whether rustdoc (the repository's toolchain) runs here. */
export function rustAvailable() {
  return spawnSync('rustdoc', ['--version'], { cwd: root, stdio: 'ignore' }).status === 0
}

/** Builds the `shmkit` crate (release, as `npm test` does) and returns how rustdoc links it. */
function rustCrate() {
  const build = spawnSync('cargo', ['build', '-p', 'shmkit', '--release', '--locked', '--message-format=json'], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  })
  if (build.status !== 0) throw new Error(`cargo build -p shmkit failed:\n${build.stderr}`)
  const lib = build.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line))
    .find((message) => message.reason === 'compiler-artifact' && message.target?.name === 'shmkit')
  const rlib = lib?.filenames.find((file) => file.endsWith('.rlib'))
  if (!rlib) throw new Error('cargo build -p shmkit reported no rlib')
  const manifest = readFileSync(join(root, 'Cargo.toml'), 'utf8')
  const edition = /^edition\s*=\s*"(\d+)"/m.exec(manifest)?.[1] ?? '2021'
  return { rlib, deps: join(dirname(rlib), 'deps'), edition }
}

/** Runs a program to its end (killed after `timeoutMs`): `{ code, signal, stdout, stderr }`. */
function runProgram(command, args, { cwd, timeoutMs = 120_000 }) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

const shmkit = () => createRequire(import.meta.url)('../index.js')

/** Unlinks every name a block used, as segment and as semaphore; never throws. */
export function unlinkNames(block) {
  const { SharedMemory, Semaphore } = shmkit()
  for (const name of block.names ?? []) {
    for (const unlink of [(n) => SharedMemory.unlink(n), (n) => Semaphore.unlink(n)]) {
      try {
        unlink(block.prefix + name)
      } catch {
        // not created, or already removed by the block
      }
    }
  }
}

/**
 * Runs one prepared block: its type errors, then its before programs, the block, its expected
 * output and its after programs. Returns `{ ok: true, output }` or `{ ok: false, message }`,
 * the message starting with the block's file:line. Always unlinks the block's names.
 */
export async function runBlock(prepared, block, { node = process.execPath, python = 'python3' } = {}) {
  const fail = (why) => ({ ok: false, message: `${block.file}:${block.line}: ${why}` })
  try {
    const errors = block.files.flatMap((f) => prepared.diagnostics.get(join(block.dir, f.name)) ?? [])
    for (const kind of ['before', 'after']) {
      for (const path of block.programs[kind]) errors.push(...(prepared.diagnostics.get(path) ?? []))
    }
    if (errors.length > 0) return fail(`tsc reports:\n${errors.join('\n')}`)
    const runJs = async (path, what, execArgv = []) => {
      const ran = await runProgram(node, [...execArgv, path], { cwd: dirname(path) })
      if (ran.code !== 0) {
        return `${what} ended with ${ran.signal ?? `exit code ${ran.code}`} on Node ${nodeVersion(node)}:\n${ran.stderr}${ran.stdout}`
      }
      return ran
    }
    for (const path of block.programs.before) {
      const ran = await runJs(path, 'its before program')
      if (typeof ran === 'string') return fail(ran)
    }
    const main = join(block.dir, block.files[0].name)
    let ran
    if (block.runAs === 'python') {
      ran = await runProgram(python, [main], { cwd: block.dir })
      if (ran.code !== 0)
        return fail(`python ended with ${ran.signal ?? `exit code ${ran.code}`}:\n${ran.stderr}${ran.stdout}`)
    } else if (block.runAs === 'rust') {
      const { rlib, deps, edition } = prepared.rust
      const args = ['--test', main, '--edition', edition, '--extern', `shmkit=${rlib}`, '-L', `dependency=${deps}`]
      ran = await runProgram('rustdoc', args, { cwd: root })
      if (ran.code !== 0) {
        // The markdown rustdoc saw has two lines (fence, `fn main`) before the block's first.
        const path = main.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
        const output = `${ran.stdout}${ran.stderr}`
          .replace(new RegExp(`${path} - \\(line \\d+\\)`, 'g'), `${block.file}:${block.line}`)
          .replace(new RegExp(`${path}:(\\d+)`, 'g'), (_, line) => `${block.file}:${block.line + Number(line) - 2}`)
        return fail(`rustdoc --test ended with ${ran.signal ?? `exit code ${ran.code}`}:\n${output}`)
      }
    } else {
      // TypeScript runs as tsc compiled it; JavaScript exactly as written.
      const path = block.runAs === 'ts' ? prepared.outPath(main) : main
      ran = await runJs(path, 'the block', block.execArgv)
      if (typeof ran === 'string') return fail(ran)
    }
    const printed = ran.stdout.split('\n').map((l) => l.trim())
    let from = 0
    for (const want of block.expected) {
      const at = printed.indexOf(want, from)
      if (at < 0) return fail(`its comment says it prints ${want}, but it printed:\n${ran.stdout}`)
      from = at + 1
    }
    for (const path of block.programs.after) {
      const after = await runJs(path, 'its after program')
      if (typeof after === 'string') return fail(after)
    }
    return { ok: true, output: ran.stdout + ran.stderr }
  } finally {
    unlinkNames(block)
  }
}

/** Runs an example from the repository root; its type errors come from the same tsc run. */
export async function runExample(prepared, example, { node = process.execPath } = {}) {
  const where = relative(root, example)
  const errors = prepared.diagnostics.get(example) ?? []
  if (errors.length > 0) return { ok: false, message: `${where}: tsc reports:\n${errors.join('\n')}` }
  const ran = await runProgram(node, [example], { cwd: root })
  if (ran.code !== 0) {
    return {
      ok: false,
      message: `${where}: ended with ${ran.signal ?? `exit code ${ran.code}`} on Node ${nodeVersion(node)}:\n${ran.stderr}${ran.stdout}`,
    }
  }
  return { ok: true, output: ran.stdout + ran.stderr }
}

/** /dev/shm entries (segments, and semaphores as sem.NAME) whose name holds the prefix. */
export function leftovers(prefix) {
  if (!existsSync('/dev/shm')) return []
  return readdirSync('/dev/shm').filter((file) => file.includes(prefix))
}

/** Why a block cannot run here for want of a tool (python3, rustdoc), or null. */
export function missingTool(block, { python, rust }) {
  if (block.runAs === 'python' && !python) return 'no python3 with multiprocessing.shared_memory'
  if (block.runAs === 'rust' && !rust) return 'no Rust toolchain (rustdoc) here'
  return null
}

/** A python3 with multiprocessing.shared_memory (3.8+), or null. */
export function pythonCommand() {
  const probe = spawnSync('python3', ['-c', 'import multiprocessing.shared_memory'], { stdio: 'ignore' })
  return probe.status === 0 ? 'python3' : null
}

/**
 * Why the blocks cannot run on this machine, or null: they use what only Linux with glibc has
 * (fork, /dev/zero, in-region semaphores, RobustMutex, list).
 */
export function unsupportedHere() {
  const glibc = process.platform === 'linux' && Boolean(process.report.getReport().header.glibcVersionRuntime)
  if (glibc) return null
  return `the README's blocks use fork, /dev/zero, in-region semaphores, RobustMutex and list, which need Linux with glibc; this is ${process.platform}-${process.arch}${process.platform === 'linux' ? ' (musl)' : ''}`
}

/** Node 20 (the oldest supported): this one, or from npm on linux-x64; elsewhere null. */
export async function node20() {
  if (process.versions.node.startsWith('20.')) return process.execPath
  if (process.platform !== 'linux' || process.arch !== 'x64') return null
  const { nodeBinary } = await import('./node-bin.mjs')
  return nodeBinary(20)
}

const versions = new Map()
function nodeVersion(node) {
  if (!versions.has(node)) versions.set(node, spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout.trim())
  return versions.get(node)
}

async function main() {
  const unsupported = unsupportedHere()
  if (unsupported) {
    console.log(`docs test not run: ${unsupported}`)
    return
  }
  const node = (await node20()) ?? process.execPath
  if (node === process.execPath && !process.versions.node.startsWith('20.')) {
    console.log(`no Node 20 for ${process.arch}: running the blocks on Node ${process.version}`)
  }
  const python = pythonCommand()
  const rust = rustAvailable()
  const files = process.argv.length > 2 ? process.argv.slice(2) : docFiles()
  const blocks = files.flatMap((file) => extractBlocks(file))
  const examples = process.argv.length > 2 ? [] : exampleFiles()
  const runnable = blocks.filter((block) => !missingTool(block, { python, rust }))
  const prepared = prepare(runnable, { examples })
  let failed = 0
  try {
    for (const block of blocks) {
      const skip = block.skip ?? missingTool(block, { python, rust })
      if (skip) {
        console.log(`- ${block.title}: not run: ${skip}`)
        continue
      }
      const result = await runBlock(prepared, block, { node, python })
      if (!result.ok) failed++
      console.log(result.ok ? `ok ${block.title}` : `FAILED ${result.message}`)
    }
    for (const example of examples) {
      const result = await runExample(prepared, example, { node })
      if (!result.ok) failed++
      console.log(result.ok ? `ok ${relative(root, example)}` : `FAILED ${result.message}`)
    }
  } finally {
    prepared.cleanup()
  }
  const left = leftovers(prepared.prefix)
  if (left.length > 0) {
    failed++
    console.log(`FAILED: left in /dev/shm: ${left.join(', ')}`)
  }
  process.exitCode = failed ? 1 : 0
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main()
