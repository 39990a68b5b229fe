// The AsyncAPI document of a route with client subscriptions: the subscribable topics with their
// message schema, the $/subscribe, $/unsubscribe and $/presence calls and the $/message envelope;
// still valid for @asyncapi/parser.
import t from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import typedWebsocket from './helpers/plugin'
import asyncapi, { asyncapiErrors } from './helpers/asyncapi'

type Doc = Record<string, any>

const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), text: Type.String() })

t.test('subscriptions in the document', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(typedWebsocket)
  await app.register(asyncapi)
  const rooms = app.websocketTopic('rooms', { message: Said, history: 10, offsetField: 'id', presence: Type.Object({ name: Type.String() }) })
  const prices = app.websocketTopic('prices', { message: Type.Number() })
  app.get('/live', {
    websocket: {
      subscriptions: {
        rooms: { topic: rooms, authorize: () => true, presence: () => ({ name: 'ann' }) },
        prices: { topic: prices }
      }
    }
  }, () => {})
  await app.ready()
  const doc = app.asyncapi() as Doc
  t.same(await asyncapiErrors(doc), [], 'no errors from @asyncapi/parser')
  const channel = doc.channels.live
  t.match(channel['x-subscriptions'], [
    { topic: 'rooms', authorize: true, presence: true, message: { type: 'object' } },
    { topic: 'prices', authorize: false, presence: false, message: { type: 'number' } }
  ])
  for (const name of ['subscribe', 'unsubscribe', 'presence']) {
    const operation = doc.operations[`live.${name}`]
    t.equal(operation.action, 'receive', `${name} is received`)
    t.equal(operation.reply.messages.length, 2, `${name} has a result and an error`)
  }
  const subscribe = channel.messages.subscribe.payload
  t.same(subscribe.properties.method, { const: '$/subscribe' })
  t.same(subscribe.properties.params.properties.topic, { enum: ['rooms', 'prices'] })
  t.same(Object.keys(channel.messages['subscribe.result'].payload.properties.result.properties), ['epoch', 'offset', 'recovered'])
  const delivery = channel.messages['message.rooms'].payload
  t.same(delivery.properties.method, { const: '$/message' })
  t.same(delivery.properties.params.required, ['topic', 'key', 'offset', 'data'])
  t.match(delivery.properties.params.properties.data, { type: 'object', properties: { text: { type: 'string' } } })
  t.equal(doc.operations['live.message.prices'].action, 'send')
})
