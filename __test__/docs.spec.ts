// The docs cannot drift from the code: every code block of README.md and docs/*.md and every
// file in examples/ is type-checked with tsc and run on Node 20, the oldest supported Node
// (scripts/docs-test.mjs, whose header lists the conventions). Blocks in other languages are
// listed as skipped with the reason. A self-test proves that a block edited to be wrong fails,
// naming its file:line.
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'

import test from 'ava'

import { here } from './helpers.js'

interface Block {
  file: string
  runAs?: string
  line: number
  title: string
  skip?: string
  code: string
  names?: string[]
}
interface Outcome {
  ok: boolean
  message?: string
  output?: string
}
interface Prepared {
  prefix: string
  cleanup(): void
}
interface DocsTest {
  root: string
  docFiles(): string[]
  exampleFiles(): string[]
  extractBlocks(path: string, text?: string): Block[]
  prepare(blocks: Block[], options?: { examples?: string[] }): Prepared
  runBlock(prepared: Prepared, block: Block, options?: { node?: string; python?: string }): Promise<Outcome>
  runExample(prepared: Prepared, example: string, options?: { node?: string }): Promise<Outcome>
  leftovers(prefix: string): string[]
  unsupportedHere(): string | null
  node20(): Promise<string | null>
  pythonCommand(): string | null
  rustAvailable(): boolean
  missingTool(block: Block, tools: { python: string | null; rust: boolean }): string | null
}

const docs = (await import(pathToFileURL(join(here, '..', 'scripts', 'docs-test.mjs')).href)) as DocsTest
const unsupported = docs.unsupportedHere()
const node20 = await docs.node20()
const node = node20 ?? process.execPath
const onNode = node20 ? 'Node 20' : `Node ${process.version} (no Node 20 for ${process.arch})`
const python = docs.pythonCommand()
const rust = docs.rustAvailable()

const blocks = unsupported ? [] : docs.docFiles().flatMap((file) => docs.extractBlocks(file))
const runnable = blocks.filter((block) => !block.skip && !docs.missingTool(block, { python, rust }))
const examples = unsupported ? [] : docs.exampleFiles()
let prepared: Prepared | undefined
if (unsupported) test.skip(`docs test not run: ${unsupported}`, () => {})
// The checks below need the blocks: skipped with the one reason above where they cannot run.
const check = unsupported ? test.skip : test
const checkSerial = unsupported ? test.serial.skip : test.serial

test.before('write every block and type-check them all with tsc', () => {
  if (!unsupported) prepared = docs.prepare(runnable, { examples })
})
test.after.always(() => prepared?.cleanup())

for (const block of blocks) {
  const skip = block.skip ?? docs.missingTool(block, { python, rust })
  if (skip) {
    test.skip(`${block.title}: not run: ${skip}`, () => {})
    continue
  }
  const how =
    { python: `runs with ${python}`, rust: 'compiles and runs with rustdoc --test' }[block.runAs ?? ''] ??
    `type-checks and runs on ${onNode}`
  test.serial(`${block.title} ${how}`, async (t) => {
    const outcome = await docs.runBlock(prepared!, block, { node, python: python! })
    if (!outcome.ok) t.fail(outcome.message)
    else t.pass()
  })
}

for (const example of examples) {
  test.serial(`${example.slice(docs.root.length + 1)} type-checks and runs on ${onNode}`, async (t) => {
    const outcome = await docs.runExample(prepared!, example, { node })
    if (!outcome.ok) t.fail(outcome.message)
    else t.pass()
  })
}

checkSerial('the blocks left no named object behind', (t) => {
  t.deepEqual(docs.leftovers(prepared!.prefix), [])
})

check('README.md has blocks that run, and examples/ has programs', (t) => {
  const run = blocks.filter((block) => block.file === 'README.md' && !block.skip)
  t.true(run.length >= 5, `${run.length} README blocks run`)
  t.true(examples.length >= 1)
})

// A markdown file that is never written: its blocks are checked exactly as README's are.
const selfTest = `# self-test

\`\`\`ts
import { SharedMemory } from 'shmkit'
using region = SharedMemory.anonymous(4096)
console.log(region.size) // 4096
\`\`\`

\`\`\`ts
import { SharedMemory } from 'shmkit'
// edited wrong: a size is a number
using region = SharedMemory.anonymous('4096')
\`\`\`

\`\`\`ts
import { SharedMemory } from 'shmkit'
using region = SharedMemory.anonymous(4096)
console.log(region.size) // 4095
\`\`\`

\`\`\`js
import { SharedMemory } from 'shmkit'
// edited wrong: nothing by that name exists (type-correct, fails when run)
const region = SharedMemory.open('nothing-here')
region.close()
\`\`\`

\`\`\`js
import { SharedMemory } from 'shmkit'
using region = SharedMemory.anonymous(4096) // a SyntaxError in JavaScript on Node 20
\`\`\`

<!-- docs-test: before
import { SharedMemory } from 'shmkit'
new Uint8Array(SharedMemory.create('selftest', 4096).buffer)[0] = 9
-->

\`\`\`js
import { SharedMemory } from 'shmkit'
const region = SharedMemory.open('selftest') // left for the test to unlink
console.log(new Uint8Array(region.buffer)[0]) // 9
\`\`\`

<!-- docs-test: skip: needs a second machine -->

\`\`\`ts
throw new Error('never run')
\`\`\`

\`\`\`js
import { answer } from './helper.mjs'
console.log(answer) // 42
// helper.mjs
export const answer = 42
\`\`\`
`

check('self-test: a block edited to be wrong fails with its file:line, a right one passes', async (t) => {
  const found = docs.extractBlocks(join(docs.root, 'SELFTEST.md'), selfTest)
  t.is(found.length, 8)
  const self = docs.prepare(found)
  t.teardown(() => self.cleanup())
  const outcomes = []
  for (const block of found.slice(0, 6)) outcomes.push(await docs.runBlock(self, block, { node }))
  const [good, typeError, wrongOutput, runtimeError, usingInJs, withBefore] = outcomes
  t.true(good.ok, good.message)
  t.false(typeError.ok)
  t.regex(typeError.message!, /^SELFTEST\.md:9: tsc reports:\nSELFTEST\.md:12: error TS2345/)
  t.false(wrongOutput.ok)
  t.regex(wrongOutput.message!, /^SELFTEST\.md:15: its comment says it prints 4095, but it printed:\n4096/)
  t.false(runtimeError.ok)
  t.regex(runtimeError.message!, /^SELFTEST\.md:21: the block ended with exit code 1 on Node v\d+\.[\s\S]*ENOENT/)
  // `using` in plain JavaScript is a SyntaxError before Node 24, as a reader on Node 20 would see.
  if (node20) {
    t.false(usingInJs.ok)
    t.regex(usingInJs.message!, /^SELFTEST\.md:28: the block ended with exit code 1 on Node v20\.[\s\S]*SyntaxError/)
  } else {
    t.log(`the \`using\` self-check needs Node 20; ${onNode} ran it`)
  }
  t.true(withBefore.ok, withBefore.message)
  // The name was made unique for the run, and unlinked although the block left it.
  t.true(found[5].names!.includes('selftest'))
  t.deepEqual(docs.leftovers(self.prefix), [])
  t.is(found[6].skip, 'needs a second machine')
  // A block of two files: the first is run and imports the second.
  const split = await docs.runBlock(self, found[7], { node })
  t.true(split.ok, split.message)
})

check('self-test: a README block with a misspelt call fails at that line', async (t) => {
  const readme = join(docs.root, 'README.md')
  const block = docs.extractBlocks(readme).find((b) => !b.skip && /SharedMemory\.\w+\(/.test(b.code))
  if (!block) return t.fail('no README block calls SharedMemory')
  const lines = block.code.split('\n')
  const at = lines.findIndex((line) => /SharedMemory\.\w+\(/.test(line))
  lines[at] = lines[at].replace(/SharedMemory\.(\w+)\(/, 'SharedMemory.$1Misspelt(')
  // Rebuild the README text with only that block, at its own line, and check it.
  const text =
    '\n'.repeat(block.line - 1) +
    '```' +
    (block.title.match(/\((\w+)\)$/)?.[1] ?? 'ts') +
    '\n' +
    lines.join('\n') +
    '\n```\n'
  const [edited] = docs.extractBlocks(readme, text)
  const self = docs.prepare([edited])
  t.teardown(() => self.cleanup())
  const outcome = await docs.runBlock(self, edited, { node })
  t.false(outcome.ok)
  t.true(
    outcome.message!.startsWith(`README.md:${block.line}: tsc reports:\nREADME.md:${block.line + 1 + at}: error`),
    outcome.message,
  )
  t.deepEqual(docs.leftovers(self.prefix), [])
})

const checkRust = unsupported || !rust ? test.skip : test
checkRust('self-test: a Rust block runs against the crate, and one edited wrong fails at its line', async (t) => {
  const text = `# Rust

\`\`\`rust
let region = shmkit::Region::create("/selftest", 4096)?; // left for the test to unlink
region.write_at(0, b"hi")?;
\`\`\`

\`\`\`rust
let region = shmkit::Region::anonymous(4096)?;
region.write_at(0, 7)?; // edited wrong: bytes, not a number
\`\`\`
`
  const found = docs.extractBlocks(join(docs.root, 'SELFTEST.md'), text)
  const self = docs.prepare(found)
  t.teardown(() => self.cleanup())
  const good = await docs.runBlock(self, found[0])
  t.true(good.ok, good.message)
  t.deepEqual(found[0].names, ['selftest'])
  const wrong = await docs.runBlock(self, found[1])
  t.false(wrong.ok)
  t.regex(wrong.message!, /^SELFTEST\.md:8: rustdoc --test ended with exit code 101:[\s\S]*--> SELFTEST\.md:10:/)
  t.deepEqual(docs.leftovers(self.prefix), [])
})
