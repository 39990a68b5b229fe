'use strict'
// One node of the cross-node benchmark: this plugin, a topic on redisBroker.
const Fastify = require('fastify')
const Redis = require('ioredis')
const { Type } = require('@sinclair/typebox')
const typedWebsocket = require('../../dist/plugin/index.js')
const { redisBroker } = require('../../dist/plugin/redis.js')

const Said = Type.Object({ type: Type.Literal('said'), seq: Type.Integer(), text: Type.String() })

async function main () {
  const app = Fastify()
  await app.register(typedWebsocket, { broker: redisBroker({ client: new Redis(process.env.REDIS_URL) }) })
  const topic = app.websocketTopic('bench', { message: Said })
  app.get('/bench', {
    websocket: {
      inbound: Said,
      outbound: Said,
      async message (_socket, message) { await topic.publish('bench', message) }
    }
  }, async (socket) => { await topic.subscribe(socket, 'bench') })
  await app.listen({ host: '127.0.0.1', port: 0 })
  process.stdout.write(`listening ${app.server.address().port}\n`)
}
main()
