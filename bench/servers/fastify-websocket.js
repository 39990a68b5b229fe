'use strict'

// Peer: Fastify 5 + @fastify/websocket, echo written the usual way.

const Fastify = require('fastify')
const fastifyWebsocket = require('@fastify/websocket')
const { parseArgs, trackAlive, startHeartbeat, serve, TOKEN } = require('./common')

const args = parseArgs(process.argv.slice(2))

async function main () {
  const app = Fastify()
  await app.register(fastifyWebsocket)

  const routeOptions = { websocket: true }
  if (args.auth) {
    routeOptions.preValidation = async (request, reply) => {
      if (request.query.token !== TOKEN) return reply.code(401).send()
    }
  }

  app.get('/echo', routeOptions, function open (socket) {
    trackAlive(socket)
    socket.on('message', data => socket.send(JSON.stringify(JSON.parse(data))))
  })

  await app.ready()
  const interval = startHeartbeat(() => app.websocketServer.clients)
  app.addHook('onClose', async () => clearInterval(interval))

  await app.listen({ port: 0, host: '127.0.0.1' })
  serve({
    name: 'fastify-websocket',
    port: app.server.address().port,
    countClients: () => app.websocketServer.clients.size,
    close: () => app.close()
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
