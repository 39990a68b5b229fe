'use strict'

/*
 * Fan-out benchmark: one message to many sockets, in one process.
 *
 *   npm run build && node bench/fanout.js      full run (several minutes)
 *   node bench/fanout.js --quick               small counts, a few seconds (smoke test)
 *   node bench/fanout.js --only local|slow     one part
 *   node bench/fanout.js --only local --systems typed,ws-loop --subscribers 1000 --cases a --rounds 1 --profile DIR
 *                                              some peers, counts and cases; --profile writes each server's
 *                                              CPU profile (node --cpu-prof) into DIR
 *
 * Servers (bench/servers/fanout.js) run one at a time, pinned to core 0
 * (`taskset -c 0`); this process is the load, pinned to core 1, with one `ws`
 * client per subscriber. Peers:
 *   ws loop      bare `ws`, JSON.stringify + send() for every socket (= 1.00)
 *   ws once      bare `ws`, JSON.stringify once, send() the string to every socket
 *   socket.io    socket.io 4, every socket in one room, io.to(room).emit()
 *   typed        this plugin, every socket subscribed to one topic key, publish()
 *
 * Local part: 1,000 and 10,000 subscribers, a 100 B JSON message,
 *   (a) one publish at a time: the next one after every subscriber has the last;
 *   (b) bursts of 100 publishes in one tick.
 * Metric: server CPU (process.cpuUsage(), user + system) per delivered message,
 * over the timed publishes. Every round runs every server back to back, in an
 * order rotated each round; ratios are the medians of the per-round ratios.
 * Targets for this plugin: <= 0.80x the ws loop in (a), <= 0.15x in (b), and
 * <= 0.5x socket.io in both.
 *
 * Slow part: 1,000 subscribers of which 10% never read, 4 KB messages, this
 * plugin (cut-off `maxBufferedAmount`) against per-client ws send(). Reported:
 * the largest growth of the server's memory (heap + external, after gc) seen
 * while the slow sockets' queues fill, and the bytes queued for them at that
 * point. Target: the plugin's growth <= its cut-off limit (the frames, shared)
 * plus about 100 B per queued message, never a copy per subscriber.
 *
 * Every subscriber checks every message it receives, byte for byte, in order,
 * and that it got all of them; any mismatch fails the run (non-zero exit).
 * Missing a target does not.
 */

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const WebSocket = require('ws')
const { message } = require('./servers/fanout-message')
const { median, rotate } = require('./stats')

const RESULTS_FILE = path.join(__dirname, 'results', 'fanout.json')

const SYSTEMS = [
  { key: 'ws-loop', label: 'ws loop' },
  { key: 'ws-once', label: 'ws once' },
  { key: 'socketio', label: 'socket.io' },
  { key: 'typed', label: 'typed' }
]

const FULL = {
  timeoutMs: 30 * 60 * 1000,
  rounds: 3,
  local: [
    { subscribers: 1000, single: 200, bursts: 5 },
    { subscribers: 10000, single: 30, bursts: 1 }
  ],
  slow: { subscribers: 1000, slow: 100, size: 4096, messages: 2400, batch: 20, maxBuffered: 2 * 1024 * 1024, checkpoints: 12 }
}

const QUICK = {
  timeoutMs: 110 * 1000,
  rounds: 1,
  local: [
    { subscribers: 50, single: 20, bursts: 2 },
    { subscribers: 200, single: 10, bursts: 1 }
  ],
  slow: { subscribers: 40, slow: 4, size: 4096, messages: 1600, batch: 25, maxBuffered: 256 * 1024, checkpoints: 4 }
}

const ALLOWANCE = 1024 * 1024
const BURST = 100
const SIZE = 100
const TARGETS = { single: 0.80, burst: 0.15, socketio: 0.5 }

const quick = process.argv.includes('--quick')
function option (name) {
  const at = process.argv.indexOf(name)
  return at === -1 ? undefined : process.argv[at + 1]
}
const only = (option('--only') ?? 'local,slow').split(',')
const config = quick ? QUICK : FULL
if (option('--rounds') !== undefined) config.rounds = Number(option('--rounds'))
if (option('--subscribers') !== undefined) {
  const counts = option('--subscribers').split(',').map(Number)
  config.local = config.local.filter(c => counts.includes(c.subscribers))
}
const systems = option('--systems')
if (systems !== undefined) SYSTEMS.splice(0, SYSTEMS.length, ...SYSTEMS.filter(s => systems.split(',').includes(s.key)))
const profile = option('--profile')
const cases = (option('--cases') ?? 'a,b').split(',')
const pin = spawnSync('taskset', ['-c', '0', 'true']).status === 0
const children = new Set()

function progress (line) {
  process.stderr.write(line + '\n')
}

// ---------------------------------------------------------------- server

class Server {
  constructor (system, args) {
    this.system = system
    this.pending = new Map()
    this.nextId = 1
    const argv = ['--expose-gc', ...(profile === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', path.resolve(profile)]), path.join(__dirname, 'servers', 'fanout.js'), '--system', system, ...args]
    this.proc = pin
      ? spawn('taskset', ['-c', '0', process.execPath, ...argv], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
      : spawn(process.execPath, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.add(this.proc)
    this.exited = new Promise(resolve => this.proc.once('exit', (code, signal) => {
      children.delete(this.proc)
      for (const { reject } of this.pending.values()) reject(new Error(`${system} server exited (code ${code}, signal ${signal})`))
      this.pending.clear()
      resolve()
    }))
    this.listening = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${system} server did not start (is the plugin built? run npm run build)`)), 20000)
      this.proc.on('message', (msg) => {
        if (msg.type === 'listening') {
          clearTimeout(timer)
          resolve(msg.port)
        } else if (this.pending.has(msg.id)) {
          const { resolve } = this.pending.get(msg.id)
          this.pending.delete(msg.id)
          resolve(msg)
        }
      })
    })
  }

  stats (options = {}) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++
      this.pending.set(id, { resolve, reject })
      this.proc.send({ ...options, id, cmd: 'stats' })
    })
  }

  publish (from, count, size) {
    this.proc.send({ cmd: 'publish', from, count, size })
  }

  async stop () {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 3000)
    this.proc.send({ cmd: 'exit' })
    await this.exited
    clearTimeout(timer)
  }
}

// ---------------------------------------------------------------- subscribers

/**
 * The subscribers of one server. Each one checks that it receives exactly the
 * messages published, in order, byte for byte: `expect(from, to)` arms them and
 * resolves when every reading subscriber has message `to`.
 */
class Subscribers {
  constructor (system, size) {
    this.system = system
    this.size = size
    this.clients = []
    this.failures = []
    this.cache = new Map()
    this.to = -1
    this.remaining = 0
    this.resolve = null
  }

  expected (seq) {
    let buf = this.cache.get(seq)
    if (buf === undefined) {
      const json = JSON.stringify(message(seq, this.size))
      buf = Buffer.from(this.system === 'socketio' ? `42["said",${json}]` : json)
      this.cache.set(seq, buf)
    }
    return buf
  }

  connect (port, count, concurrency = 200) {
    const url = this.system === 'socketio'
      ? `ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`
      : `ws://127.0.0.1:${port}/`
    let started = 0
    const one = () => new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false })
      const client = { ws, next: 0, reading: true, index: this.clients.length }
      this.clients.push(client)
      ws.on('error', reject)
      ws.on('close', () => { client.closed = true })
      if (this.system === 'socketio') {
        // engine.io open (0...), then the namespace connect (40...): in the room from then on.
        const handshake = (data) => {
          const text = String(data)
          if (text[0] === '0') ws.send('40')
          else if (text.startsWith('40')) {
            ws.off('message', handshake)
            ws.on('message', (d) => this.receive(client, d))
            resolve()
          }
        }
        ws.on('message', handshake)
      } else {
        ws.on('message', (d) => this.receive(client, d))
        ws.once('open', resolve)
      }
    })
    const worker = async () => {
      while (started < count) {
        started++
        await one()
      }
    }
    return Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  }

  receive (client, data) {
    if (this.system === 'socketio' && data.length === 1) {
      if (data[0] === 0x32) client.ws.send('3') // engine.io ping
      return
    }
    const seq = client.next
    if (seq > this.to || !data.equals(this.expected(seq))) {
      if (this.failures.length < 5) this.failures.push(`subscriber ${client.index}: got ${String(data).slice(0, 80)}…, wanted seq ${seq}${seq > this.to ? ' (not published)' : ''}`)
      client.next = Infinity
      return
    }
    client.next = seq + 1
    if (seq === this.to && --this.remaining === 0) this.resolve()
  }

  /** Resolves when every reading subscriber has received up to `to`; rejects after `timeoutMs`. */
  expect (to, timeoutMs) {
    this.to = to
    for (const seq of this.cache.keys()) if (seq < to - 2 * BURST) this.cache.delete(seq)
    const readers = this.clients.filter(c => c.reading)
    this.remaining = readers.filter(c => c.next <= to).length
    return new Promise((resolve, reject) => {
      if (this.failures.length > 0) return reject(new Error(`${this.system}: wrong deliveries, first: ${this.failures[0]}`))
      if (this.remaining === 0) return resolve()
      const timer = setTimeout(() => {
        const behind = readers.filter(c => c.next <= to)
        reject(new Error(`${this.system}: ${behind.length} subscribers did not get message ${to} within ${timeoutMs} ms` +
          (this.failures.length > 0 ? `; first wrong delivery: ${this.failures[0]}` : '') +
          (behind.some(c => c.closed) ? '; some were closed' : '')))
      }, timeoutMs)
      this.resolve = () => {
        clearTimeout(timer)
        if (this.failures.length > 0) reject(new Error(`${this.system}: wrong deliveries, first: ${this.failures[0]}`))
        else resolve()
      }
    })
  }

  check () {
    if (this.failures.length > 0) throw new Error(`${this.system}: wrong deliveries, first: ${this.failures[0]}`)
    for (const c of this.clients) {
      if (c.reading && c.next !== this.to + 1) throw new Error(`${this.system}: subscriber ${c.index} has ${c.next} messages, wanted ${this.to + 1}`)
    }
  }

  close () {
    for (const c of this.clients) c.ws.terminate()
  }
}

async function waitForSubscribers (server, count, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs
  let last
  while (Date.now() < deadline) {
    last = await server.stats()
    if (last.clients === count) return last
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  throw new Error(`${server.system}: ${last && last.clients} subscribers, wanted ${count}`)
}

const cpu = (stats) => stats.cpu.user + stats.cpu.system

// ---------------------------------------------------------------- local

/** One server, one subscriber count: warm-up, then (a) and (b), CPU per delivery of each. */
async function localRun (system, cfg) {
  const server = new Server(system, [])
  const subs = new Subscribers(system, SIZE)
  try {
    const port = await server.listening
    await subs.connect(port, cfg.subscribers)
    await waitForSubscribers(server, cfg.subscribers)
    let seq = 0
    // Generous: the load generator, on one core, reads every message of every subscriber.
    const timeout = Math.max(60000, cfg.subscribers * BURST * 0.1)
    const single = async (count) => {
      for (let i = 0; i < count; i++) {
        server.publish(seq, 1, SIZE)
        await subs.expect(seq, timeout)
        seq++
      }
    }
    const bursts = async (count) => {
      for (let i = 0; i < count; i++) {
        server.publish(seq, BURST, SIZE)
        await subs.expect(seq + BURST - 1, timeout)
        seq += BURST
      }
    }
    // Warm-up: the JIT, and every buffer and queue at its working size.
    await single(Math.ceil(cfg.single / 5))
    if (cases.includes('b')) await bursts(1)
    let singleCpu = NaN
    let burstCpu = NaN
    if (cases.includes('a')) {
      await server.stats({ gc: true })
      const a0 = await server.stats()
      await single(cfg.single)
      singleCpu = (cpu(await server.stats()) - cpu(a0)) / (cfg.single * cfg.subscribers)
    }
    if (cases.includes('b')) {
      await server.stats({ gc: true })
      const b0 = await server.stats()
      await bursts(cfg.bursts)
      burstCpu = (cpu(await server.stats()) - cpu(b0)) / (cfg.bursts * BURST * cfg.subscribers)
    }
    subs.check()
    return {
      single: singleCpu,
      burst: burstCpu,
      delivered: seq * cfg.subscribers
    }
  } finally {
    subs.close()
    await server.stop()
  }
}

async function local () {
  const results = []
  for (const cfg of config.local) {
    const samples = Object.fromEntries(SYSTEMS.map(s => [s.key, []]))
    for (let round = 0; round < config.rounds; round++) {
      for (const system of rotate(SYSTEMS, round)) {
        const sample = await localRun(system.key, cfg)
        samples[system.key].push(sample)
        progress(`  ${cfg.subscribers} subscribers, round ${round + 1}/${config.rounds}, ${system.label}: ` +
          [cases.includes('a') ? `(a) ${sample.single.toFixed(2)} us` : '', cases.includes('b') ? `(b) ${sample.burst.toFixed(2)} us` : '']
            .filter(Boolean).join(', ') + ` per delivered message (${sample.delivered.toLocaleString('en-US')} checked)`)
      }
    }
    results.push({ subscribers: cfg.subscribers, config: cfg, samples })
  }
  return results
}

function paired (samples, key, base, field) {
  const a = samples[key]
  const b = samples[base]
  if (a === undefined || b === undefined || a.length === 0 || b.length === 0) return NaN
  return median(a.map((s, i) => s[field] / b[i][field]))
}

function printLocal (results) {
  const out = []
  const checks = []
  out.push(`\nfan-out in one process: server CPU per delivered message (us), ${SIZE} B JSON message; (ratio to ws loop)`)
  const header = ['case', ...SYSTEMS.map(s => s.label), 'typed/socket.io', 'target (typed)', 'check']
  const lines = [header]
  for (const r of results) {
    const rows = [['a', 'single', '(a) one at a time', TARGETS.single], ['b', 'burst', `(b) bursts of ${BURST}`, TARGETS.burst]]
    for (const [, field, name, target] of rows.filter(([c]) => cases.includes(c))) {
      const cells = [`${r.subscribers.toLocaleString('en-US')} subs ${name}`]
      for (const s of SYSTEMS) {
        const value = median(r.samples[s.key].map(x => x[field]))
        cells.push(`${value.toFixed(2)} (${paired(r.samples, s.key, 'ws-loop', field).toFixed(2)})`)
      }
      const vsWs = paired(r.samples, 'typed', 'ws-loop', field)
      const vsIo = paired(r.samples, 'typed', 'socketio', field)
      cells.push(vsIo.toFixed(2))
      cells.push(`<= ${target.toFixed(2)}x ws loop, <= ${TARGETS.socketio.toFixed(2)}x socket.io`)
      const misses = []
      if (!(vsWs <= target)) misses.push(`${vsWs.toFixed(2)}x ws loop`)
      if (!(vsIo <= TARGETS.socketio)) misses.push(`${vsIo.toFixed(2)}x socket.io`)
      cells.push(misses.length === 0 ? 'PASS' : `MISS: ${misses.join('; ')}`)
      checks.push({ case: cells[0], vsWsLoop: vsWs, vsSocketio: vsIo, pass: misses.length === 0 })
      lines.push(cells)
    }
  }
  const widths = header.map((_, i) => Math.max(...lines.map(l => l[i].length)))
  lines.forEach((cells, n) => {
    out.push(cells.map((c, i) => i === 0 || i >= header.length - 2 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ').trimEnd())
    if (n === 0) out.push(widths.map(w => '-'.repeat(w)).join('  '))
  })
  out.push('value: median over rounds; (ratio) and typed/socket.io: median of the per-round ratios; lower is better')
  process.stdout.write(out.join('\n') + '\n')
  return checks
}

// ---------------------------------------------------------------- slow readers

async function slowRun (system, cfg) {
  const server = new Server(system, ['--max-buffered', String(cfg.maxBuffered)])
  const subs = new Subscribers(system, cfg.size)
  try {
    const port = await server.listening
    await subs.connect(port, cfg.subscribers)
    await waitForSubscribers(server, cfg.subscribers)
    // Every tenth subscriber stops reading: its TCP window closes, then the server queues.
    const slow = subs.clients.filter((_, i) => i % Math.round(cfg.subscribers / cfg.slow) === 0)
    for (const c of slow) {
      c.reading = false
      c.ws.pause()
    }
    const memory = (s) => s.mem.heapUsed + s.mem.external
    let seq = 0
    const batch = async () => {
      server.publish(seq, cfg.batch, cfg.size)
      seq += cfg.batch
      await subs.expect(seq - 1, 60000)
    }
    // Warm-up, before the kernel's socket buffers of the slow sockets are full.
    for (let i = 0; i < 5; i++) await batch()
    const base = await server.stats({ gc: true })
    // The checkpoint with the most bytes queued for the slow sockets, and the largest growth seen.
    let peak = { growth: 0, rssGrowth: 0, buffered: 0, open: slow.length, at: 0 }
    let maxGrowth = 0
    const every = Math.ceil(cfg.messages / cfg.batch / cfg.checkpoints)
    for (let n = 1; seq < cfg.messages; n++) {
      await batch()
      // A checkpoint after every batch, so as to see the peak before the cut-off.
      const s = await server.stats({ gc: true, buffered: true })
      const growth = memory(s) - memory(base)
      const point = { growth, rssGrowth: s.mem.rss - base.mem.rss, buffered: s.buffered, open: s.open - (cfg.subscribers - slow.length), at: seq }
      if (n % every === 0 || seq >= cfg.messages) {
        progress(`    ${system} after ${seq} messages: +${(growth / 1048576).toFixed(1)} MiB heap+external, ` +
        `${(s.buffered / 1048576).toFixed(1)} MiB queued for ${point.open} slow sockets still open`)
      }
      if (point.buffered > peak.buffered || (peak.buffered === 0 && growth > peak.growth)) peak = point
      maxGrowth = Math.max(maxGrowth, growth)
    }
    subs.check()
    const final = await server.stats({ gc: true, buffered: true })
    return { ...peak, maxGrowth, finalGrowth: memory(final) - memory(base), slowOpenAtEnd: final.open - (cfg.subscribers - slow.length), messages: seq }
  } finally {
    subs.close()
    await server.stop()
  }
}

async function slowReaders () {
  const cfg = config.slow
  const results = {}
  for (const system of ['typed', 'ws-loop']) {
    results[system] = await slowRun(system, cfg)
  }
  const frame = cfg.size + 4 // header of a 4 KB text frame
  const out = [`\nslow readers: ${cfg.subscribers} subscribers, ${cfg.slow} not reading, ${cfg.size} B messages, ${cfg.messages} published; ` +
    `typed cut-off maxBufferedAmount ${(cfg.maxBuffered / 1048576).toFixed(2)} MiB`]
  out.push('at the checkpoint with the most bytes queued for the slow sockets (growth: heap + external after gc, from a warm start):')
  out.push('system      growth (heap+external)  RSS growth   queued for slow sockets  queued msgs  growth per queued msg  largest growth  slow open at end')
  for (const [system, r] of Object.entries(results)) {
    const queued = r.buffered / frame
    out.push(`${(system === 'typed' ? 'typed' : 'ws send').padEnd(9)} ${(r.growth / 1048576).toFixed(1).padStart(22)} MiB  ${(r.rssGrowth / 1048576).toFixed(1).padStart(7)} MiB  ` +
      `${(r.buffered / 1048576).toFixed(1).padStart(19)} MiB  ${Math.round(queued).toString().padStart(11)}  ${queued > 0 ? (r.growth / queued).toFixed(0).padStart(19) + ' B' : '                n/a'}  ` +
      `${(r.maxGrowth / 1048576).toFixed(1).padStart(10)} MiB  ${String(r.slowOpenAtEnd).padStart(16)}`)
  }
  const typed = results.typed
  const queued = typed.buffered / frame
  // The frames, once (at most a cut-off's worth), ~128 B per queued message, and 1 MiB for the heap's own drift.
  const bound = cfg.maxBuffered + 128 * queued + ALLOWANCE
  const pass = typed.maxGrowth <= bound
  out.push(`typed: largest growth ${(typed.maxGrowth / 1048576).toFixed(1)} MiB against cut-off + 128 B per queued message + 1 MiB = ${(bound / 1048576).toFixed(1)} MiB: ${pass ? 'PASS' : 'MISS'}; ` +
    `a copy per slow subscriber would be ${(typed.buffered / 1048576).toFixed(1)} MiB`)
  process.stdout.write(out.join('\n') + '\n')
  return { config: cfg, results, bound, pass }
}

// ---------------------------------------------------------------- main

async function main () {
  if (pin) spawnSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' })
  else progress('warning: cannot pin processes to cores (needs `taskset` and 2 cores); numbers will be noisier')
  const deadline = setTimeout(() => {
    progress(`fan-out benchmark did not finish within ${config.timeoutMs / 1000} s, giving up`)
    for (const child of children) child.kill('SIGKILL')
    process.exit(1)
  }, config.timeoutMs)
  deadline.unref()
  const started = Date.now()
  const report = { date: new Date().toISOString(), node: process.version, quick, pinned: pin, targets: TARGETS }
  if (only.includes('local')) {
    progress(`fan-out${quick ? ' (quick)' : ''}: ${SYSTEMS.map(s => s.label).join(', ')}; servers on core 0, load on core 1${pin ? '' : ' (unpinned)'}`)
    report.local = await local()
    report.localChecks = printLocal(report.local)
  }
  if (only.includes('slow')) {
    progress('slow readers:')
    report.slow = await slowReaders()
  }
  if (quick) process.stdout.write('quick run: the counts are too small for the target checks to mean anything\n')
  report.seconds = (Date.now() - started) / 1000
  fs.mkdirSync(path.dirname(RESULTS_FILE), { recursive: true })
  fs.writeFileSync(RESULTS_FILE, JSON.stringify(report, null, 2) + '\n')
  progress(`results: ${path.relative(process.cwd(), RESULTS_FILE)}; done in ${report.seconds.toFixed(1)} s`)
}

process.on('SIGINT', () => {
  for (const child of children) child.kill('SIGKILL')
  process.exit(130)
})

main().then(() => {
  process.exit(0)
}, (err) => {
  progress(`\nfan-out benchmark FAILED: ${err && err.stack ? err.stack : err}`)
  for (const child of children) child.kill('SIGKILL')
  process.exit(1)
})
