'use strict'

// Calls on socket.io 4: an event with an acknowledgement (the client's emitWithAck),
// WebSocket transport only.

const http = require('node:http')
const { Server } = require('socket.io')
const { serve, PING_INTERVAL_MS } = require('./common')

const server = http.createServer()
const io = new Server(server, { transports: ['websocket'], pingInterval: PING_INTERVAL_MS, serveClient: false })

io.on('connection', (socket) => {
  socket.on('echo', (params, ack) => ack({ room: params.room, n: params.n, text: params.text }))
})

server.listen(0, '127.0.0.1', () => {
  serve({
    name: 'calls-socketio',
    port: server.address().port,
    countClients: () => io.engine.clientsCount,
    close: () => new Promise((resolve) => io.close(() => resolve()))
  })
})
