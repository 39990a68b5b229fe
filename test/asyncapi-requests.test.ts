// The AsyncAPI document of a route with requests: per method a receive operation with its
// reply, the JSON-RPC envelope in the payloads, the app errors; still valid for @asyncapi/parser.
import t from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import typedWebsocket from './helpers/plugin'
import asyncapi, { asyncapiErrors } from './helpers/asyncapi'

type Doc = Record<string, any>

const Said = Type.Object({ type: Type.Literal('said'), text: Type.String() })

t.test('requests and clientRequests in the document', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(typedWebsocket)
  await app.register(asyncapi)
  app.get('/chat', {
    websocket: {
      inbound: Type.Object({ type: Type.Literal('say'), text: Type.String() }),
      outbound: Said,
      message () {},
      requests: {
        history: { params: Type.Object({ room: Type.String() }), result: Type.Array(Said) },
        join: {
          params: Type.Object({ room: Type.String() }),
          result: Type.Object({ members: Type.Array(Type.String()) }),
          errors: { room_full: Type.Object({ capacity: Type.Integer() }), banned: Type.Object({ until: Type.String() }) }
        },
        leave: { errors: { banned: Type.Object({ until: Type.String() }) } }
      },
      clientRequests: { confirm: { params: Type.Object({ question: Type.String() }), result: Type.Boolean(), errors: { declined: Type.Null() } } },
      handlers: { history: () => [], join: () => ({ members: [] }), leave: () => null }
    }
  }, () => {})
  app.get('/only', { websocket: { requests: { ping: {} }, handlers: { ping: () => 'pong' } } }, () => {})
  await app.ready()
  const doc = app.asyncapi() as Doc
  t.same(await asyncapiErrors(doc), [], 'no errors from @asyncapi/parser')

  const ref = (key: string): { $ref: string } => ({ $ref: `#/channels/chat/messages/${key}` })
  const join = doc.operations['chat.request.join']
  t.same(join, {
    action: 'receive',
    channel: { $ref: '#/channels/chat' },
    summary: 'JSON-RPC method join',
    messages: [ref('join')],
    reply: { channel: { $ref: '#/channels/chat' }, messages: [ref('join.result'), ref('join.error')] },
    'x-app-errors': [{ name: 'room_full', code: 1 }, { name: 'banned', code: 2 }]
  }, 'a receive operation with its reply and its app errors')
  const messages = doc.channels.chat.messages
  t.same(messages.join.payload, {
    type: 'object',
    required: ['jsonrpc', 'id', 'method', 'params'],
    properties: {
      jsonrpc: { const: '2.0' },
      id: { description: 'Chosen by the caller; the answer carries it back.', oneOf: [{ type: 'string' }, { type: 'number' }] },
      method: { const: 'join' },
      params: { type: 'object', required: ['room'], properties: { room: { type: 'string' } } }
    }
  }, 'the request is the JSON-RPC envelope around the params')
  t.same(messages['join.result'].payload.properties.result, { type: 'object', required: ['members'], properties: { members: { type: 'array', items: { type: 'string' } } } })
  const error = messages['join.error'].payload.properties.error
  t.same(error.oneOf.map((e: Doc) => e.properties.code), [{ enum: [-32700, -32600, -32601, -32602, -32603, -32800] }, { const: 1 }, { const: 2 }])
  t.same(error.oneOf[1].properties, { code: { const: 1 }, name: { const: 'room_full' }, message: { type: 'string' }, data: { type: 'object', required: ['capacity'], properties: { capacity: { type: 'integer' } } } })
  t.same(doc.operations['chat.request.leave']['x-app-errors'], [{ name: 'banned', code: 2 }], 'one name, one code across the route, as the server answers')
  t.same(messages.leave.payload.required, ['jsonrpc', 'id', 'method'], 'no params, none required')
  t.same(messages['leave.result'].payload.properties.result, {}, 'no result schema: any value')
  t.same(Object.keys(messages['history.error'].payload.properties.error.properties), ['code', 'message'], 'no app errors: the standard codes only')
  t.same(doc.operations['chat.cancel'].messages, [ref('cancelRequest')])
  t.same(messages.cancelRequest.payload.properties.method, { const: '$/cancelRequest' })

  const confirm = doc.operations['chat.call.confirm']
  t.same([confirm.action, confirm.messages, confirm.reply.messages], ['send', [ref('confirm')], [ref('confirm.result'), ref('confirm.error')]], 'a server call: a send operation and the client\'s reply')
  t.equal(confirm['x-app-errors'], undefined)
  t.same(doc.operations['chat.cancelCall'].messages, [ref('cancelRequest.sent')])
  t.same(Object.keys(doc.operations).filter(key => key.startsWith('chat.')), [
    'chat.receive', 'chat.send', 'chat.request.history', 'chat.request.join', 'chat.request.leave', 'chat.cancel', 'chat.call.confirm', 'chat.cancelCall'
  ])

  t.same(Object.keys(doc.operations).filter(key => key.startsWith('only.')), ['only.send', 'only.request.ping', 'only.cancel'])
  t.match(doc.channels.only['x-close-codes'].find((c: Doc) => c.code === 1003), { when: 'a binary message' }, 'text is JSON-RPC; only binary is refused')
})
