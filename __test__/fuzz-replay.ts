// Replays actions printed by the property test: node --import tsx __test__/fuzz-replay.ts <file.jsonl>
import { readFileSync } from 'node:fs'

import { type State, step } from './fuzz-steps.js'

const s: State = {
  prefix: 'replay',
  names: [0, 1, 2, 3].map((i) => `replay${i}`),
  handles: [],
  views: [],
  mutexes: [],
  semaphores: [],
  waits: [],
  tokens: [],
}
for (const line of readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean)) {
  console.log(line.slice(0, 120))
  try {
    step(s, JSON.parse(line))
  } catch (error) {
    console.log('  ->', (error as NodeJS.ErrnoException).code ?? (error as Error).message)
  }
}
console.log('survived')
