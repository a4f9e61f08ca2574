#!/usr/bin/env node
// `npm run test:install`: what a user gets from `npm install shmkit` on Linux x64 (glibc).
// Packs the main package and the linux-x64-gnu binary package (made by the napi CLI from the
// built `.node`, as the release workflow does), installs both into a fresh project whose PATH
// has no cargo or rustc, and runs an ESM program, a CJS program (in a second process sharing a
// named segment) and `tsc` against the installed types there; the ESM and CJS programs run in
// Bun and Deno too (scripts/runtimes.mjs). Then removes the binary package and checks the
// entry's one clear error, from require() and import(). Asserts the main tarball holds only
// what users need.
// Builds the addon first when it is missing (a fresh clone). Cleans up its temporary directory.
import assert from 'node:assert/strict'
import { execFileSync, spawnSync } from 'node:child_process'
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { RUNTIMES, runtimeBinary } from './runtimes.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const platform = 'linux-x64-gnu'
const binary = `shmkit.${platform}.node`
const platformPackage = `shmkit-${platform}`

/** Exactly the files of the main tarball: the entry, the generated loader and types, and npm's always-included files. */
const mainFiles = [
  'LICENSE',
  'README.md',
  'binding.js',
  'channel.js',
  'index.d.ts',
  'index.js',
  'index.mjs',
  'package.json',
  'share.js',
]
/** Nothing of the build or the repository may ship: Rust sources, manifests, binaries, tests, tooling. */
const forbidden = [
  /\.rs$/,
  /(^|\/)Cargo\.(toml|lock)$/,
  /\.node$/,
  /(^|\/)(target|crates|__test__|scripts|npm|artifacts|node_modules|\.github|\.ci)\//,
  /\.tgz$/,
  /(^|\/)(rust-toolchain|rustfmt|deny)\.toml$/,
]

function step(title) {
  console.log(`\n=== ${title}`)
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { stdio: 'inherit', ...options })
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.signal ?? `exit ${result.status}`})`)
  }
}

/** `tar -tzf` of a tarball, without the leading `package/`. */
function tarList(tarball) {
  return execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((path) => path.replace(/^package\//, ''))
    .sort()
}

/** `npm pack` of `dir` into `destination`; returns the tarball's path. */
function pack(dir, destination) {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', destination], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  return join(destination, JSON.parse(out)[0].filename)
}

/** The user's environment: PATH without any directory that holds cargo, rustc or rustup, and no npm_* of ours. */
function userEnv() {
  const rustTools = ['cargo', 'rustc', 'rustup']
  const path = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir && !rustTools.some((tool) => existsSync(join(dir, tool))))
  if (!path.includes(dirname(process.execPath))) path.unshift(dirname(process.execPath))
  const env = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(npm_|NAPI_RS_|CARGO|RUSTUP)/i.test(key) && key !== 'PATH') env[key] = value
  }
  env.PATH = path.join(delimiter)
  for (const dir of path) for (const tool of rustTools) assert(!existsSync(join(dir, tool)), `${tool} in ${dir}`)
  assert.notEqual(spawnSync('sh', ['-c', 'command -v cargo || command -v rustc'], { env }).status, 0)
  return env
}

const programs = {
  // ESM: creates a named segment, lets the CJS program (another process) answer in it.
  'esm.mjs': `import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { inspect } from 'node:util'
import shmkit, { RobustMutex, Semaphore, SharedMemory, shareWith } from 'shmkit'

// Run by Node, Bun and Deno; the peer is always a Node process (SHMKIT_NODE, else this one).
const runtime = process.versions.bun ? 'bun' : process.versions.deno ? 'deno' : 'node'
const entry = fileURLToPath(import.meta.resolve('shmkit'))
assert(entry.startsWith(process.cwd() + '/node_modules/shmkit/'), entry)
assert(entry.endsWith('/index.mjs'), entry)
// Named exports, the default export and require() are the same objects.
assert.equal(shmkit.SharedMemory, SharedMemory)
assert.equal(createRequire(import.meta.url)('shmkit').Semaphore, Semaphore)
assert.equal(typeof RobustMutex, 'function')
assert.equal(typeof shareWith, 'function')
const name = 'inst' + randomBytes(6).toString('hex')
const shm = SharedMemory.create(name, 4096)
try {
  assert(inspect(shm).includes('/' + name), inspect(shm))
  const words = new Uint32Array(shm.buffer)
  words[0] = 0xc0ffee
  const node = process.env.SHMKIT_NODE ?? process.execPath
  const child = spawnSync(node, ['cjs.cjs', name], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(child.status, 0, child.stderr)
  assert.equal(words[1], 0xbeef)
  assert.equal(shm.kind, 'named')
} finally {
  shm.close()
  SharedMemory.unlink(name)
}
console.log('esm: ok in ' + runtime + ' (' + entry + ')')
`,
  // CJS: with a name, opens it, checks the ESM program's word and answers; alone, maps anonymous memory.
  'cjs.cjs': `const assert = require('node:assert/strict')
const { SharedMemory } = require('shmkit')

const name = process.argv[2]
if (name) {
  const shm = SharedMemory.open(name)
  const words = new Uint32Array(shm.buffer)
  assert.equal(words[0], 0xc0ffee)
  words[1] = 0xbeef
  shm.close()
} else {
  const shm = SharedMemory.anonymous(4096)
  const bytes = new Uint8Array(shm.buffer)
  bytes[4095] = 7
  assert.equal(new Uint8Array(shm.buffer)[4095], 7)
  shm.close()
  assert.equal(bytes.length, 4096)
  assert.equal(bytes[4095], 0)
  const binaryPackage = require.resolve('${platformPackage}')
  assert(binaryPackage.startsWith(__dirname + '/node_modules/${platformPackage}/'), binaryPackage)
  const runtime = process.versions.bun ? 'bun' : process.versions.deno ? 'deno' : 'node'
  console.log('cjs: ok in ' + runtime + ' (' + require.resolve('shmkit') + ', ' + binaryPackage + ')')
}
`,
  // TypeScript: the installed declarations are found and checked, and they reject a wrong call.
  'check.ts': `import { SharedMemory, type ShmErrorCode } from 'shmkit'

export function roundTrip(): number {
  using region = SharedMemory.anonymous(4096)
  const bytes: Uint8Array = new Uint8Array(region.buffer)
  bytes[0] = 1
  return region.size + bytes[0]
}

export const code: ShmErrorCode = 'ERR_SHM_UNSUPPORTED_PLATFORM'

// @ts-expect-error the size is a number
SharedMemory.anonymous('4096')
`,
  'tsconfig.json': `${JSON.stringify(
    {
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2022', 'ESNext.Disposable'],
        types: ['node'],
        strict: true,
        noEmit: true,
        skipLibCheck: false,
      },
      files: ['check.ts'],
    },
    null,
    2,
  )}\n`,
  // The loader's error when the optional binary package is missing (as with --omit=optional).
  'missing.cjs': `const assert = require('node:assert/strict')
assert.throws(() => require('shmkit'), (error) => {
  assert.equal(error.code, 'ERR_SHM_UNSUPPORTED_PLATFORM')
  assert.equal(error.platform, '${platform}')
  assert(error.message.includes('${platformPackage}'), error.message)
  return true
})
import('shmkit').then(
  () => assert.fail('import() loaded without its binary'),
  (error) => {
    assert.equal(error.code, 'ERR_SHM_UNSUPPORTED_PLATFORM')
    console.log('missing binary: ok (ERR_SHM_UNSUPPORTED_PLATFORM from require() and import())')
  },
)
`,
}

function main() {
  const glibc = Boolean(process.report.getReport().header.glibcVersionRuntime)
  if (process.platform !== 'linux' || process.arch !== 'x64' || !glibc) {
    throw new Error(`test:install packs the ${platform} binary and must run on ${platform}`)
  }
  if (!existsSync(join(root, 'node_modules', '.bin', 'napi'))) {
    step('install JS dependencies')
    run('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root })
  }
  if (!existsSync(join(root, binary))) {
    step('build the addon')
    run('npm', ['run', 'build'], { cwd: root })
  }

  const work = mkdtempSync(join(tmpdir(), 'shmkit-install-'))
  try {
    const tarballs = join(work, 'tarballs')
    mkdirSync(tarballs)

    step('pack the main package')
    const mainTarball = pack(root, tarballs)
    const packed = tarList(mainTarball)
    console.log(packed.map((file) => `  ${file}`).join('\n'))
    for (const file of packed) {
      assert(!forbidden.some((pattern) => pattern.test(file)), `the main tarball must not hold ${file}`)
    }
    assert.deepEqual(packed, mainFiles, 'the main tarball holds exactly the entry, loader, types and npm files')

    step(`make and pack ${platformPackage} with the napi CLI`)
    // The CLI works inside a package and wants a binary for every target: stage a copy of
    // package.json that targets only this platform, with the built binary as the artifact.
    const napi = join(root, 'node_modules', '.bin', 'napi')
    const release = join(work, 'release')
    mkdirSync(join(release, 'artifacts'), { recursive: true })
    const rootManifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
    rootManifest.napi.targets = ['x86_64-unknown-linux-gnu']
    writeFileSync(join(release, 'package.json'), JSON.stringify(rootManifest, null, 2))
    copyFileSync(join(root, binary), join(release, 'artifacts', binary))
    run(napi, ['create-npm-dirs', '--cwd', release, '--npm-dir', 'npm'])
    run(napi, ['artifacts', '--cwd', release, '--output-dir', 'artifacts', '--npm-dir', 'npm'])
    const npmDir = join(release, 'npm')
    const platformDir = join(npmDir, platform)
    const manifest = JSON.parse(readFileSync(join(platformDir, 'package.json'), 'utf8'))
    assert.equal(manifest.name, platformPackage)
    assert.deepEqual([manifest.os, manifest.cpu, manifest.libc], [['linux'], ['x64'], ['glibc']])
    const platformTarball = pack(platformDir, tarballs)
    const platformFiles = tarList(platformTarball)
    console.log(platformFiles.map((file) => `  ${file}`).join('\n'))
    assert(platformFiles.includes(binary), `${platformPackage} holds ${binary}`)

    step('install both into a fresh project, without cargo or rustc on PATH')
    const project = join(work, 'project')
    mkdirSync(project)
    writeFileSync(
      join(project, 'package.json'),
      `${JSON.stringify({ name: 'shmkit-install-check', private: true, type: 'module' }, null, 2)}\n`,
    )
    const env = userEnv()
    const version = (name) => JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')).version
    run(
      'npm',
      [
        'install',
        '--no-audit',
        '--no-fund',
        '--prefer-offline',
        mainTarball,
        platformTarball,
        `typescript@${version('typescript')}`,
        `@types/node@${version('@types/node')}`,
      ],
      { cwd: project, env },
    )
    const installed = readdirSync(join(project, 'node_modules', 'shmkit')).sort()
    assert.deepEqual(installed, mainFiles, 'the installed package has no binary of its own')
    for (const [file, text] of Object.entries(programs)) writeFileSync(join(project, file), text)

    step('run an ESM program (and a CJS program in a second process)')
    run(process.execPath, ['esm.mjs'], { cwd: project, env })
    step('run a CJS program')
    run(process.execPath, ['cjs.cjs'], { cwd: project, env })
    for (const runtime of ['bun', 'deno']) {
      const binary = runtimeBinary(runtime)
      const args = runtime === 'deno' ? ['run', '--allow-all'] : []
      step(`${runtime} ${RUNTIMES[runtime].version}: the ESM program (with a Node peer) and the CJS program`)
      run(binary, [...args, 'esm.mjs'], { cwd: project, env: { ...env, SHMKIT_NODE: process.execPath } })
      run(binary, [...args, 'cjs.cjs'], { cwd: project, env })
    }
    step('type-check a TypeScript program against the installed declarations')
    run(process.execPath, [join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
      cwd: project,
      env,
    })
    console.log('tsc: ok')

    step(`remove ${platformPackage}: loading shmkit throws its one clear error`)
    rmSync(join(project, 'node_modules', platformPackage), { recursive: true })
    run(process.execPath, ['missing.cjs'], { cwd: project, env })

    console.log(`\n=== test:install passed (main tarball: ${packed.join(', ')})`)
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

main()
