'use strict'

// This plugin: Fastify 5 + fastify-typed-websocket, with TypeBox schemas for
// both directions (every inbound message is validated, every outbound object
// is serialized from its schema). Keepalive is the plugin's own (pingInterval).

const Fastify = require('fastify')
const { Type } = require('@sinclair/typebox')
const { fastifyTypedWebsocket } = require('fastify-typed-websocket')
const { parseArgs, serve, TOKEN, PING_INTERVAL_MS } = require('./common')

const args = parseArgs(process.argv.slice(2))

const Msg = Type.Object({
  type: Type.Literal('say'),
  room: Type.String(),
  text: Type.String(),
  seq: Type.Integer()
})

async function main () {
  const app = Fastify()
  await app.register(fastifyTypedWebsocket, { pingInterval: PING_INTERVAL_MS })

  const routeOptions = {
    websocket: {
      inbound: Msg,
      outbound: Msg,
      message (socket, msg) {
        socket.send(msg)
      }
    }
  }
  if (args.auth) {
    routeOptions.preValidation = async (request, reply) => {
      if (request.query.token !== TOKEN) return reply.code(401).send()
    }
  }

  app.get('/echo', routeOptions, function open () {})

  await app.listen({ port: 0, host: '127.0.0.1' })
  serve({
    name: 'typed',
    port: app.server.address().port,
    countClients: () => app.websocketClients.size,
    close: () => app.close()
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
