'use strict'

/*
 * Benchmark: server CPU per call round trip, side by side in one run.
 *
 *   npm run build && node bench/calls.js      full run (about a minute)
 *   node bench/calls.js --quick               small counts, a few seconds (smoke test)
 *   node bench/calls.js --rounds 9
 *   node bench/calls.js --window 1            one call in flight per connection (default 16)
 *
 * Three servers answer the same call, `echo` of `{ room, n, text }`:
 *   typed     this plugin: a route with `requests`, params and result checked against TypeBox
 *             schemas, JSON-RPC 2.0 envelopes, the answer serialized from the result schema
 *   ws        bare `ws` with a hand-written id echo: JSON.parse, the handler, JSON.stringify
 *             (the same JSON-RPC text on the wire, no checks)
 *   socket.io socket.io 4, the client's emitWithAck and the server's acknowledgement callback,
 *             WebSocket transport only
 * Each server runs in its own process pinned to core 0 (`taskset -c 0`), the load generator
 * (this file with --load) in another one pinned to core 1. Every round each server gets
 * `connections` connections, each keeping `window` calls in flight for `durationMs`; the
 * load generator checks that every answer carries its own call's values. CPU/call is the
 * server's process.cpuUsage() (user + system) over the window divided by the calls answered.
 * Each server is warmed up once; then the servers alternate for several rounds, their order
 * rotated every round. Ratios are taken per round and the median over rounds is reported.
 * Targets: typed <= 1.15x ws and <= 0.60x socket.io.
 *
 * Output: the table on stdout, progress on stderr, samples in bench/results/calls.json.
 */

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { median, rotate } = require('./stats')

const ROOT = path.join(__dirname, '..')
const RESULTS_FILE = path.join(__dirname, 'results', 'calls.json')

const SERVERS = [
  { key: 'ws', label: 'ws id echo', file: 'servers/calls-ws.js', protocol: 'jsonrpc' },
  { key: 'typed', label: 'fastify-typed-websocket', file: 'servers/calls-typed.js', protocol: 'jsonrpc' },
  { key: 'socketio', label: 'socket.io emitWithAck', file: 'servers/calls-socketio.js', protocol: 'socketio' }
]
const FULL = { rounds: 7, connections: 20, window: 16, durationMs: 2000, warmupMs: 2000 }
const QUICK = { rounds: 1, connections: 4, window: 4, durationMs: 300, warmupMs: 200 }
const TARGETS = { ws: 1.15, socketio: 0.60 }
const TIMEOUT_MS = 10 * 60 * 1000

// ---------------------------------------------------------------- load generator

async function runLoad ({ protocol, port, connections, window, durationMs }) {
  const text = 'hello from the lobby, this is a chat message'
  let calls = 0
  let wrong = 0
  const deadline = Date.now() + durationMs
  if (protocol === 'jsonrpc') {
    const WebSocket = require('ws')
    await Promise.all(Array.from({ length: connections }, () => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/calls`)
      const inFlight = new Map()
      let next = 0
      const send = () => {
        const n = next++
        inFlight.set(n, n)
        ws.send(`{"jsonrpc":"2.0","id":${n},"method":"echo","params":{"room":"lobby","n":${n},"text":"${text}"}}`)
      }
      ws.on('open', () => { for (let i = 0; i < window; i++) send() })
      ws.on('message', (data) => {
        const msg = JSON.parse(data)
        if (!inFlight.has(msg.id) || msg.result === undefined || msg.result.n !== msg.id || msg.result.text !== text) wrong++
        inFlight.delete(msg.id)
        calls++
        if (Date.now() < deadline) send()
        else if (inFlight.size === 0) ws.close()
      })
      ws.on('close', resolve)
      ws.on('error', reject)
    })))
  } else {
    const { io } = require('socket.io-client')
    await Promise.all(Array.from({ length: connections }, () => new Promise((resolve, reject) => {
      const socket = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], forceNew: true, reconnection: false })
      let next = 0
      let inFlight = 0
      const send = () => {
        const n = next++
        inFlight++
        socket.timeout(10_000).emitWithAck('echo', { room: 'lobby', n, text }).then((result) => {
          inFlight--
          if (result.n !== n || result.text !== text) wrong++
          calls++
          if (Date.now() < deadline) send()
          else if (inFlight === 0) {
            socket.close()
            resolve()
          }
        }, reject)
      }
      socket.on('connect', () => { for (let i = 0; i < window; i++) send() })
      socket.on('connect_error', reject)
    })))
  }
  return { calls, wrong }
}

function serveLoad () {
  process.on('disconnect', () => process.exit(0))
  process.on('message', (msg) => {
    if (msg.cmd === 'exit') process.exit(0)
    runLoad(msg).then((result) => process.send({ id: msg.id, ...result }), (err) => process.send({ id: msg.id, error: String(err && err.message) }))
  })
  process.send({ type: 'ready' })
}

// ---------------------------------------------------------------- children

function progress (line) {
  process.stderr.write(line + '\n')
}

let pin = false
const children = new Set()

function child (file, args, core) {
  const argv = [path.join(__dirname, file), ...args]
  const proc = pin
    ? spawn('taskset', ['-c', String(core), process.execPath, ...argv], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    : spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(proc)
  proc.on('exit', () => children.delete(proc))
  let nextId = 1
  const pending = new Map()
  let ready
  const started = new Promise((resolve, reject) => {
    ready = resolve
    proc.on('exit', (code) => reject(new Error(`${file} exited (code ${code})`)))
  })
  proc.on('message', (msg) => {
    if (msg.type === 'listening' || msg.type === 'ready') ready(msg)
    else if (pending.has(msg.id)) {
      pending.get(msg.id)(msg)
      pending.delete(msg.id)
    }
  })
  return {
    started,
    request (cmd, payload) {
      return new Promise((resolve, reject) => {
        const id = nextId++
        pending.set(id, (msg) => msg.error === undefined ? resolve(msg) : reject(new Error(msg.error)))
        proc.send({ ...payload, id, cmd })
      })
    },
    stop () {
      proc.send({ cmd: 'exit' })
      return new Promise((resolve) => proc.once('exit', resolve))
    }
  }
}

async function measure (load, instance, config, durationMs) {
  const before = await instance.child.request('stats', {})
  const { calls, wrong } = await load.request('run', {
    protocol: instance.server.protocol, port: instance.port, connections: config.connections, window: config.window, durationMs
  })
  const after = await instance.child.request('stats', {})
  if (wrong > 0) throw new Error(`${instance.server.label}: ${wrong} answers did not match their calls`)
  const cpu = (after.cpu.user - before.cpu.user) + (after.cpu.system - before.cpu.system)
  return { calls, cpuPerCall: cpu / calls, callsPerSecond: calls / (durationMs / 1000) }
}

async function main () {
  pin = os.availableParallelism() >= 2 && spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' }).status === 0
  if (!pin) progress('warning: cannot pin processes to cores (needs `taskset` and 2 cores); numbers will be noisier')
  const argv = process.argv.slice(2)
  const config = { ...(argv.includes('--quick') ? QUICK : FULL) }
  const rounds = argv.indexOf('--rounds')
  if (rounds !== -1) config.rounds = Number(argv[rounds + 1])
  const window = argv.indexOf('--window')
  if (window !== -1) config.window = Number(argv[window + 1])
  if (!Number.isInteger(config.rounds) || config.rounds < 1 || !Number.isInteger(config.window) || config.window < 1) {
    throw new Error('--rounds and --window take positive integers')
  }
  const killer = setTimeout(() => {
    progress('the benchmark took too long; stopping')
    for (const proc of children) proc.kill('SIGKILL')
    process.exit(2)
  }, TIMEOUT_MS)
  killer.unref()

  const load = child('calls.js', ['--load'], 1)
  await load.started
  const instances = []
  for (const server of SERVERS) {
    const c = child(server.file, [], 0)
    const { port } = await c.started.catch((err) => {
      throw new Error(`${server.label} did not start: ${err.message}${server.key === 'typed' ? ' (is the plugin built? run `npm run build`)' : ''}`)
    })
    instances.push({ server, child: c, port })
  }
  const samples = Object.fromEntries(SERVERS.map(s => [s.key, []]))
  try {
    for (const instance of instances) await measure(load, instance, config, config.warmupMs)
    for (let round = 0; round < config.rounds; round++) {
      for (const instance of rotate(instances, round)) {
        const sample = await measure(load, instance, config, config.durationMs)
        samples[instance.server.key].push(sample)
        progress(`  calls round ${round + 1}/${config.rounds} ${instance.server.label}: ${sample.cpuPerCall.toFixed(2)} µs CPU/call, ${Math.round(sample.callsPerSecond)} calls/s`)
      }
    }
  } finally {
    await Promise.all(instances.map(i => i.child.stop()))
    await load.stop()
  }

  const ratio = (other) => median(samples.typed.map((s, i) => s.cpuPerCall / samples[other][i].cpuPerCall))
  const rows = SERVERS.map((s) => ({
    server: s.label,
    cpuPerCall: median(samples[s.key].map(x => x.cpuPerCall)),
    callsPerSecond: median(samples[s.key].map(x => x.callsPerSecond))
  }))
  const ratios = { ws: ratio('ws'), socketio: ratio('socketio') }
  process.stdout.write(`\nCall round trips: ${config.connections} connections x ${config.window} in flight, ${config.durationMs} ms, ${config.rounds} rounds (median)\n`)
  process.stdout.write('server                    CPU/call (µs)   calls/s\n')
  for (const row of rows) process.stdout.write(`${row.server.padEnd(26)}${row.cpuPerCall.toFixed(2).padStart(13)}${String(Math.round(row.callsPerSecond)).padStart(10)}\n`)
  process.stdout.write(`typed / ws id echo:      ${ratios.ws.toFixed(2)}x (target <= ${TARGETS.ws.toFixed(2)}x) ${ratios.ws <= TARGETS.ws ? 'met' : 'MISSED'}\n`)
  process.stdout.write(`typed / socket.io:       ${ratios.socketio.toFixed(2)}x (target <= ${TARGETS.socketio.toFixed(2)}x) ${ratios.socketio <= TARGETS.socketio ? 'met' : 'MISSED'}\n`)
  fs.mkdirSync(path.dirname(RESULTS_FILE), { recursive: true })
  fs.writeFileSync(RESULTS_FILE, JSON.stringify({ date: new Date().toISOString(), node: process.version, config, samples, rows, ratios }, null, 2) + '\n')
}

if (process.argv.includes('--load')) {
  serveLoad()
} else {
  main().catch((err) => {
    progress(`calls benchmark failed: ${err.stack || err.message}`)
    for (const proc of children) proc.kill('SIGKILL')
    process.exit(1)
  })
}
