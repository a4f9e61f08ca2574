#!/usr/bin/env node
// `npm test`: everything a fresh clone needs, in order. Installs the JS dependencies, builds
// the addon (release, as shipped), runs the Rust tests, then the JS tests. Stops at the first
// failure with its exit code.
import { ensureInstalled, run } from './setup.mjs'

ensureInstalled()
run('build the addon', 'npm', ['run', 'build'])
run('Rust tests', 'cargo', ['test', '--workspace', '--release'])
run('JS tests', 'npx', ['ava'], { FORCE_COLOR: '0' })
console.log('\n=== all tests passed')
