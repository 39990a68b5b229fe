'use strict'

// One server of the fan-out benchmark (bench/fanout.js), chosen by --system:
//   ws-loop   bare `ws`: JSON.stringify + send() for every socket
//   ws-once   bare `ws`: JSON.stringify once, send() that string to every socket
//   socketio  socket.io 4: every socket joins one room, io.to(room).emit()
//   typed     this plugin: every socket subscribes to one topic key, publish()
// --max-buffered N sets this plugin's maxBufferedAmount (the slow-reader cut-off).
//
// The runner drives it over IPC: `publish` { from, count, size } publishes
// `count` messages (seq from..from+count-1) synchronously in one tick;
// `stats` answers with process.cpuUsage(), memoryUsage() and the subscriber count.

const http = require('node:http')

const MAX_LIFETIME_MS = 30 * 60 * 1000

function arg (name, fallback) {
  const at = process.argv.indexOf(name)
  return at === -1 ? fallback : process.argv[at + 1]
}

const system = arg('--system')
const maxBuffered = Number(arg('--max-buffered', 16 * 1024 * 1024))

const { message, ROOM } = require('./fanout-message')

async function wsServer (once) {
  const { WebSocketServer } = require('ws')
  const server = http.createServer()
  const wss = new WebSocketServer({ server, perMessageDeflate: false })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  const publish = once
    ? (msg) => {
        const text = JSON.stringify(msg)
        for (const socket of wss.clients) socket.send(text)
      }
    : (msg) => {
        for (const socket of wss.clients) socket.send(JSON.stringify(msg))
      }
  return {
    port: server.address().port,
    publish,
    subscribers: () => wss.clients.size,
    sockets: () => wss.clients
  }
}

async function socketioServer () {
  const { Server } = require('socket.io')
  const server = http.createServer()
  // No engine.io pings during a run (bare ws sends none either).
  const io = new Server(server, { transports: ['websocket'], perMessageDeflate: false, pingInterval: 10 * 60 * 1000, pingTimeout: 60 * 1000 })
  io.on('connection', (socket) => socket.join(ROOM))
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    port: server.address().port,
    publish: (msg) => io.to(ROOM).emit('said', msg),
    subscribers: () => io.sockets.adapter.rooms.get(ROOM)?.size ?? 0,
    sockets: () => [...io.sockets.sockets.values()].map(s => s.conn.transport.socket)
  }
}

async function typedServer () {
  const Fastify = require('fastify')
  const { Type } = require('@sinclair/typebox')
  const { fastifyTypedWebsocket } = require('fastify-typed-websocket')
  const Said = Type.Object({ type: Type.Literal('said'), room: Type.String(), seq: Type.Integer(), text: Type.String() })
  const app = Fastify()
  await app.register(fastifyTypedWebsocket, { pingInterval: 0, maxBufferedAmount: maxBuffered })
  const topic = app.websocketTopic('bench', { message: Said })
  app.get('/', { websocket: { outbound: Said } }, async (socket) => {
    await topic.subscribe(socket, ROOM)
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const failed = (err) => process.stderr.write(`typed: publish failed: ${err.message}\n`)
  return {
    port: app.server.address().port,
    publish: (msg) => { topic.publish(ROOM, msg).catch(failed) },
    subscribers: () => topic.subscribers(ROOM).size,
    sockets: () => [...app.websocketClients].map(s => s.raw)
  }
}

async function main () {
  const makers = { 'ws-loop': () => wsServer(false), 'ws-once': () => wsServer(true), socketio: socketioServer, typed: typedServer }
  if (makers[system] === undefined) throw new Error(`unknown --system ${system}`)
  const server = await makers[system]()
  setTimeout(() => process.exit(2), MAX_LIFETIME_MS).unref()
  process.on('disconnect', () => process.exit(0))
  process.on('message', (msg) => {
    if (msg.cmd === 'publish') {
      // Built before the timed part would be fairer, but every peer pays the same.
      for (let seq = msg.from; seq < msg.from + msg.count; seq++) server.publish(message(seq, msg.size))
    } else if (msg.cmd === 'stats') {
      if (msg.gc && typeof global.gc === 'function') {
        global.gc()
        global.gc()
      }
      let buffered = 0
      let open = 0
      if (msg.buffered) {
        for (const socket of server.sockets()) {
          if (socket.readyState !== 1) continue
          open++
          buffered += socket.bufferedAmount
        }
      }
      process.send({ id: msg.id, cpu: process.cpuUsage(), mem: process.memoryUsage(), clients: server.subscribers(), open, buffered })
    } else if (msg.cmd === 'exit') {
      process.exit(0)
    }
  })
  process.send({ type: 'listening', port: server.port })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
