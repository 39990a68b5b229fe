'use strict'

/*
 * Cross-node benchmark: three server processes on one redis-server, subscribers
 * spread over them, one message published at a time, each time from the next
 * node in turn. Compares this plugin (a topic on redisBroker) with socket.io 4
 * and @socket.io/redis-adapter (`io.to(room).emit`).
 *
 *   npm run build && node bench/cross-node.js           300 subscribers, 1000 messages
 *   node bench/cross-node.js --quick                    30 subscribers, 50 messages
 *
 * Servers and redis-server are pinned to core 0, the load (this process) to
 * core 1 where `taskset` allows. Reported per system: publish-to-last-delivery
 * latency p50 and p99 (from the moment the publishing client sends, to the moment
 * the last subscriber on any node has the message) and server CPU (user + system
 * of the three processes, from /proc) per delivered message. Every subscriber
 * checks every message: count, order and content; a mismatch fails the run.
 */

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const path = require('node:path')
const WebSocket = require('ws')
const { io: ioClient } = require('socket.io-client')

const quick = process.argv.includes('--quick')
const SUBSCRIBERS = quick ? 30 : 300
const MESSAGES = quick ? 50 : 1000
const WARMUP = quick ? 10 : 100
const TICK = 1 / 100 // seconds per clock tick in /proc/<pid>/stat
const pin = spawnSync('taskset', ['-c', '0', 'true']).status === 0
const children = []

function freePort () {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

function launch (command, args, env, ready) {
  const argv = pin ? ['-c', '0', command, ...args] : args
  const child = spawn(pin ? 'taskset' : command, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(child)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args.join(' ')} did not start`)), 15_000)
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      const match = ready.exec(out)
      if (match !== null) {
        clearTimeout(timer)
        child.stdout.resume()
        resolve({ child, port: Number(match[1]) })
      }
    })
  })
}

function cpuSeconds (pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) * TICK
}

function percentile (sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]
}

/** The system-specific part: connect a subscriber, publish from it, stop. */
const SYSTEMS = {
  'socket.io + redis-adapter': {
    file: 'servers/cluster-socketio.js',
    connect (port, onMessage) {
      const socket = ioClient(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false })
      socket.on('said', onMessage)
      return new Promise((resolve, reject) => {
        socket.once('connect', () => resolve({ publish: (m) => socket.emit('publish', m), close: () => socket.close() }))
        socket.once('connect_error', reject)
      })
    }
  },
  'fastify-typed-websocket': {
    file: 'servers/cluster-typed.js',
    available () {
      try {
        return typeof require('../dist/plugin/index.js') === 'function' && fs.readFileSync(path.join(__dirname, '..', 'dist', 'plugin', 'index.js'), 'utf8').includes('websocketTopic')
      } catch { return false }
    },
    connect (port, onMessage) {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/bench`)
      ws.on('message', (data) => onMessage(JSON.parse(String(data))))
      return new Promise((resolve, reject) => {
        // The subscription is taken in the route handler; give it a moment after the upgrade.
        ws.once('open', () => setTimeout(() => resolve({ publish: (m) => ws.send(JSON.stringify(m)), close: () => ws.close() }), 50))
        ws.once('error', reject)
      })
    }
  }
}

async function run (name, system, redisUrl) {
  const nodes = await Promise.all([0, 1, 2].map(() => launch(process.execPath, [path.join(__dirname, system.file)], { REDIS_URL: redisUrl }, /listening (\d+)/)))
  const text = 'x'.repeat(60)
  let expected = 0
  let pending = 0
  let sentAt = 0
  let done = () => {}
  const failures = []
  const subscribers = []
  for (let i = 0; i < SUBSCRIBERS; i++) {
    let next = 0
    const onMessage = (message) => {
      if (message.seq !== next || message.text !== text || message.type !== 'said') failures.push(`subscriber ${i}: got ${JSON.stringify(message)}, wanted seq ${next}`)
      next = message.seq + 1
      if (message.seq === expected && --pending === 0) done()
    }
    subscribers.push(await system.connect(nodes[i % 3].port, onMessage))
  }
  const latencies = []
  let cpuStart = 0
  for (let seq = 0; seq < WARMUP + MESSAGES; seq++) {
    if (seq === WARMUP) cpuStart = nodes.reduce((sum, n) => sum + cpuSeconds(n.child.pid), 0)
    expected = seq
    pending = SUBSCRIBERS
    const delivered = new Promise((resolve, reject) => {
      done = resolve
      setTimeout(() => reject(new Error(`${name}: message ${seq} not delivered to every subscriber within 10 s`)), 10_000).unref()
    })
    sentAt = process.hrtime.bigint()
    subscribers[seq % 3].publish({ type: 'said', seq, text })
    await delivered
    if (seq >= WARMUP) latencies.push(Number(process.hrtime.bigint() - sentAt) / 1000)
  }
  const cpu = nodes.reduce((sum, n) => sum + cpuSeconds(n.child.pid), 0) - cpuStart
  for (const s of subscribers) s.close()
  for (const n of nodes) n.child.kill('SIGKILL')
  if (failures.length > 0) throw new Error(`${name}: ${failures.length} wrong deliveries, first: ${failures[0]}`)
  latencies.sort((a, b) => a - b)
  return { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99), cpuPerDelivery: cpu * 1e6 / (MESSAGES * SUBSCRIBERS) }
}

async function main () {
  if (pin) spawnSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' })
  const port = await freePort()
  await launch('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {}, /(?:Ready to accept connections)()/)
  const redisUrl = `redis://127.0.0.1:${port}`
  const rows = []
  for (const [name, system] of Object.entries(SYSTEMS)) {
    if (system.available !== undefined && !system.available()) {
      process.stderr.write(`${name}: skipped (this build has no topics)\n`)
      continue
    }
    process.stderr.write(`${name}: ${SUBSCRIBERS} subscribers on 3 nodes, ${MESSAGES} messages\n`)
    rows.push([name, await run(name, system, redisUrl)])
  }
  process.stdout.write(`\ncross-node on Redis: ${SUBSCRIBERS} subscribers over 3 nodes, ${MESSAGES} messages, one at a time\n`)
  process.stdout.write('system                        p50 us   p99 us   CPU us/delivery\n')
  for (const [name, r] of rows) {
    process.stdout.write(`${name.padEnd(28)} ${r.p50.toFixed(0).padStart(7)}  ${r.p99.toFixed(0).padStart(7)}  ${r.cpuPerDelivery.toFixed(2).padStart(8)}\n`)
  }
  if (rows.length === 2) {
    const [[, typed], [, socketio]] = [rows.find(([n]) => n.startsWith('fastify')), rows.find(([n]) => n.startsWith('socket'))]
    process.stdout.write(`ratio to socket.io: p50 ${(typed.p50 / socketio.p50).toFixed(2)}, p99 ${(typed.p99 / socketio.p99).toFixed(2)} (target <= 1.00), CPU ${(typed.cpuPerDelivery / socketio.cpuPerDelivery).toFixed(2)}\n`)
  }
}

main().then(() => {
  for (const child of children) child.kill('SIGKILL')
}, (err) => {
  process.stderr.write(String(err.stack) + '\n')
  for (const child of children) child.kill('SIGKILL')
  process.exitCode = 1
})
