'use strict'

// Load generator for bench/run.js. It runs as a child process (pinned to its
// own core) and takes commands over IPC; every answer is { id, ok, ... } or
// { id, ok: false, error }. Every echo is verified (count, order and content
// per connection), so a server that answers fast but wrong fails the run.

const WebSocket = require('ws')

const TOKEN = 'secret'
const TEXT = 'Hello everyone, the benchmark says hi!'
const ROOM = 'lobby'
const OPEN_TIMEOUT_MS = 10000
const CLOSE_TIMEOUT_MS = 10000
const DRAIN_TIMEOUT_MS = 15000
const MAX_LIFETIME_MS = 20 * 60 * 1000

function message (seq) {
  return `{"type":"say","room":"${ROOM}","text":"${TEXT}","seq":${seq}}`
}

function isEcho (data, seq) {
  const text = data.toString()
  if (text === message(seq)) return true
  let msg
  try {
    msg = JSON.parse(text)
  } catch {
    return false
  }
  return msg !== null && typeof msg === 'object' &&
    Object.keys(msg).length === 4 &&
    msg.type === 'say' && msg.room === ROOM && msg.text === TEXT && msg.seq === seq
}

function url (port, auth) {
  return `ws://127.0.0.1:${port}/echo${auth ? `?token=${TOKEN}` : ''}`
}

// Connections are spread over several loopback addresses: one local address
// has about 28 000 ephemeral ports, fewer than a few rounds of 19 000 need
// while closed ones linger in TIME_WAIT.
const LOCAL_ADDRESSES = 8
let connections = 0

function connect (target) {
  return new Promise((resolve, reject) => {
    const localAddress = `127.0.0.${1 + (connections++ % LOCAL_ADDRESSES)}`
    const ws = new WebSocket(target, { perMessageDeflate: false, localAddress })
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error(`connection to ${target} not open after ${OPEN_TIMEOUT_MS} ms`))
    }, OPEN_TIMEOUT_MS)
    ws.once('unexpected-response', (req, res) => {
      clearTimeout(timer)
      req.destroy()
      reject(new Error(`handshake refused with HTTP ${res.statusCode}`))
    })
    ws.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    ws.once('open', () => {
      clearTimeout(timer)
      ws.removeAllListeners('error')
      ws.on('error', () => {})
      resolve(ws)
    })
  })
}

// Opens `count` connections with at most `concurrency` handshakes in flight.
async function openMany (target, count, concurrency) {
  const sockets = []
  let next = 0
  let failed = false
  async function worker () {
    while (next < count && !failed) {
      next++
      try {
        sockets.push(await connect(target))
      } catch (err) {
        failed = true
        throw err
      }
    }
  }
  const workers = []
  for (let i = 0; i < Math.min(concurrency, count); i++) workers.push(worker())
  const results = await Promise.allSettled(workers)
  const rejected = results.find(r => r.status === 'rejected')
  if (rejected) {
    for (const ws of sockets) ws.terminate()
    throw rejected.reason
  }
  return sockets
}

function closeAll (sockets, graceful) {
  return new Promise((resolve) => {
    let pending = 0
    const timer = setTimeout(() => {
      for (const ws of sockets) ws.terminate()
      resolve()
    }, CLOSE_TIMEOUT_MS)
    const done = () => {
      if (--pending === 0) {
        clearTimeout(timer)
        resolve()
      }
    }
    for (const ws of sockets) {
      if (ws.readyState === WebSocket.CLOSED) continue
      pending++
      ws.once('close', done)
      if (graceful) ws.close(1000)
      else ws.terminate()
    }
    if (pending === 0) {
      clearTimeout(timer)
      resolve()
    }
  })
}

// Pipelined echo over the open connections: each keeps `window` messages in
// flight until `durationMs` has passed or it has sent `perConnection`
// messages, then drains. With `latency`, round trips are recorded.
function echo (sockets, { window, durationMs, perConnection, latency }) {
  return new Promise((resolve, reject) => {
    const rtts = latency ? new Float64Array(sockets.length * perConnection) : null
    let rttCount = 0
    let stopped = false
    let settled = false
    let active = sockets.length
    let sent = 0
    let received = 0
    let durationTimer = null
    let drainTimer = null
    const start = process.hrtime.bigint()
    let last = start

    function finish (err) {
      if (settled) return
      settled = true
      clearTimeout(durationTimer)
      clearTimeout(drainTimer)
      for (const ws of sockets) {
        ws.removeAllListeners('message')
        ws.removeAllListeners('close')
      }
      if (err) {
        reject(err)
        return
      }
      const elapsedNs = Number(last - start)
      const result = { sent, received, elapsedMs: elapsedNs / 1e6, perSecond: received / (elapsedNs / 1e9) }
      if (rtts) {
        const sorted = rtts.subarray(0, rttCount).sort()
        const pick = (p) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
        result.latency = { count: rttCount, p50: pick(0.5), p99: pick(0.99), max: sorted[sorted.length - 1] }
      }
      resolve(result)
    }

    function stop () {
      if (settled) return
      stopped = true
      drainTimer = setTimeout(() => {
        finish(new Error(`echo did not drain within ${DRAIN_TIMEOUT_MS} ms: sent ${sent}, received ${received}`))
      }, DRAIN_TIMEOUT_MS)
      if (active === 0) finish()
    }

    sockets.forEach((ws, index) => {
      let nextSeq = 0
      let expected = 0
      const sentAt = latency ? new Array(window) : null

      function sendOne () {
        if (sentAt) sentAt[nextSeq % window] = process.hrtime.bigint()
        ws.send(message(nextSeq++))
        sent++
      }

      ws.on('close', (code) => {
        finish(new Error(`connection ${index} closed by the server during echo (code ${code}) after ${expected} echoes`))
      })
      ws.on('message', (data, isBinary) => {
        if (settled) return
        if (isBinary) return finish(new Error(`connection ${index}: binary frame where a text echo was expected`))
        if (expected >= nextSeq) return finish(new Error(`connection ${index}: unsolicited message ${String(data).slice(0, 200)}`))
        if (!isEcho(data, expected)) {
          return finish(new Error(`connection ${index}: expected the echo of seq ${expected}, got ${String(data).slice(0, 200)}`))
        }
        const now = process.hrtime.bigint()
        if (sentAt) rtts[rttCount++] = Number(now - sentAt[expected % window]) / 1e3
        last = now
        expected++
        received++
        const limitReached = perConnection > 0 && nextSeq >= perConnection
        if (!stopped && !limitReached) {
          sendOne()
        } else if (expected === nextSeq) {
          if (--active === 0 && (stopped || perConnection > 0)) finish()
        }
      })

      const first = perConnection > 0 ? Math.min(window, perConnection) : window
      for (let i = 0; i < first; i++) sendOne()
    })

    if (durationMs > 0) durationTimer = setTimeout(stop, durationMs)
  })
}

// Opens and closes `count` connections, `concurrency` at a time; each is
// closed by the client (1000) as soon as it is open and must close cleanly.
function handshakes (target, count, concurrency) {
  return new Promise((resolve, reject) => {
    let started = 0
    let done = 0
    let failed = false
    const start = process.hrtime.bigint()
    const timer = setTimeout(() => fail(new Error(`handshakes not done after 120 s (${done}/${count})`)), 120000)

    function fail (err) {
      if (failed) return
      failed = true
      clearTimeout(timer)
      reject(err)
    }

    function one () {
      if (failed || started >= count) return
      started++
      const ws = new WebSocket(target, { perMessageDeflate: false })
      let opened = false
      ws.on('unexpected-response', (req, res) => {
        req.destroy()
        fail(new Error(`handshake refused with HTTP ${res.statusCode}`))
      })
      ws.on('error', (err) => fail(err))
      ws.on('open', () => {
        opened = true
        ws.close(1000)
      })
      ws.on('close', (code) => {
        if (!opened) return fail(new Error('connection closed before it opened'))
        if (code !== 1000) return fail(new Error(`close handshake answered with code ${code}, expected 1000`))
        if (++done === count) {
          clearTimeout(timer)
          const elapsedNs = Number(process.hrtime.bigint() - start)
          resolve({ count, elapsedMs: elapsedNs / 1e6, perSecond: count / (elapsedNs / 1e9) })
        } else {
          one()
        }
      })
    }
    for (let i = 0; i < Math.min(concurrency, count); i++) one()
  })
}

// Sends one message that is valid JSON but breaks the chat schema (room is a
// number). A validating server must close with 1007; a plain echo server
// echoes it back. This proves the validating path is the one being measured.
function invalidProbe (target) {
  return connect(target).then(ws => new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error('no answer to the schema-breaking message within 5 s'))
    }, 5000)
    ws.once('message', (data) => {
      clearTimeout(timer)
      ws.removeAllListeners('close')
      ws.terminate()
      resolve({ outcome: 'echoed', data: String(data).slice(0, 200) })
    })
    ws.once('close', (code, reason) => {
      clearTimeout(timer)
      resolve({ outcome: 'closed', code, reason: String(reason) })
    })
    ws.send('{"type":"say","room":1,"text":"x","seq":0}')
  }))
}

// Tries a handshake without the token; returns the HTTP status of the refusal.
function refusedStatus (target) {
  return connect(target).then(
    (ws) => {
      ws.terminate()
      throw new Error('a handshake without the token was accepted')
    },
    (err) => {
      const match = /HTTP (\d+)/.exec(err.message)
      if (!match) throw err
      return { status: Number(match[1]) }
    }
  )
}

let open = []

const commands = {
  async open ({ port, auth, count, concurrency }) {
    const sockets = await openMany(url(port, auth), count, concurrency)
    open = open.concat(sockets)
    return { open: open.length }
  },
  async close ({ graceful }) {
    const sockets = open
    open = []
    await closeAll(sockets, graceful)
    if (typeof global.gc === 'function') global.gc()
    return { open: 0 }
  },
  async echo (options) {
    if (open.length === 0) throw new Error('echo: no open connections')
    return echo(open, options)
  },
  async handshakes ({ port, auth, count, concurrency }) {
    return handshakes(url(port, auth), count, concurrency)
  },
  async probe ({ port, auth }) {
    return invalidProbe(url(port, auth))
  },
  async refused ({ port }) {
    return refusedStatus(url(port, false))
  }
}

const lifetime = setTimeout(() => process.exit(2), MAX_LIFETIME_MS)
lifetime.unref()
process.on('disconnect', () => process.exit(0))
process.on('message', (msg) => {
  const command = commands[msg && msg.cmd]
  if (!command) {
    process.send({ id: msg && msg.id, ok: false, error: `unknown command ${msg && msg.cmd}` })
    return
  }
  command(msg).then(
    (result) => process.send({ id: msg.id, ok: true, ...result }),
    (err) => process.send({ id: msg.id, ok: false, error: err && err.stack ? err.stack : String(err) })
  )
})
process.send({ type: 'ready' })
