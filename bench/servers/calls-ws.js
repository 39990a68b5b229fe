'use strict'

// Calls on bare `ws`: a hand-written id echo — JSON.parse, the handler, JSON.stringify —
// answering the same JSON-RPC 2.0 text as the typed route, without any checks.

const http = require('node:http')
const { WebSocketServer } = require('ws')
const { trackAlive, startHeartbeat, serve } = require('./common')

const server = http.createServer((req, res) => {
  res.writeHead(426)
  res.end()
})
const wss = new WebSocketServer({ server, path: '/calls' })

const handlers = {
  echo (params) { return { room: params.room, n: params.n, text: params.text } }
}

wss.on('connection', function connection (socket) {
  trackAlive(socket)
  socket.on('message', function message (data) {
    const msg = JSON.parse(data)
    socket.send(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: handlers[msg.method](msg.params) }))
  })
})

const interval = startHeartbeat(() => wss.clients)
server.listen(0, '127.0.0.1', () => {
  serve({
    name: 'calls-ws',
    port: server.address().port,
    countClients: () => wss.clients.size,
    close: () => new Promise((resolve) => {
      clearInterval(interval)
      for (const socket of wss.clients) socket.terminate()
      wss.close()
      server.close(() => resolve())
    })
  })
})
