'use strict'

/*
 * Soak run: two server processes (bench/soak-server.js, the built plugin on redisBroker) on one
 * redis-server started here on a free port, under churning load for a while:
 *
 *   npm run soak                       30 minutes
 *   npm run soak -- --minutes 5        any duration; see `--help` for the other flags
 *
 * Load (shares of --connections, default 2,400, never more than that open at once):
 *   room readers  75%  /rooms/room-N on a random node: stay 5-60 s, leave, come back after
 *                      0.2-8 s (often on the other node) resuming with `since`
 *   heartbeat     10%  the same on /beat/room-N (route `heartbeat: true`), an empty message a second
 *   flood readers  1%  read the flood key (4 kB messages, 40 a second) like the room readers
 *   slow readers   2%  the flood key, reading 200 ms out of every 2 s
 *   dead readers   2%  the flood key, never reading: each must be cut with 1008 `send buffer full`
 * Every node publishes one message a second to each room and one flood message every 50 ms;
 * every subscription also takes a per-connection inbox key, and a room presence entry.
 * Redis is killed (SIGKILL, restarted empty) every --restart-every minutes.
 *
 * What fails the run (exit code 1):
 *   - a message lost: within one connection, offsets must follow one another (id = previous + 1);
 *     across connections, a reader resumes with `since` and must get `recovered: true` and then
 *     since + 1, since + 2…, unless that is impossible by contract: more than `history` messages
 *     were missed, or Redis restarted meanwhile. After a 1012 close a reader resynchronises
 *     (no `since`), as the contract asks. A 1008 cut is followed by a resume like any leave.
 *   - a dead reader that is not cut with 1008 (or 1012 when Redis restarted) within 120 s, or a
 *     heartbeat left unanswered (5 outstanding), or a 1011 away from a Redis restart;
 *   - growth after warm-up: for each server and each figure, a least-squares fit of
 *     figure = a + b * open connections + slope * minutes over the samples after warm-up
 *     (leaving out the 20 s after each Redis restart, when thousands reconnect at once), so the
 *     slope is the growth at a constant number of connections. Thresholds below (THRESHOLDS);
 *   - after the load stops: a server still holding a connection, subscriber, Redis channel or
 *     presence member, or more timers / descriptors than before the load started.
 */

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const net = require('node:net')
const path = require('node:path')
const WebSocket = require('ws')
const Redis = require('ioredis')

const HELP = `usage: node bench/soak.js [--minutes 30] [--connections 2400] [--restart-every 3] [--warmup M] [--sample 5]
  --minutes        how long the load runs (default 30)
  --connections    connections open at once at most, over both nodes (default 2400, at most 3000)
  --restart-every  minutes between Redis restarts (default 3; 0: never)
  --warmup         minutes left out of the growth fits (default: 30% of the run, at most 5)
  --sample         seconds between samples of each server (default 5)`

function flag (name, fallback) {
  const at = process.argv.indexOf(`--${name}`)
  if (at === -1) return fallback
  const value = Number(process.argv[at + 1])
  if (!Number.isFinite(value) || value < 0) {
    process.stderr.write(`--${name} needs a number\n${HELP}\n`)
    process.exit(2)
  }
  return value
}

if (process.argv.includes('--help')) {
  process.stdout.write(HELP + '\n')
  process.exit(0)
}
const MINUTES = flag('minutes', 30)
const CONNECTIONS = Math.min(3000, Math.floor(flag('connections', 2400)))
const RESTART_EVERY = flag('restart-every', 3) * 60_000
const WARMUP = flag('warmup', Math.min(5, MINUTES * 0.3))
const SAMPLE_MS = flag('sample', 5) * 1000
const DURATION = MINUTES * 60_000

const ROOMS = 40
const HISTORY = 100
const DEAD_MAX_MS = 120_000
const RESTART_SETTLE_MS = 20_000
const REDIS_DOWN_MS = 1000
const MIN_FIT_MINUTES = 2
const STALL_MS = 15_000
const HISTORY_BOUNDARY = 10

// Per server, growth per minute at a constant number of connections. A leak of one object per
// churned connection is what these must catch: the run churns about 3,700 connections a minute,
// so 1 MB/min of heap is about 280 bytes per connection, and 2 descriptors/timers a minute is
// one per 1,850 connections. RSS gets more room: the allocator keeps freed pages a while.
const THRESHOLDS = {
  heap: { limit: 1 << 20, unit: 'MB', scale: 1 / (1 << 20) },
  rss: { limit: 4 << 20, unit: 'MB', scale: 1 / (1 << 20) },
  fds: { limit: 2, unit: '', scale: 1 },
  handles: { limit: 2, unit: '', scale: 1 },
  timers: { limit: 2, unit: '', scale: 1 },
  // The open connections: what the driver keeps steady, the covariate of the other fits; not judged
  // (a server that keeps closed sockets shows in subscribers, descriptors and the drain check).
  clients: { limit: null, unit: '', scale: 1 },
  subscribers: { limit: 2, unit: '', scale: 1 },
  channels: { limit: 2, unit: '', scale: 1 }
}

const root = path.join(__dirname, '..')
const children = new Set()
const started = Date.now()
const failures = []
const findings = []
const stats = {
  connects: 0,
  refused: 0,
  delivered: 0,
  deliveredByKind: {},
  clientCloses: {},
  recovered: 0,
  notRecovered: 0,
  notRecoveredExplained: 0,
  notRecoveredBoundary: 0,
  resync1012: 0,
  acrossRestart: 0,
  heartbeatsSent: 0,
  heartbeatsAnswered: 0,
  deadStarted: 0,
  deadNoHandshake: 0,
  deadCut: 0,
  dead1012: 0,
  cutMs: []
}
const restarts = [] // { killStart, killDone, ready }
let stopping = false
// Connections opened per minute after warm-up, to put the heap slope per connection.
const churn = { from: null, perMinute: null }

function fail (what) {
  if (failures.length < 200) failures.push(what)
}

function minutes (at = Date.now()) {
  return (at - started) / 60_000
}

function freePort () {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function launch (command, args, env, ready, log) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  child.once('exit', () => children.delete(child))
  child.stderr.on('data', (chunk) => log.write(chunk))
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`${command} ${args.join(' ')} did not start within 15 s`)), 15_000)
    child.stdout.on('data', (chunk) => {
      if (out === null) return
      out += chunk
      const match = ready.exec(out)
      if (match !== null) {
        out = null
        clearTimeout(timer)
        resolve({ child, port: Number(match[1]) })
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${command} exited with ${code} before it was ready`))
    })
  })
}

function stop (child, signal = 'SIGKILL') {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    child.once('exit', () => resolve())
    child.kill(signal)
  })
}

function getJson (port, url) {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: url, timeout: 10_000 }, (response) => {
      let body = ''
      response.setEncoding('utf8')
      response.on('data', (chunk) => { body += chunk })
      response.on('end', () => {
        try {
          resolve(JSON.parse(body))
        } catch (err) {
          reject(err)
        }
      })
    })
    request.once('timeout', () => request.destroy(new Error(`GET ${url}: no answer within 10 s`)))
    request.once('error', reject)
  })
}

function random (min, max) {
  return min + Math.random() * (max - min)
}

function sleep (ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Whether a Redis restart (kill to ready, plus `after` ms) overlaps [from, to]. */
function restartBetween (from, to, after = 5000) {
  return restarts.some((r) => r.killStart <= to && (r.ready ?? Infinity) + after >= from)
}

// ---- readers -------------------------------------------------------------------------------

/**
 * One reader identity: connects, reads, leaves and comes back until the run stops. It keeps
 * the last offset it saw of its key, and checks every message and every resume against it.
 */
class Reader {
  constructor (id, kind, key, nodes) {
    this.id = id
    this.kind = kind
    this.key = key
    this.nodes = nodes
    this.session = 0
    this.last = null // the last offset seen of this key, when a resume may use it
    this.lastAt = 0 // when that message arrived (local clock)
    this.lastPublishedAt = 0 // its `at`: when the node published it
    this.ws = null
    this.live = null // the connection, once its hello came
    this.timers = new Set()
    stats.deliveredByKind[kind] ??= 0
  }

  /** Every room gets 2 messages a second, the flood key 40: 15 s of silence is a delivery that stopped. */
  stalled () {
    if (this.live === null || this.kind === 'slow' || this.live.readyState !== WebSocket.OPEN) return
    const now = Date.now()
    if (now - this.lastAt < STALL_MS || restartBetween(now - STALL_MS, now, 10_000)) return
    fail(`${this.id} (${this.kind}, ${this.key}): no message for ${((now - this.lastAt) / 1000).toFixed(0)} s, last offset ${this.last}, no Redis restart near`)
    this.lastAt = now
  }

  later (ms, fn) {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      fn()
    }, ms)
    this.timers.add(timer)
  }

  every (ms, fn) {
    const timer = setInterval(fn, ms)
    this.timers.add(timer)
    return timer
  }

  clear (timer) {
    clearInterval(timer)
    this.timers.delete(timer)
  }

  connect () {
    if (stopping) return
    const node = this.nodes[Math.floor(Math.random() * this.nodes.length)]
    const since = this.last
    const session = ++this.session
    const route = this.kind === 'heartbeat' ? 'beat' : 'rooms'
    const query = `name=${this.id}&id=${this.id}-${session}` + (since === null ? '' : `&since=${since}`)
    const ws = new WebSocket(`ws://127.0.0.1:${node.port}/${route}/${this.key}?${query}`, { handshakeTimeout: 10_000 })
    this.ws = ws
    stats.connects++
    const connectedAt = Date.now()
    let next = null // the offset the next message must carry; null until the hello
    let first = true
    let heartbeat
    let outstanding = 0
    ws.on('unexpected-response', (_request, response) => {
      stats.refused++
      response.resume()
    })
    ws.on('error', () => {})
    ws.on('open', () => {
      if (this.kind === 'slow') {
        ws.pause()
        const cycle = this.every(2000, () => {
          ws.resume()
          this.later(200, () => { if (ws.readyState === WebSocket.OPEN) ws.pause() })
        })
        ws.once('close', () => this.clear(cycle))
      }
      if (this.kind === 'heartbeat') {
        heartbeat = this.every(1000, () => {
          if (ws.readyState !== WebSocket.OPEN) return
          if (outstanding >= 5) {
            fail(`${this.id} (${node.name}): 5 heartbeats unanswered`)
            ws.terminate()
            return
          }
          outstanding++
          stats.heartbeatsSent++
          ws.send('')
        })
      }
      const life = this.kind === 'heartbeat' ? random(10_000, 90_000) : random(5_000, 60_000)
      this.later(life, () => ws.close(1000))
    })
    // Before the hello come the replayed messages (and live ones that arrived during the
    // replay): subscribe() sends them before it resolves. They are checked once the hello says
    // where they had to start.
    const early = []
    const check = (message) => {
      if (message.id !== next) {
        fail(`${this.id} on ${node.name} (${this.kind}, ${this.key}): got offset ${message.id}, wanted ${next} (lost ${message.id - next} without a close)`)
      }
      if (first && since !== null && message.id === since + 1 && this.lastPublishedAt > 0) {
        // A resume that crossed a Redis restart: the replay comes from Redis's new life.
        const restart = restarts.find((r) => r.killStart > this.lastPublishedAt && r.killDone !== undefined && message.at > r.killDone)
        if (restart !== undefined) {
          stats.acrossRestart++
          if (findings.length < 20) findings.push(`${this.id}: resumed with since=${since} across the Redis restart at ${minutes(restart.killStart).toFixed(1)} min and got ${message.id}…, published after it`)
        }
      }
      first = false
      next = message.id + 1
      this.last = message.id
      this.lastAt = Date.now()
      this.lastPublishedAt = message.at
      stats.delivered++
      stats.deliveredByKind[this.kind]++
    }
    ws.on('message', (data) => {
      if (data.length === 0) {
        outstanding--
        stats.heartbeatsAnswered++
        return
      }
      const message = JSON.parse(data)
      if (next !== null) {
        if (message.type === 'said') check(message)
        else fail(`${this.id} (${node.name}): unexpected ${data.toString().slice(0, 80)}`)
        return
      }
      if (message.type === 'said') {
        if (early.length >= 10_000) {
          fail(`${this.id} (${node.name}): 10,000 messages and no hello`)
          ws.terminate()
          return
        }
        early.push(message)
        return
      }
      this.hello(node, since, message)
      this.live = ws
      const recovered = message.recovered && since !== null
      next = recovered ? since + 1 : message.offset + 1
      this.last = next - 1
      this.lastAt = Date.now()
      // Not recovered: the reader stands at the hello's offset as of now.
      if (!recovered) this.lastPublishedAt = this.lastAt
      for (const m of early.splice(0)) check(m)
    })
    ws.on('close', (code, reason) => {
      if (this.live === ws) this.live = null
      if (heartbeat !== undefined) this.clear(heartbeat)
      const label = `${code} ${reason}`.trim()
      stats.clientCloses[label] = (stats.clientCloses[label] ?? 0) + 1
      if (code === 1012) {
        // The contract: resubscribe without `since` and resynchronise.
        stats.resync1012++
        this.last = null
      }
      if (code === 1011 && !restartBetween(connectedAt - 5000, Date.now(), 10_000)) {
        fail(`${this.id} (${node.name}): closed 1011 ${reason} with no Redis restart near`)
      }
      if (this.ws === ws) this.ws = null
      this.later(random(200, 8000), () => this.connect())
    })
  }

  hello (node, since, message) {
    if (since === null) return
    if (message.recovered) {
      stats.recovered++
      return
    }
    stats.notRecovered++
    const explained = message.offset - since > HISTORY || restartBetween(this.lastAt - 1000, Date.now())
    if (explained) {
      stats.notRecoveredExplained++
      return
    }
    // The hello's offset is where the subscription took effect; history is read just after it,
    // and what was published meanwhile (the flood key gets 40 a second) pushes the oldest out.
    if (message.offset - since > HISTORY - HISTORY_BOUNDARY) {
      stats.notRecoveredBoundary++
      return
    }
    fail(`${this.id} on ${node.name} (${this.kind}, ${this.key}): resumed with since=${since} at offset ${message.offset} ` +
      `(${message.offset - since} missed, history ${HISTORY}, no Redis restart since ${minutes(this.lastAt).toFixed(2)} min) and got recovered: false`)
  }

  close () {
    for (const timer of this.timers) {
      clearTimeout(timer)
      clearInterval(timer)
    }
    this.timers.clear()
    const ws = this.ws
    if (ws === null) return Promise.resolve()
    return new Promise((resolve) => {
      if (ws.readyState === WebSocket.CLOSED) return resolve()
      const timer = setTimeout(() => { ws.terminate(); resolve() }, 3000)
      ws.once('close', () => { clearTimeout(timer); resolve() })
      ws.close(1000)
    })
  }
}

/** A reader that never reads: the server must cut it with 1008 `send buffer full`. */
class DeadReader {
  constructor (index, nodes) {
    this.index = index
    this.nodes = nodes
    this.session = 0
    this.ws = null
    this.timer = null
  }

  connect () {
    if (stopping) return
    this.id = `dead-${this.index}-${++this.session}`
    this.node = this.nodes[Math.floor(Math.random() * this.nodes.length)]
    this.startedAt = Date.now()
    stats.deadStarted++
    stats.connects++
    const ws = new WebSocket(`ws://127.0.0.1:${this.node.port}/rooms/flood?name=${this.id}&id=${this.id}`, { handshakeTimeout: 10_000 })
    this.ws = ws
    ws.on('error', () => {})
    ws.on('unexpected-response', (_request, response) => {
      stats.refused++
      response.resume()
      this.again()
    })
    let opened = false
    ws.once('open', () => {
      opened = true
      ws.pause()
    })
    // Paused, it sees nothing the server sends: a close here is a handshake that failed.
    ws.once('close', () => {
      if (opened || this.ws !== ws) return
      stats.deadNoHandshake++
      this.again()
    })
  }

  /** The server's word on this reader, from /closed. */
  settle (label) {
    const after = Date.now() - this.startedAt
    if (label === '1008 send buffer full') {
      stats.deadCut++
      stats.cutMs.push(after)
    } else if (label.startsWith('1012') || label.startsWith('1011')) {
      if (restartBetween(this.startedAt, Date.now(), 10_000)) stats.dead1012++
      else fail(`${this.id} (${this.node.name}): closed by the server with ${label} and no Redis restart near`)
    } else {
      fail(`${this.id} (${this.node.name}): closed by the server with ${label}, wanted 1008 send buffer full`)
    }
    this.again()
  }

  overdue () {
    if (this.ws === null || Date.now() - this.startedAt < DEAD_MAX_MS) return
    fail(`${this.id} (${this.node.name}): never read, and still not cut after ${DEAD_MAX_MS / 1000} s`)
    this.again()
  }

  again () {
    this.ws?.terminate()
    this.ws = null
    if (stopping) return
    this.timer = setTimeout(() => this.connect(), random(1000, 5000))
  }

  close () {
    clearTimeout(this.timer)
    this.ws?.terminate()
    this.ws = null
  }
}

// ---- sampling and fits ---------------------------------------------------------------------

async function sample (nodes, redis, samples) {
  let channels = null
  try {
    channels = {}
    for (const line of String(await redis.client('LIST')).split('\n')) {
      const name = /name=soak-(\w+)/.exec(line)
      const sub = / sub=(\d+)/.exec(line)
      if (name !== null && sub !== null) channels[name[1]] = (channels[name[1]] ?? 0) + Number(sub[1])
    }
  } catch {
    channels = null
  }
  const at = Date.now()
  await Promise.all(nodes.map(async (node) => {
    try {
      const s = await getJson(node.port, '/stats')
      const row = {
        at,
        t: minutes(at),
        heap: s.heap,
        rss: s.rss,
        fds: s.fds,
        handles: Object.values(s.resources).reduce((a, b) => a + b, 0),
        timers: s.resources.Timeout ?? 0,
        clients: s.clients,
        subscribers: s.subscribers,
        channels: channels?.[node.name] ?? null,
        closes: s.closes,
        publishes: s.publishes
      }
      samples[node.name].push(row)
      node.latest = row
    } catch (err) {
      if (node.child.exitCode !== null || node.child.signalCode !== null) fail(`server ${node.name} exited (${node.child.exitCode ?? node.child.signalCode})`)
      else fail(`server ${node.name}: /stats failed: ${err.message}`)
    }
  }))
}

/** Least squares y = a + b*c + s*t; returns s (per minute), or a plain slope when c does not vary. */
function fit (rows, field) {
  const points = rows.filter((r) => r[field] !== null)
  const n = points.length
  if (n < 8) return null
  const mean = (f) => points.reduce((sum, r) => sum + f(r), 0) / n
  const mt = mean((r) => r.t)
  const mc = mean((r) => r.clients)
  const my = mean((r) => r[field])
  let stt = 0; let scc = 0; let stc = 0; let sty = 0; let scy = 0
  for (const r of points) {
    const t = r.t - mt
    const c = r.clients - mc
    const y = r[field] - my
    stt += t * t; scc += c * c; stc += t * c; sty += t * y; scy += c * y
  }
  if (stt === 0) return null
  if (field === 'clients') return sty / stt
  const det = stt * scc - stc * stc
  if (scc === 0 || Math.abs(det) < 1e-9 * stt * scc) return sty / stt
  return (sty * scc - scy * stc) / det
}

// ---- the run -------------------------------------------------------------------------------

async function main () {
  if (!fs.existsSync(path.join(root, 'dist', 'plugin', 'redis.js'))) {
    throw new Error('dist/ is missing: run npm run build first (npm run soak does)')
  }
  const logFile = path.join(require('node:os').tmpdir(), `soak-${process.pid}.log`)
  const log = fs.createWriteStream(logFile)
  process.stdout.write(`soak: ${MINUTES} min, up to ${CONNECTIONS} connections over 2 nodes, Redis restarted every ${RESTART_EVERY / 60_000 || '∞'} min, warm-up ${WARMUP.toFixed(1)} min; server logs in ${logFile}\n`)

  const redisPort = await freePort()
  const redisArgs = ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']
  let redisServer = (await launch('redis-server', redisArgs, {}, /(?:Ready to accept connections)()/, log)).child
  const redisUrl = `redis://127.0.0.1:${redisPort}`
  const env = { REDIS_URL: redisUrl, ROOMS: String(ROOMS), FLOOD_BYTES: '4000', PUBLISH_MS: '1000', FLOOD_MS: '50', HISTORY: String(HISTORY) }
  const server = path.join(__dirname, 'soak-server.js')
  const nodes = await Promise.all(['A', 'B'].map(async (name) => {
    const { child, port } = await launch(process.execPath, ['--expose-gc', server], { ...env, NAME: name }, /listening (\d+)/, log)
    return { name, child, port, latest: null }
  }))
  const redis = new Redis(redisUrl, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 200 })
  redis.on('error', () => {})
  await new Promise((resolve) => redis.once('ready', resolve))

  const samples = { A: [], B: [] }
  await sample(nodes, redis, samples)
  const baseline = Object.fromEntries(nodes.map((node) => [node.name, node.latest]))

  const share = (part) => Math.max(1, Math.floor(CONNECTIONS * part))
  const readers = []
  let index = 0
  const add = (kind, count, key) => {
    for (let i = 0; i < count; i++) readers.push(new Reader(`${kind}-${index++}`, kind, key(i), nodes))
  }
  add('room', share(0.75), (i) => `room-${i % ROOMS}`)
  add('heartbeat', share(0.10), (i) => `room-${i % ROOMS}`)
  add('flood', share(0.01), () => 'flood')
  add('slow', share(0.02), () => 'flood')
  const dead = Array.from({ length: share(0.02) }, (_, i) => new DeadReader(i, nodes))
  // Ramp up over 30 s.
  const ramp = []
  for (const reader of [...readers, ...dead]) ramp.push(setTimeout(() => reader.connect(), random(0, 30_000)))

  let restarting = null
  const restartTimer = RESTART_EVERY > 0
    ? setInterval(() => {
      if (restarting !== null || stopping) return
      restarting = restartRedis().finally(() => { restarting = null })
    }, RESTART_EVERY)
    : null
  async function restartRedis () {
    const restart = { killStart: Date.now() }
    restarts.push(restart)
    await stop(redisServer)
    restart.killDone = Date.now()
    await sleep(REDIS_DOWN_MS)
    try {
      redisServer = (await launch('redis-server', redisArgs, {}, /(?:Ready to accept connections)()/, log)).child
    } catch (err) {
      fail(`redis-server did not come back: ${err.message}`)
    }
    restart.ready = Date.now()
    process.stdout.write(`  ${minutes().toFixed(1)} min: Redis restarted\n`)
  }

  const deadTimer = setInterval(async () => {
    for (const node of nodes) {
      const waiting = dead.filter((d) => d.ws !== null && d.node === node)
      if (waiting.length === 0) continue
      try {
        const closed = await getJson(node.port, `/closed?ids=${waiting.map((d) => d.id).join(',')}`)
        for (const d of waiting) if (closed[d.id] !== undefined) d.settle(closed[d.id])
      } catch {}
    }
    for (const d of dead) d.overdue()
    for (const r of readers) r.stalled()
  }, 2000)

  // Not a multiple of the restart period: a progress line right after each restart would show only the reconnect storm.
  const progressEvery = Math.max(60_000, Math.round(DURATION / 11))
  let nextProgress = progressEvery
  const deadline = started + DURATION
  while (Date.now() < deadline && failures.length === 0) {
    await sleep(Math.min(SAMPLE_MS, Math.max(0, deadline - Date.now())))
    await sample(nodes, redis, samples)
    if (churn.from === null && minutes() >= WARMUP) churn.from = { at: Date.now(), connects: stats.connects }
    if (Date.now() - started >= nextProgress) {
      nextProgress += progressEvery
      const open = nodes.map((n) => `${n.name} ${n.latest?.clients ?? '?'} open, heap ${((n.latest?.heap ?? 0) / 1048576).toFixed(0)} MB`).join('; ')
      process.stdout.write(`  ${minutes().toFixed(1)} min: ${stats.delivered} delivered, ${stats.connects} connections; ${open}\n`)
    }
  }

  // Stop the load, then every server must let go of everything.
  if (churn.from !== null) churn.perMinute = (stats.connects - churn.from.connects) / minutes(Date.now() - churn.from.at + started)
  stopping = true
  for (const timer of ramp) clearTimeout(timer)
  clearInterval(restartTimer)
  clearInterval(deadTimer)
  await restarting
  await Promise.all(readers.map((r) => r.close()))
  for (const d of dead) d.close()
  let drained = null
  for (let i = 0; i < 40; i++) {
    await sleep(500)
    await sample(nodes, redis, samples)
    drained = nodes.map((node) => {
      const now = node.latest
      const base = baseline[node.name]
      const left = []
      if (now.clients !== 0) left.push(`${now.clients} connections`)
      if (now.subscribers !== 0) left.push(`${now.subscribers} subscribers`)
      if (now.channels !== null && now.channels !== 0) left.push(`${now.channels} Redis channels`)
      if (now.timers > base.timers + 3) left.push(`${now.timers} timers (${base.timers} before the load)`)
      if (now.fds > base.fds + 3) left.push(`${now.fds} descriptors (${base.fds} before the load)`)
      return { node: node.name, left }
    })
    if (drained.every((d) => d.left.length === 0)) break
  }
  let presenceLeft = null
  try {
    // Members of closed sockets are gone at once; those of a dead node within presenceTtl.
    presenceLeft = (await getJson(nodes[0].port, '/presence')).members
  } catch (err) {
    fail(`presence after the run: ${err.message}`)
  }
  for (const d of drained) if (d.left.length > 0) fail(`server ${d.node} after the load stopped still holds ${d.left.join(', ')}`)
  if (presenceLeft !== null && presenceLeft !== 0) fail(`${presenceLeft} presence members left after every socket closed`)

  // Growth after warm-up.
  const rows = []
  for (const node of nodes) {
    const steady = samples[node.name].filter((r) => r.t >= WARMUP && r.t <= MINUTES &&
      !restarts.some((x) => r.at >= x.killStart && r.at <= (x.ready ?? Infinity) + RESTART_SETTLE_MS))
    for (const [field, threshold] of Object.entries(THRESHOLDS)) {
      const slope = fit(steady, field)
      // Under two minutes after warm-up, a slope says more about noise than about growth.
      const judged = steady.length > 0 && steady[steady.length - 1].t - steady[0].t >= MIN_FIT_MINUTES
      const values = steady.map((r) => r[field]).filter((v) => v !== null)
      const all = samples[node.name].filter((r) => r.t <= MINUTES).map((r) => r[field]).filter((v) => v !== null)
      const ok = slope === null || threshold.limit === null || !judged ? null : slope <= threshold.limit
      if (ok === false) fail(`server ${node.name}: ${field} grows ${(slope * threshold.scale).toFixed(3)}${threshold.unit}/min after warm-up (limit ${(threshold.limit * threshold.scale).toFixed(0)}${threshold.unit}/min)`)
      rows.push({
        node: node.name,
        field,
        first: values[0],
        last: values[values.length - 1],
        peak: Math.max(...all),
        slope,
        threshold,
        ok
      })
    }
  }

  await redis.quit().catch(() => {})
  redis.disconnect()
  await Promise.all(nodes.map((node) => stop(node.child, 'SIGTERM')))
  await stop(redisServer)
  log.end()
  const dump = logFile.replace(/\.log$/, '.json')
  fs.writeFileSync(dump, JSON.stringify({ started, minutes: MINUTES, warmup: WARMUP, restarts, samples, stats: { ...stats, cutMs: undefined }, failures }))
  process.stdout.write(`samples in ${dump}\n`)

  report(rows, nodes, samples, drained, presenceLeft)
}

function pad (value, width) {
  return String(value).padStart(width)
}

function report (rows, nodes, samples, drained, presenceLeft) {
  const out = []
  const fmt = (v, th) => v === undefined || v === null || !Number.isFinite(v) ? '-' : th.scale === 1 ? v.toFixed(0) : (v * th.scale).toFixed(1)
  const steadyCount = (name) => samples[name].filter((r) => r.t >= WARMUP).length
  out.push('')
  out.push(`soak summary: ${minutes().toFixed(1)} min, ${restarts.length} Redis restarts, warm-up ${WARMUP.toFixed(1)} min, ` +
    `${nodes.map((n) => `${steadyCount(n.name)} samples of ${n.name} after it`).join(', ')}`)
  out.push('')
  out.push('node  figure       after warm-up       end      peak  slope/min     limit')
  for (const r of rows) {
    const unit = r.threshold.unit
    const slope = r.slope === null ? '-' : (r.slope * r.threshold.scale).toFixed(r.threshold.scale === 1 ? 2 : 3) + unit
    const limit = r.threshold.limit === null ? '-' : (r.threshold.limit * r.threshold.scale).toFixed(0) + unit
    const verdict = r.threshold.limit === null ? '' : r.ok === null ? 'not judged' : r.ok ? 'ok' : 'GROWS'
    out.push(`${r.node.padEnd(5)} ${r.field.padEnd(12)} ${pad(fmt(r.first, r.threshold) + unit, 13)} ${pad(fmt(r.last, r.threshold) + unit, 9)} ${pad(fmt(r.peak, r.threshold) + unit, 9)} ${pad(slope, 10)} ${pad(limit, 9)}  ${verdict}`)
  }
  out.push(`(slope: least squares over the samples after warm-up, without the ${RESTART_SETTLE_MS / 1000} s after each Redis restart, ` +
    `at a constant number of open connections; judged over ${MIN_FIT_MINUTES} min or more; peak: the whole run)`)
  const closes = {}
  const publishes = { ok: 0, failed: 0 }
  for (const node of nodes) {
    const latest = node.latest
    if (latest === null) continue
    for (const [label, n] of Object.entries(latest.closes)) closes[label] = (closes[label] ?? 0) + n
    publishes.ok += latest.publishes.ok
    publishes.failed += latest.publishes.failed
  }
  const sortedCut = [...stats.cutMs].sort((a, b) => a - b)
  const median = sortedCut.length === 0 ? '-' : (sortedCut[Math.floor(sortedCut.length / 2)] / 1000).toFixed(1)
  const top = (counts) => Object.entries(counts).sort((a, b) => b[1] - a[1]).map(([label, n]) => `${label}: ${n}`).join(', ')
  out.push('')
  out.push(`connections opened        ${stats.connects} (${stats.refused} refused at the handshake)` +
    (churn.perMinute === null ? '' : `, ${churn.perMinute.toFixed(0)} a minute after warm-up`))
  if (churn.perMinute !== null) {
    const perConnection = rows.filter((r) => r.field === 'heap' && r.slope !== null)
      .map((r) => `${r.node} ${(r.slope / churn.perMinute).toFixed(1)} B`).join(', ')
    out.push(`heap slope per connection ${perConnection} (slope / connections opened per minute)`)
  }
  out.push(`messages published        ${publishes.ok} accepted, ${publishes.failed} rejected (FST_WS_BROKER_UNAVAILABLE: Redis down or slow)`)
  out.push(`messages delivered        ${stats.delivered} (${top(stats.deliveredByKind)}), every one checked in offset order`)
  out.push(`resumes with since        ${stats.recovered} recovered, ${stats.notRecovered} not (${stats.notRecoveredExplained} beyond history or across a Redis restart, ` +
    `${stats.notRecoveredBoundary} within ${HISTORY_BOUNDARY} of the history's length)`)
  out.push(`1012 missed messages      ${stats.resync1012} at the clients (then resynchronised without since)`)
  out.push(`dead readers              ${stats.deadStarted} started, ${stats.deadCut} cut with 1008 send buffer full (median ${median} s), ${stats.dead1012} closed by a Redis restart first (1012, or 1011 when it came during the outage), ${stats.deadNoHandshake} handshakes failed`)
  out.push(`heartbeats                ${stats.heartbeatsSent} sent, ${stats.heartbeatsAnswered} answered`)
  out.push(`closes seen by clients    ${top(stats.clientCloses)}`)
  out.push(`closes at the servers      ${top(closes)} (the server's code where it closed, else the peer's)`)
  out.push(`after the load stopped    ${drained.map((d) => `${d.node}: ${d.left.length === 0 ? 'nothing held' : d.left.join(', ')}`).join('; ')}; presence members left: ${presenceLeft ?? '?'}`)
  if (stats.acrossRestart > 0) {
    out.push(`resumed across a restart  ${stats.acrossRestart}: a since from before a Redis restart was accepted as recovered`)
    for (const f of findings.slice(0, 5)) out.push(`  ${f}`)
  }
  out.push('')
  if (failures.length === 0) {
    out.push('soak: ok')
  } else {
    out.push(`soak: FAILED (${failures.length}${failures.length === 200 ? '+' : ''})`)
    for (const f of failures.slice(0, 30)) out.push(`  ${f}`)
  }
  process.stdout.write(out.join('\n') + '\n')
  if (failures.length > 0) process.exitCode = 1
}

process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    for (const child of children) child.kill('SIGKILL')
    process.exit(130)
  })
}

main().catch((err) => {
  process.stderr.write(String(err.stack) + '\n')
  for (const child of children) child.kill('SIGKILL')
  process.exitCode = 1
})
