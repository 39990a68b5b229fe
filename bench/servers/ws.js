'use strict'

// Baseline: a bare `ws` WebSocketServer on a plain `http` server.

const http = require('node:http')
const { WebSocketServer } = require('ws')
const { parseArgs, tokenFromUrl, trackAlive, startHeartbeat, serve, TOKEN } = require('./common')

const args = parseArgs(process.argv.slice(2))

const server = http.createServer((req, res) => {
  res.writeHead(426)
  res.end()
})

const wss = new WebSocketServer({
  server,
  path: '/echo',
  verifyClient: args.auth
    ? (info) => tokenFromUrl(info.req.url) === TOKEN
    : undefined
})

wss.on('connection', function connection (socket) {
  trackAlive(socket)
  socket.on('message', function message (data) {
    socket.send(JSON.stringify(JSON.parse(data)))
  })
})

const interval = startHeartbeat(() => wss.clients)
wss.on('close', () => clearInterval(interval))

server.listen(0, '127.0.0.1', () => {
  serve({
    name: 'ws',
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
