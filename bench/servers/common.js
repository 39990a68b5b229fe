'use strict'

// Shared plumbing for the benchmark servers: command-line flags, the stats
// channel to the runner (IPC), and a hard lifetime cap so that a server never
// outlives the benchmark.

const MAX_LIFETIME_MS = 20 * 60 * 1000
const PING_INTERVAL_MS = 30000
const TOKEN = 'secret'

function parseArgs (argv) {
  return {
    auth: argv.includes('--auth')
  }
}

function tokenFromUrl (url) {
  const q = url.indexOf('?')
  if (q === -1) return null
  return new URLSearchParams(url.slice(q + 1)).get('token')
}

// The standard `ws` heartbeat: one interval over all clients, ping + isAlive.
function heartbeat () { this.isAlive = true }

function trackAlive (socket) {
  socket.isAlive = true
  socket.on('pong', heartbeat)
}

function startHeartbeat (clients) {
  return setInterval(function ping () {
    for (const socket of clients()) {
      if (socket.isAlive === false) {
        socket.terminate()
        continue
      }
      socket.isAlive = false
      socket.ping()
    }
  }, PING_INTERVAL_MS)
}

// `countClients` returns the number of open WebSocket connections; `close`
// shuts the server down.
function serve ({ name, port, countClients, close }) {
  const lifetime = setTimeout(() => {
    process.stderr.write(`${name}: lifetime cap reached, exiting\n`)
    process.exit(2)
  }, MAX_LIFETIME_MS)
  lifetime.unref()

  if (typeof process.send !== 'function') {
    process.stdout.write(`${name} listening on 127.0.0.1:${port}\n`)
    return
  }

  process.on('disconnect', () => process.exit(0))
  process.on('message', (msg) => {
    if (!msg || typeof msg !== 'object') return
    if (msg.cmd === 'stats') {
      if (msg.gc && typeof global.gc === 'function') {
        global.gc()
        global.gc()
      }
      process.send({
        id: msg.id,
        cpu: process.cpuUsage(),
        mem: process.memoryUsage(),
        clients: countClients()
      })
    } else if (msg.cmd === 'exit') {
      const done = () => process.exit(0)
      setTimeout(done, 2000).unref()
      Promise.resolve(close()).then(done, done)
    }
  })
  process.send({ type: 'listening', port })
}

module.exports = { parseArgs, tokenFromUrl, trackAlive, startHeartbeat, serve, TOKEN, PING_INTERVAL_MS }
