'use strict'
// One node of the cross-node benchmark: socket.io 4 with @socket.io/redis-adapter.
const { Server } = require('socket.io')
const { createAdapter } = require('@socket.io/redis-adapter')
const Redis = require('ioredis')

const pub = new Redis(process.env.REDIS_URL)
const sub = pub.duplicate()
const io = new Server({ transports: ['websocket'], adapter: createAdapter(pub, sub) })
io.on('connection', (socket) => {
  socket.join('bench')
  socket.on('publish', (message) => io.to('bench').emit('said', message))
})
io.listen(0)
io.httpServer.once('listening', () => process.stdout.write(`listening ${io.httpServer.address().port}\n`))
