#!/usr/bin/env node
// The connection, inbound, outbound, topics and frame-writer tests again: on the lowest ws
// that package.json accepts, on the newest ws 8 pinned in devDependencies, and on the
// installed ws with every ws and Fastify internal turned off (the public-API fallbacks).
'use strict'
const { spawnSync } = require('node:child_process')
const { join } = require('node:path')

const root = join(__dirname, '..')
const files = [
  'test/connection.test.ts', 'test/dispatch.test.ts', 'test/inbound.test.ts', 'test/outbound.test.ts',
  'test/inbound-heartbeat.test.ts', 'test/outbound-total.test.ts', 'test/keepalive.test.ts', 'test/lifecycle-log.test.ts',
  'test/topics.test.ts', 'test/topics-edge.test.ts', 'test/topics-replay.test.ts', 'test/frame-writer.test.ts',
  'test/internals.test.ts'
]
const runs = [
  { name: 'lowest ws allowed (ws-floor)', env: { WS_UNDER_TEST: 'ws-floor' } },
  { name: 'newest ws 8 (ws-latest)', env: { WS_UNDER_TEST: 'ws-latest' } },
  { name: 'internals off (public ws API only)', env: { FASTIFY_TYPED_WEBSOCKET_INTERNALS: 'off' } }
]
const only = process.argv.slice(2)
let failed = 0
for (const run of runs) {
  if (only.length > 0 && !only.some(o => run.name.includes(o))) continue
  const version = spawnSync(process.execPath, ['--require', './test/helpers/ws-alias.cjs', '-p', "require('ws/package.json').version"], {
    cwd: root, env: { ...process.env, ...run.env }, encoding: 'utf8'
  }).stdout.trim()
  console.log(`\n# ws matrix: ${run.name}: ws ${version}`)
  const result = spawnSync('npx', ['tap', '--disable-coverage', '--node-arg=--require=./test/helpers/ws-alias.cjs', ...files], {
    cwd: root, env: { ...process.env, ...run.env }, stdio: 'inherit'
  })
  if (result.status !== 0) {
    failed++
    console.log(`# ws matrix: ${run.name}: FAILED`)
  }
}
process.exit(failed === 0 ? 0 : 1)
