'use strict'

/*
 * Benchmark: fastify-typed-websocket against bare `ws` and @fastify/websocket.
 *
 *   npm run build && npm run bench          full run (about 6-8 minutes)
 *   node bench/run.js --quick               small counts, a few seconds (smoke test)
 *   node bench/run.js --only echo,latency   some scenarios (echo, handshake, memory, latency)
 *   node bench/run.js --servers ws,fastify-websocket   some servers (ws, fastify-websocket, typed)
 *   node bench/run.js --only memory --counts 5000,19000 --rounds 3
 *                                           idle memory at these connection counts
 *
 * Each server (bench/servers/*.js) runs in its own process pinned to core 0
 * (`taskset -c 0`), the load generator (bench/load.js, `ws` client) in another
 * one pinned to core 1. All three servers echo the same ~100-byte JSON chat
 * message and ping every 30 s. The typed server validates every inbound message
 * against a TypeBox schema and serializes the reply from the outbound schema;
 * the two peers only do JSON.parse + JSON.stringify. Every scenario warms each
 * server up once, then alternates the servers for several rounds (5 to 7; 1
 * with --quick), rotating their order every round.
 *
 * What the numbers mean (all CPU figures are the server's own
 * process.cpuUsage(), user + system, over the timed window):
 *   echo CPU/msg    microseconds of server CPU per echoed message, 50
 *                   connections each keeping 32 messages in flight for 2 s
 *   echo msg/s      echoed messages per second in that run (bounded by the
 *                   slower of the server and the load generator)
 *   handshake CPU   microseconds of server CPU per connection: upgrade with an
 *                   async preValidation token check, open, close handshake,
 *                   cleanup (2000 connections, 32 in flight)
 *   idle RSS, heap  bytes per open idle connection, keepalive on: memoryUsage()
 *                   after global.gc() with 5 000 and with 19 000 connections
 *                   open, minus the same before opening them, divided by the
 *                   count (each round uses a fresh server process; the load
 *                   generator spreads its connections over local addresses
 *                   127.0.0.1-8 so that ephemeral ports do not run out; the
 *                   file descriptor limit, `ulimit -n`, must exceed the count)
 *   latency p50/p99 round trip in microseconds at light load: 10 connections,
 *                   one message in flight each
 * Values are medians over the rounds. Ratios are to bare `ws` (ws = 1.00;
 * lower is better except msg/s and conn/s), taken per round (the servers of a
 * round run back to back) and then the median over rounds, which cancels slow
 * changes in machine load; "<= @fastify/websocket" is checked the same way.
 * The targets for this plugin: echo CPU/msg <= 1.10x ws, handshake CPU <= 1.30x
 * ws, idle RSS per connection <= 1.00x ws, idle heap per connection <= 1.35x
 * ws, and each <=
 * @fastify/websocket. On a shared or virtualized machine, run it when the
 * machine is otherwise idle: other load inflates and scatters the CPU figures.
 *
 * The load generator checks every echo (count, order and content per
 * connection), that the typed server rejects a schema-breaking message with
 * 1007, and that a handshake without the token is refused; any mismatch fails
 * the run with a non-zero exit code. Missing a target does not.
 *
 * Output: the table on stdout, progress on stderr, the raw samples and medians
 * in bench/results/latest.json, and (full runs of every scenario and server
 * only) the chart bench/chart.svg.
 */

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { median, rotate } = require('./stats')

const ROOT = path.join(__dirname, '..')
const RESULTS_FILE = path.join(__dirname, 'results', 'latest.json')
const CHART_FILE = path.join(__dirname, 'chart.svg')

const SERVERS = [
  { key: 'ws', label: 'ws', file: 'servers/ws.js', validates: false },
  { key: 'fastify-websocket', label: '@fastify/websocket', file: 'servers/fastify-websocket.js', validates: false },
  { key: 'typed', label: 'fastify-typed-websocket', file: 'servers/typed.js', validates: true }
]

const SCENARIOS = ['echo', 'handshake', 'memory', 'latency']

const FULL = {
  timeoutMs: 15 * 60 * 1000,
  echo: { rounds: 7, connections: 50, window: 32, durationMs: 2000, warmupMs: 3000 },
  handshake: { rounds: 7, count: 2000, concurrency: 32 },
  memory: { rounds: 3, counts: [5000, 19000], concurrency: 100, warmup: 300 },
  latency: { rounds: 5, connections: 10, perConnection: 300 }
}

const QUICK = {
  timeoutMs: 100 * 1000,
  echo: { rounds: 1, connections: 10, window: 8, durationMs: 300, warmupMs: 200 },
  handshake: { rounds: 1, count: 100, concurrency: 16 },
  memory: { rounds: 1, counts: [300], concurrency: 50, warmup: 20 },
  latency: { rounds: 1, connections: 5, perConnection: 40 }
}

const TARGETS = {
  echoCpu: 1.10,
  handshakeCpu: 1.30,
  rss: 1.00,
  heap: 1.35
}

// ---------------------------------------------------------------- arguments

function parseArgs (argv) {
  const args = { quick: false, only: SCENARIOS, servers: SERVERS.map(s => s.key), counts: null, rounds: null }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const value = () => {
      const eq = arg.indexOf('=')
      if (eq !== -1) return arg.slice(eq + 1)
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`)
      return argv[++i]
    }
    if (arg === '--quick') {
      args.quick = true
    } else if (arg === '--only' || arg.startsWith('--only=')) {
      args.only = value().split(',').map(s => s.trim()).filter(Boolean)
      for (const name of args.only) {
        if (!SCENARIOS.includes(name)) throw new Error(`unknown scenario "${name}" (known: ${SCENARIOS.join(', ')})`)
      }
    } else if (arg === '--servers' || arg.startsWith('--servers=')) {
      args.servers = value().split(',').map(s => s.trim()).filter(Boolean)
      for (const name of args.servers) {
        if (!SERVERS.some(s => s.key === name)) throw new Error(`unknown server "${name}" (known: ${SERVERS.map(s => s.key).join(', ')})`)
      }
    } else if (arg === '--counts' || arg.startsWith('--counts=')) {
      args.counts = value().split(',').map(Number)
      if (args.counts.some(n => !Number.isInteger(n) || n < 1)) throw new Error('--counts takes connection counts, e.g. 5000,19000')
    } else if (arg === '--rounds' || arg.startsWith('--rounds=')) {
      args.rounds = Number(value())
      if (!Number.isInteger(args.rounds) || args.rounds < 1) throw new Error('--rounds takes a positive integer')
    } else if (arg === '--help' || arg === '-h') {
      args.help = true
    } else {
      throw new Error(`unknown argument "${arg}"`)
    }
  }
  return args
}

// ---------------------------------------------------------------- children

let pinning = null

function canPin () {
  if (pinning === null) {
    const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
    const taskset = spawnSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' })
    pinning = cores >= 2 && taskset.status === 0
    if (!pinning) progress('warning: cannot pin processes to cores (needs `taskset` and 2 cores); numbers will be noisier')
  }
  return pinning
}

const children = new Set()

class Child {
  constructor (name, file, args, core) {
    this.name = name
    this.pending = new Map()
    this.waiting = new Map()
    this.nextId = 1
    this.exited = false
    const argv = ['--expose-gc', path.join(__dirname, file), ...args]
    this.proc = canPin()
      ? spawn('taskset', ['-c', String(core), process.execPath, ...argv], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      : spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.add(this)
    this.proc.on('message', (msg) => {
      if (msg && msg.id !== undefined && this.pending.has(msg.id)) {
        const { resolve, reject, timer } = this.pending.get(msg.id)
        this.pending.delete(msg.id)
        clearTimeout(timer)
        if (msg.ok === false) reject(new Error(`${this.name}: ${msg.error}`))
        else resolve(msg)
      } else if (msg && msg.type && this.waiting.has(msg.type)) {
        const { resolve, timer } = this.waiting.get(msg.type)
        this.waiting.delete(msg.type)
        clearTimeout(timer)
        resolve(msg)
      }
    })
    this.proc.on('error', (err) => this.fail(new Error(`${this.name}: ${err.message}`)))
    this.proc.on('exit', (code, signal) => {
      this.exited = true
      children.delete(this)
      this.fail(new Error(`${this.name} exited unexpectedly (code ${code}, signal ${signal})`))
    })
  }

  fail (err) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer)
      reject(err)
    }
    this.pending.clear()
    for (const { reject, timer } of this.waiting.values()) {
      clearTimeout(timer)
      reject(err)
    }
    this.waiting.clear()
  }

  waitFor (type, timeoutMs) {
    return new Promise((resolve, reject) => {
      if (this.exited) return reject(new Error(`${this.name} is not running`))
      const timer = setTimeout(() => {
        this.waiting.delete(type)
        reject(new Error(`${this.name}: no "${type}" within ${timeoutMs} ms`))
      }, timeoutMs)
      this.waiting.set(type, { resolve, reject, timer })
    })
  }

  request (cmd, payload = {}, timeoutMs = 60000) {
    return new Promise((resolve, reject) => {
      if (this.exited) return reject(new Error(`${this.name} is not running`))
      const id = this.nextId++
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`${this.name}: "${cmd}" got no answer within ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, { resolve, reject, timer })
      this.proc.send({ ...payload, id, cmd })
    })
  }

  stop () {
    if (this.exited) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 3000)
      this.proc.removeAllListeners('exit')
      this.proc.once('exit', () => {
        clearTimeout(timer)
        this.exited = true
        children.delete(this)
        this.fail(new Error(`${this.name} was stopped`))
        resolve()
      })
      try {
        this.proc.send({ cmd: 'exit' })
      } catch {
        this.proc.kill('SIGKILL')
      }
    })
  }
}

function killAll () {
  for (const child of children) {
    if (!child.exited) child.proc.kill('SIGKILL')
  }
}

async function startServer (server, args = []) {
  const child = new Child(server.label, server.file, args, 0)
  try {
    const { port } = await child.waitFor('listening', 20000)
    return { server, child, port }
  } catch (err) {
    await child.stop()
    throw new Error(`${server.label} server did not start: ${err.message}` +
      (server.key === 'typed' ? ' (is the plugin built? run `npm run build`)' : ''))
  }
}

async function startLoad () {
  const child = new Child('load generator', 'load.js', [], 1)
  await child.waitFor('ready', 20000)
  return child
}

// ---------------------------------------------------------------- helpers

function progress (line) {
  process.stderr.write(line + '\n')
}

function sleep (ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

function cpuMicros (stats) {
  return stats.cpu.user + stats.cpu.system
}

function cpuSplit (before, after) {
  return {
    cpuUserMicros: after.cpu.user - before.cpu.user,
    cpuSystemMicros: after.cpu.system - before.cpu.system
  }
}

async function stats (instance, gc = false) {
  return instance.child.request('stats', { gc })
}

// Polls the server until it reports `count` open WebSocket connections.
async function waitForClients (instance, count, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs
  let last
  while (Date.now() < deadline) {
    last = await stats(instance)
    if (last.clients === count) return last
    await sleep(20)
  }
  throw new Error(`${instance.server.label}: expected ${count} open connections, the server reports ${last && last.clients}`)
}

// Runs `measure(instance)` once per server as a warm-up, then `rounds` times
// per server with the order rotated every round; returns samples per server.
async function alternate (instances, rounds, measure, label, format) {
  const samples = Object.fromEntries(instances.map(i => [i.server.key, []]))
  for (const instance of instances) {
    await measure(instance, true)
  }
  for (let round = 0; round < rounds; round++) {
    for (const instance of rotate(instances, round)) {
      const sample = await measure(instance, false)
      samples[instance.server.key].push(sample)
      progress(`  ${label} round ${round + 1}/${rounds} ${instance.server.label}: ${format(sample)}`)
    }
  }
  return samples
}

async function withServers (servers, args, fn) {
  const instances = []
  try {
    for (const server of servers) instances.push(await startServer(server, args))
    return await fn(instances)
  } finally {
    await Promise.all(instances.map(i => i.child.stop()))
  }
}

// ---------------------------------------------------------------- checks

async function checkValidation (load, instance, auth) {
  const result = await load.request('probe', { port: instance.port, auth })
  if (instance.server.validates) {
    if (result.outcome !== 'closed' || result.code !== 1007) {
      throw new Error(`${instance.server.label}: a message breaking the inbound schema must close the connection with 1007, got ${JSON.stringify(result)}`)
    }
  } else if (result.outcome !== 'echoed') {
    throw new Error(`${instance.server.label}: expected the message to be echoed, got ${JSON.stringify(result)}`)
  }
}

async function checkAuth (load, instance) {
  const { status } = await load.request('refused', { port: instance.port })
  if (status !== 401) throw new Error(`${instance.server.label}: a handshake without the token must be refused with 401, got ${status}`)
}

// ---------------------------------------------------------------- scenarios

async function echoScenario (servers, load, config) {
  const cfg = config.echo
  return withServers(servers, [], async (instances) => {
    for (const instance of instances) await checkValidation(load, instance, false)
    const measure = async (instance, warmup) => {
      await load.request('open', { port: instance.port, count: cfg.connections, concurrency: cfg.connections })
      await waitForClients(instance, cfg.connections)
      const before = await stats(instance, true)
      const run = await load.request('echo', {
        window: cfg.window,
        durationMs: warmup ? cfg.warmupMs : cfg.durationMs,
        perConnection: 0
      }, cfg.durationMs + 60000)
      const after = await stats(instance)
      await load.request('close', { graceful: true })
      await waitForClients(instance, 0)
      return {
        messages: run.received,
        cpuPerMsg: (cpuMicros(after) - cpuMicros(before)) / run.received,
        ...cpuSplit(before, after),
        perSecond: run.perSecond
      }
    }
    const samples = await alternate(instances, cfg.rounds, measure, 'echo',
      s => `${s.cpuPerMsg.toFixed(2)} us/msg, ${Math.round(s.perSecond)} msg/s`)
    return summarize(samples, ['cpuPerMsg', 'perSecond'])
  })
}

async function handshakeScenario (servers, load, config) {
  const cfg = config.handshake
  return withServers(servers, ['--auth'], async (instances) => {
    for (const instance of instances) {
      await checkAuth(load, instance)
      await checkValidation(load, instance, true)
      await waitForClients(instance, 0)
    }
    const measure = async (instance) => {
      const before = await stats(instance, true)
      const run = await load.request('handshakes', {
        port: instance.port, auth: true, count: cfg.count, concurrency: cfg.concurrency
      }, 180000)
      const after = await waitForClients(instance, 0)
      return {
        connections: run.count,
        cpuPerConnection: (cpuMicros(after) - cpuMicros(before)) / run.count,
        ...cpuSplit(before, after),
        perSecond: run.perSecond
      }
    }
    const samples = await alternate(instances, cfg.rounds, measure, 'handshake',
      s => `${s.cpuPerConnection.toFixed(1)} us/conn, ${Math.round(s.perSecond)} conn/s`)
    return summarize(samples, ['cpuPerConnection', 'perSecond'])
  })
}

async function memoryScenario (servers, load, config) {
  const results = {}
  for (const count of config.memory.counts) {
    progress(`  ${count.toLocaleString('en-US')} connections:`)
    results[count] = await memoryAt(servers, load, config.memory, count)
  }
  return results
}

async function memoryAt (servers, load, cfg, count) {
  // A fresh server process per round: freed memory is not given back to the
  // OS at once, so a reused process would make later rounds look cheaper.
  const measure = (instanceLike) => withServers([instanceLike.server], [], async ([instance]) => {
    await load.request('open', { port: instance.port, count: cfg.warmup, concurrency: cfg.concurrency })
    await waitForClients(instance, cfg.warmup)
    await load.request('close', { graceful: true })
    await waitForClients(instance, 0)
    await sleep(100)
    const before = await stats(instance, true)
    await load.request('open', { port: instance.port, count, concurrency: cfg.concurrency }, 300000)
    await waitForClients(instance, count, 60000)
    await sleep(200)
    const after = await stats(instance, true)
    if (after.clients !== count) {
      throw new Error(`${instance.server.label}: ${after.clients} connections open, expected ${count}`)
    }
    await load.request('close', { graceful: false }, 60000)
    return {
      connections: count,
      rssPerConnection: (after.mem.rss - before.mem.rss) / count,
      heapPerConnection: (after.mem.heapUsed - before.mem.heapUsed) / count,
      externalPerConnection: (after.mem.external - before.mem.external) / count
    }
  })
  const placeholders = servers.map(server => ({ server }))
  const samples = Object.fromEntries(servers.map(s => [s.key, []]))
  for (let round = 0; round < cfg.rounds; round++) {
    for (const instanceLike of rotate(placeholders, round)) {
      const sample = await measure(instanceLike)
      samples[instanceLike.server.key].push(sample)
      progress(`  memory ${count} round ${round + 1}/${cfg.rounds} ${instanceLike.server.label}: ` +
        `${sample.rssPerConnection.toFixed(0)} B RSS/conn, ${sample.heapPerConnection.toFixed(0)} B heap/conn`)
    }
  }
  return summarize(samples, ['rssPerConnection', 'heapPerConnection', 'externalPerConnection'])
}

async function latencyScenario (servers, load, config) {
  const cfg = config.latency
  return withServers(servers, [], async (instances) => {
    const measure = async (instance) => {
      await load.request('open', { port: instance.port, count: cfg.connections, concurrency: cfg.connections })
      await waitForClients(instance, cfg.connections)
      await stats(instance, true)
      const run = await load.request('echo', {
        window: 1, durationMs: 0, perConnection: cfg.perConnection, latency: true
      }, 120000)
      await load.request('close', { graceful: true })
      await waitForClients(instance, 0)
      if (run.received !== cfg.connections * cfg.perConnection) {
        throw new Error(`${instance.server.label}: ${run.received} echoes, expected ${cfg.connections * cfg.perConnection}`)
      }
      return { messages: run.received, p50: run.latency.p50, p99: run.latency.p99 }
    }
    const samples = await alternate(instances, cfg.rounds, measure, 'latency',
      s => `p50 ${s.p50.toFixed(0)} us, p99 ${s.p99.toFixed(0)} us`)
    return summarize(samples, ['p50', 'p99'])
  })
}

function summarize (samples, fields) {
  const result = {}
  for (const [key, list] of Object.entries(samples)) {
    result[key] = { median: {}, samples: list }
    for (const field of fields) result[key].median[field] = median(list.map(s => s[field]))
  }
  return result
}

// ---------------------------------------------------------------- report

// One row per metric. `target` (if any) is the ratio to ws this plugin must
// stay under; every targeted metric must also be <= @fastify/websocket.
const ROWS = [
  { scenario: 'echo', field: 'cpuPerMsg', label: 'echo CPU/msg', unit: 'us', digits: 2, target: TARGETS.echoCpu },
  { scenario: 'echo', field: 'perSecond', label: 'echo msg/s', unit: '', digits: 0, higherIsBetter: true },
  { scenario: 'handshake', field: 'cpuPerConnection', label: 'handshake CPU/conn', unit: 'us', digits: 1, target: TARGETS.handshakeCpu },
  { scenario: 'handshake', field: 'perSecond', label: 'handshake conn/s', unit: '', digits: 0, higherIsBetter: true },
  { scenario: 'latency', field: 'p50', label: 'latency p50', unit: 'us', digits: 0 },
  { scenario: 'latency', field: 'p99', label: 'latency p99', unit: 'us', digits: 0 }
]

// Median over rounds of `key`'s sample divided by `base`'s sample of the same
// round. The servers of one round are measured back to back, so pairing them
// cancels slow changes in machine load that independent medians would keep.
function pairedRatio (scenario, key, base, field) {
  if (!scenario[key] || !scenario[base]) return NaN
  const a = scenario[key].samples
  const b = scenario[base].samples
  const ratios = []
  for (let i = 0; i < Math.min(a.length, b.length); i++) ratios.push(a[i][field] / b[i][field])
  return median(ratios)
}

// The memory rows, one pair per connection count measured.
function memoryRows (results) {
  const rows = []
  for (const count of Object.keys(results.memory || {})) {
    const n = Number(count).toLocaleString('en-US')
    rows.push({ scenario: 'memory', count, field: 'rssPerConnection', label: `idle RSS/conn, ${n} open`, unit: 'B', digits: 0, target: TARGETS.rss })
    rows.push({ scenario: 'memory', count, field: 'heapPerConnection', label: `idle heap/conn, ${n} open`, unit: 'B', digits: 0, target: TARGETS.heap })
  }
  return rows
}

function evaluate (results, servers) {
  const rows = []
  const all = [...ROWS.slice(0, 4), ...memoryRows(results), ...ROWS.slice(4)]
  for (const row of all) {
    const scenario = row.count === undefined ? results[row.scenario] : results[row.scenario] && results[row.scenario][row.count]
    if (!scenario) continue
    const values = {}
    for (const server of servers) values[server.key] = scenario[server.key] ? scenario[server.key].median[row.field] : NaN
    const ratios = {}
    for (const server of servers) ratios[server.key] = pairedRatio(scenario, server.key, 'ws', row.field)
    let check = null
    if (row.target && Number.isFinite(values.typed)) {
      const misses = []
      const versusPeer = pairedRatio(scenario, 'typed', 'fastify-websocket', row.field)
      if (!Number.isFinite(ratios.typed)) misses.push('no ws figure')
      else if (ratios.typed > row.target) misses.push(`${ratios.typed.toFixed(2)}x ws > ${row.target.toFixed(2)}x`)
      if (versusPeer > 1) misses.push(`${versusPeer.toFixed(3)}x @fastify/websocket`)
      check = { pass: misses.length === 0, misses, versusFastifyWebsocket: versusPeer }
    }
    rows.push({ ...row, values, ratios, check })
  }
  return rows
}

function formatValue (row, value) {
  if (!Number.isFinite(value)) return 'n/a'
  const scaled = value * (row.scale || 1)
  const text = row.digits === 0 ? Math.round(scaled).toLocaleString('en-US') : scaled.toFixed(row.digits)
  return row.unit ? `${text} ${row.unit}` : text
}

function printTable (rows, servers) {
  const header = ['metric', ...servers.map(s => s.label), 'target (typed)', 'check']
  const lines = [header]
  for (const row of rows) {
    const cells = [row.label]
    for (const server of servers) {
      const ratio = row.ratios[server.key]
      cells.push(`${formatValue(row, row.values[server.key])} (${Number.isFinite(ratio) ? ratio.toFixed(2) : 'n/a'})`)
    }
    cells.push(row.target ? `<= ${row.target.toFixed(2)}x ws, <= @fastify/websocket` : '')
    cells.push(row.check ? (row.check.pass ? 'PASS' : `MISS: ${row.check.misses.join('; ')}`) : '')
    lines.push(cells)
  }
  const widths = header.map((_, i) => Math.max(...lines.map(l => l[i].length)))
  const render = (cells) => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : (i <= servers.length ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd()
  const out = [render(lines[0]), widths.map(w => '-'.repeat(w)).join('  ')]
  for (const cells of lines.slice(1)) out.push(render(cells))
  process.stdout.write('\n' + out.join('\n') + '\n')
  process.stdout.write('value: median over rounds; (ratio): median of the per-round ratios to ws; lower is better except msg/s and conn/s\n')
}

function versions () {
  const read = (file) => {
    try {
      return JSON.parse(fs.readFileSync(file, 'utf8')).version
    } catch {
      return null
    }
  }
  const dep = (name) => read(path.join(ROOT, 'node_modules', name, 'package.json'))
  return {
    'fastify-typed-websocket': read(path.join(ROOT, 'package.json')),
    ws: dep('ws'),
    fastify: dep('fastify'),
    '@fastify/websocket': dep('@fastify/websocket')
  }
}

function escapeXml (text) {
  return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

// Grouped bars: one group per metric, one bar per server, height = ratio to ws.
function chartSvg (rows, servers, meta) {
  const colors = { ws: '#8c8c8c', 'fastify-websocket': '#4a78c2', typed: '#e0782f' }
  const groups = rows.filter(r => Object.values(r.ratios).every(Number.isFinite))
  const barWidth = 26
  const gap = 6
  const groupWidth = servers.length * (barWidth + gap) + 34
  const left = 56
  const top = 56
  const plotHeight = 260
  const width = left + groups.length * groupWidth + 20
  const height = top + plotHeight + 92
  const maxRatio = Math.max(1.5, ...groups.flatMap(r => Object.values(r.ratios)), ...groups.map(r => r.target || 0))
  const yMax = Math.ceil(maxRatio * 4) / 4
  const y = v => top + plotHeight - (v / yMax) * plotHeight
  const parts = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`)
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  parts.push(`<text x="${left}" y="22" font-size="14" font-weight="bold">Ratio to bare ws (ws = 1.00, lower is better except throughput)</text>`)
  parts.push(`<text x="${left}" y="40" fill="#555">${escapeXml(meta)}</text>`)
  for (let v = 0; v <= yMax + 1e-9; v += 0.25) {
    const yy = y(v).toFixed(1)
    parts.push(`<line x1="${left}" y1="${yy}" x2="${width - 20}" y2="${yy}" stroke="${Math.abs(v - 1) < 1e-9 ? '#333' : '#e4e4e4'}" stroke-width="1"/>`)
    parts.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" fill="#555">${v.toFixed(2)}</text>`)
  }
  groups.forEach((row, g) => {
    const x0 = left + g * groupWidth + 17
    if (row.target) {
      const yy = y(row.target).toFixed(1)
      const x1 = x0 - 6
      const x2 = x0 + servers.length * (barWidth + gap)
      parts.push(`<line x1="${x1}" y1="${yy}" x2="${x2}" y2="${yy}" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="4 3"/>`)
    }
    servers.forEach((server, s) => {
      const ratio = row.ratios[server.key]
      const x = x0 + s * (barWidth + gap)
      const yy = y(ratio)
      parts.push(`<rect x="${x}" y="${yy.toFixed(1)}" width="${barWidth}" height="${(top + plotHeight - yy).toFixed(1)}" fill="${colors[server.key]}"><title>${escapeXml(`${server.label}: ${formatValue(row, row.values[server.key])} (${ratio.toFixed(2)}x ws)`)}</title></rect>`)
      parts.push(`<text x="${x + barWidth / 2}" y="${(yy - 4).toFixed(1)}" text-anchor="middle" font-size="9" stroke="#ffffff" stroke-width="3" paint-order="stroke">${ratio.toFixed(2)}</text>`)
    })
    const cx = x0 + (servers.length * (barWidth + gap) - gap) / 2
    parts.push(`<text x="${cx}" y="${top + plotHeight + 16}" text-anchor="middle">${escapeXml(row.label)}</text>`)
  })
  let lx = left
  const ly = top + plotHeight + 48
  for (const server of servers) {
    parts.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${colors[server.key]}"/>`)
    parts.push(`<text x="${lx + 16}" y="${ly}">${escapeXml(server.label)}</text>`)
    lx += 36 + server.label.length * 6
  }
  parts.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 24}" y2="${ly - 4}" stroke="#c0392b" stroke-width="1.5" stroke-dasharray="4 3"/>`)
  parts.push(`<text x="${lx + 30}" y="${ly}">target for fastify-typed-websocket</text>`)
  parts.push(`<text x="${left}" y="${ly + 26}" fill="#555">Median of per-round ratios; each server pinned to one core, the load generator to the other. Source: bench/run.js</text>`)
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

// ---------------------------------------------------------------- main

async function main () {
  const args = parseArgs(process.argv.slice(2))
  if (args.help) {
    process.stdout.write('usage: node bench/run.js [--quick] [--only echo,handshake,memory,latency] [--servers ws,fastify-websocket,typed] [--counts 5000,19000] [--rounds N]\n')
    return 0
  }
  const config = structuredClone(args.quick ? QUICK : FULL)
  if (args.counts !== null) config.memory.counts = args.counts
  if (args.rounds !== null) {
    for (const name of SCENARIOS) config[name].rounds = args.rounds
  }
  const servers = SERVERS.filter(s => args.servers.includes(s.key))
  const started = Date.now()

  const deadline = setTimeout(() => {
    progress(`benchmark did not finish within ${config.timeoutMs / 1000} s, giving up`)
    killAll()
    process.exit(1)
  }, config.timeoutMs)
  deadline.unref()

  progress(`benchmark${args.quick ? ' (quick)' : ''}: ${args.only.join(', ')} on ${servers.map(s => s.label).join(', ')}; ` +
    `servers on core 0, load generator on core 1${canPin() ? '' : ' (unpinned)'}`)

  const load = await startLoad()
  const results = {}
  try {
    const runners = { echo: echoScenario, handshake: handshakeScenario, memory: memoryScenario, latency: latencyScenario }
    for (const name of SCENARIOS) {
      if (!args.only.includes(name)) continue
      const scenarioStart = Date.now()
      progress(`${name}:`)
      results[name] = await runners[name](servers, load, config)
      progress(`  ${name} took ${((Date.now() - scenarioStart) / 1000).toFixed(1)} s`)
    }
  } finally {
    await load.stop()
  }

  const rows = evaluate(results, servers)
  printTable(rows, servers)
  if (args.quick) process.stdout.write('quick run: the counts are too small for the target checks to mean anything\n')

  const seconds = (Date.now() - started) / 1000
  const cpu = os.cpus()[0]
  const v = versions()
  const meta = `${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpu ? cpu.model.trim() : os.arch()}; ` +
    `fastify-typed-websocket ${v['fastify-typed-websocket']}, ws ${v.ws}, fastify ${v.fastify}, @fastify/websocket ${v['@fastify/websocket']}`
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    versions: v,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpu: cpu ? cpu.model.trim() : null,
    pinned: canPin(),
    quick: args.quick,
    seconds,
    config,
    targets: TARGETS,
    servers: servers.map(s => ({ key: s.key, label: s.label })),
    results,
    summary: rows.map(r => ({ metric: r.label, unit: r.unit, values: r.values, ratios: r.ratios, target: r.target || null, check: r.check }))
  }
  fs.mkdirSync(path.dirname(RESULTS_FILE), { recursive: true })
  fs.writeFileSync(RESULTS_FILE, JSON.stringify(report, null, 2) + '\n')
  progress(`\nresults: ${path.relative(process.cwd(), RESULTS_FILE)}`)
  const complete = !args.quick && SCENARIOS.every(s => args.only.includes(s)) && servers.length === SERVERS.length
  if (complete) {
    fs.writeFileSync(CHART_FILE, chartSvg(rows, servers, meta))
    progress(`chart: ${path.relative(process.cwd(), CHART_FILE)}`)
  }
  progress(`done in ${seconds.toFixed(1)} s`)
  return 0
}

process.on('SIGINT', () => {
  killAll()
  process.exit(130)
})

main().then(
  (code) => {
    process.exitCode = code
  },
  (err) => {
    progress(`\nbenchmark FAILED: ${err && err.stack ? err.stack : err}`)
    killAll()
    process.exitCode = 1
  }
)
