'use strict'

// Calls on this plugin: a route with `requests`, params and result checked against
// TypeBox schemas, the answer serialized from the result schema (JSON-RPC 2.0).

const Fastify = require('fastify')
const { Type } = require('@sinclair/typebox')
const { fastifyTypedWebsocket } = require('fastify-typed-websocket')
const { serve, PING_INTERVAL_MS } = require('./common')

const Echo = Type.Object({ room: Type.String(), n: Type.Integer(), text: Type.String() })

async function main () {
  const app = Fastify()
  await app.register(fastifyTypedWebsocket, { pingInterval: PING_INTERVAL_MS })
  app.get('/calls', {
    websocket: {
      requests: { echo: { params: Echo, result: Echo } },
      handlers: {
        echo (_socket, params) { return { room: params.room, n: params.n, text: params.text } }
      }
    }
  }, function open () {})
  await app.listen({ port: 0, host: '127.0.0.1' })
  serve({ name: 'calls-typed', port: app.server.address().port, countClients: () => app.websocketClients.size, close: () => app.close() })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
