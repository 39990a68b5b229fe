// fastify-typed-websocket/asyncapi: the document of every websocket route, checked with
// @asyncapi/parser and field by field, and the routes that serve it.
import Module from 'node:module'
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { parse as parseYaml } from 'yaml'
import typedWebsocket from './helpers/plugin'
import asyncapi, { asyncapiErrors } from './helpers/asyncapi'

interface Teardown { teardown (fn: () => unknown): void }
type Doc = Record<string, any>

function open (): void {}
function message (): void {}

/** An app with both plugins; `routes` adds the routes. Closed at teardown. */
async function appWith (t: Teardown, routes: (app: FastifyInstance) => void, options: Record<string, unknown> = {}, plugin: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(typedWebsocket, plugin)
  await app.register(asyncapi, options)
  routes(app)
  await app.ready()
  return app
}

function names (doc: Doc, operation: string): string[] {
  return doc.operations[operation].messages.map((ref: { $ref: string }) => {
    const [, , channel, , key] = ref.$ref.split('/')
    return doc.channels[channel].messages[key].name
  })
}

t.test('the chat example: a valid document with its channel, messages and operations', async (t) => {
  const { buildChatServer } = require('../examples/chat/server.js')
  const app: FastifyInstance = await buildChatServer()
  t.teardown(() => app.close())
  await app.ready()
  const doc = app.asyncapi() as Doc
  t.same(await asyncapiErrors(doc), [])
  t.equal(doc.asyncapi, '3.0.0')
  t.equal(doc.info.title, 'Chat')
  t.same(Object.keys(doc.channels), ['chat_room', 'topic.rooms', 'topic.room-events'], 'the route and the two topics of the rooms')
  t.match(doc.channels['topic.rooms']['x-topic'], { name: 'rooms', history: 100, offsetField: 'id', presenceTtl: 15000 })
  t.same(Object.keys(doc.channels['topic.room-events'].messages), ['topic.room-events.presence', 'topic.room-events.typing'])
  const channel = doc.channels.chat_room
  t.equal(channel.address, '/chat/{room}')
  t.same(Object.keys(channel.parameters), ['room'])
  t.match(channel.bindings.ws, { method: 'GET', query: { type: 'object', required: ['token'], properties: { token: { type: 'string' } } } })
  t.same(names(doc, 'chat_room.receive'), ['say', 'typing'])
  t.same(names(doc, 'chat_room.send'), ['said', 'presence', 'typing', 'reset', 'error', 'heartbeatReply'])
  t.equal(doc.operations['chat_room.receive'].action, 'receive')
  t.equal(doc.operations['chat_room.send'].action, 'send')
  t.same(Object.keys(doc.operations).filter((id) => id.startsWith('chat_room.request.')), ['chat_room.request.history', 'chat_room.request.join'], 'the page\'s two calls')
  t.same(names(doc, 'chat_room.request.join'), ['join'])
  t.same(doc.operations['chat_room.request.join']['x-app-errors'], [{ name: 'room_full', code: 1 }])
  t.match(channel.messages['join.error'].payload.properties.error.oneOf[1], { title: 'room_full', properties: { code: { const: 1 }, data: { properties: { capacity: { type: 'integer' } } } } }, 'room_full and its data in the error reply')
  t.match(channel.messages.say.payload, { type: 'object', properties: { text: { type: 'string', maxLength: 500 } } })
  t.same(channel['x-close-codes'].map((c: { code: number }) => c.code), [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012])

  const json = await app.inject('/asyncapi/json')
  t.equal(json.statusCode, 200)
  t.same(json.json(), doc)
  const yaml = await app.inject('/asyncapi/yaml')
  t.match(yaml.headers['content-type'], /^application\/yaml/)
  t.same(parseYaml(yaml.body), doc, 'the YAML is the same document')
})

// A route that uses every feature the document describes.
const User = Type.Object({ name: Type.String(), avatar: Type.Optional(Type.String({ format: 'uri' })) }, { $id: 'User' })
const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), from: Type.Ref(User), text: Type.String() },
  { title: 'Said', description: 'A message somebody said in the room' })
const Inbound = Type.Union([
  Type.Object({ type: Type.Literal('say'), text: Type.String({ maxLength: 500 }) }, { title: 'Say', description: 'Say something to the room' }),
  Type.Object({ v: Type.Literal(2), type: Type.Literal('typing') }),
  Type.Union([Type.Object({ type: Type.Literal('error') }), Type.Object({ type: Type.Literal('error') }), Type.Object({ type: Type.Literal('error') })])
])
const Outbound = Type.Union([
  Said,
  Type.Object({ type: Type.Literal('error'), message: Type.String() }),
  Type.Object({ code: Type.Literal(7) }),
  Type.Object({ plain: Type.String() }, { title: 'Plain' }),
  Type.Object({ other: Type.Null() })
])
const Presence = Type.Object({ name: Type.String() })

async function everything (t: Teardown, options: Record<string, unknown> = {}): Promise<FastifyInstance> {
  return appWith(t, (app) => {
    app.addSchema(User)
    app.addSchema({ $id: 'http://example.com/node.json', type: 'object', properties: { next: { $ref: 'http://example.com/node.json#' }, tag: { $ref: 'User#/properties/name' } } })
    app.websocketTopic('rooms', { message: Said, history: 100, historyTtl: 600_000, offsetField: 'id', presence: Presence, presenceTtl: 30_000 })
    app.websocketTopic('ticks', { message: Type.Union([Type.Object({ type: Type.Literal('tick') }), Type.Object({ type: Type.Literal('tock') })]) })
    app.get('/rooms/:room/:id(^\\d+$)', {
      schema: {
        summary: 'A chat room',
        description: 'Join a room, say things, see who is typing.',
        params: Type.Object({
          room: Type.String({ description: 'The room\'s name', enum: ['lobby', 'games'], default: 'lobby', examples: ['lobby'] }),
          id: Type.Integer()
        }),
        querystring: Type.Object({ since: Type.Optional(Type.Integer({ description: undefined })), mode: Type.Union([Type.String(), Type.Null()]), tag: Type.Unsafe<string | null>({ type: ['string', 'null'] }) }),
        headers: Type.Object({ authorization: Type.String() })
      },
      websocket: {
        inbound: Inbound,
        outbound: Outbound,
        binary: true,
        heartbeat: true,
        pingInterval: 0,
        invalidMessage () {},
        message
      }
    }, open)
    app.get('/feed/*', { websocket: { inbound: Type.Object({ type: Type.Literal('more') }), outbound: { oneOf: [{ $ref: 'http://example.com/node.json' }, { type: 'string' }] }, validateOutbound: false, message } }, open)
    app.get('/a-b', { websocket: { message } }, open)
    app.get('/a_b', { websocket: true }, open)
    app.get('/', { websocket: true }, open)
    app.get('/hidden', { schema: { hide: true }, websocket: true }, open)
    app.get('/hidden-too', { hide: true, websocket: true } as never, open)
    app.get('/not-a-websocket', async () => 'hello')
    app.get('/not-either', { websocket: false } as never, async () => 'hello')
  }, { servers: { local: { host: '127.0.0.1:3000', protocol: 'ws' } }, ...options })
}

t.test('a route with every feature: a valid document, field by field', async (t) => {
  const app = await everything(t)
  const doc = app.asyncapi() as Doc
  t.same(await asyncapiErrors(doc), [])
  t.same(doc.info, { title: 'WebSocket API', version: '1.0.0' }, 'the default info')
  t.same(doc.servers, { local: { host: '127.0.0.1:3000', protocol: 'ws' } })
  t.same(Object.keys(doc.channels), ['rooms_room_id_d', 'feed', 'a_b', 'a_b_2', 'root', 'topic.rooms', 'topic.ticks'], 'hidden and plain routes are left out')

  const rooms = doc.channels.rooms_room_id_d
  t.equal(rooms.address, '/rooms/{room}/{id}')
  t.equal(rooms.summary, 'A chat room')
  t.equal(rooms.description, 'Join a room, say things, see who is typing.')
  t.same(rooms.parameters, { room: { description: 'The room\'s name', enum: ['lobby', 'games'], default: 'lobby', examples: ['lobby'] }, id: {} })
  t.same(rooms.bindings.ws.headers, { type: 'object', required: ['authorization'], properties: { authorization: { type: 'string' } } })
  t.same(rooms.bindings.ws.query.properties.since, { type: 'integer' }, 'undefined keywords are left out')
  t.same(rooms.bindings.ws.query.properties.mode, { anyOf: [{ type: 'string' }, { type: 'null' }] })
  t.same(rooms.bindings.ws.query.properties.tag, { type: ['string', 'null'] })
  t.equal(rooms.bindings.ws.bindingVersion, '0.1.0')

  t.same(names(doc, 'rooms_room_id_d.receive'), ['say', 'typing', 'error', 'error', 'error', 'binary'])
  t.same(Object.keys(rooms.messages), [
    '7', 'say', 'typing', 'error', 'error.received', 'error.received_2', 'binary',
    'said', 'error.sent', 'Plain', 'outbound5', 'heartbeat', 'heartbeatReply'
  ], 'one message per union branch, nested unions flattened, keys unique (an integer key comes first in JSON objects)')
  t.same(names(doc, 'rooms_room_id_d.send'), ['said', 'error', '7', 'Plain', 'outbound5', 'heartbeatReply'], 'the heartbeat reply is sent too')
  t.same(rooms.messages.say, {
    name: 'say',
    title: 'Say',
    description: 'Say something to the room',
    contentType: 'application/json',
    payload: { title: 'Say', description: 'Say something to the room', type: 'object', required: ['type', 'text'], properties: { type: { const: 'say', type: 'string' }, text: { maxLength: 500, type: 'string' } } }
  })
  t.equal(rooms.messages.typing.name, 'typing', 'named after the type literal, wherever it is')
  t.equal(rooms.messages.said.title, 'Said')
  t.same(rooms.messages.said.payload.properties.from, { $ref: '#/components/schemas/User' }, 'an added schema is moved to components')
  t.same(doc.components.schemas.User, { type: 'object', required: ['name'], properties: { name: { type: 'string' }, avatar: { format: 'uri', type: 'string' } } })
  t.same(doc.components.schemas['http_example.com_node.json'], {
    type: 'object', properties: { next: { $ref: '#/components/schemas/http_example.com_node.json' }, tag: { $ref: '#/components/schemas/User/properties/name' } }
  }, 'recursive references and fragments')
  t.same(rooms.messages.binary.contentType, 'application/octet-stream')

  const heartbeat = doc.operations['rooms_room_id_d.heartbeat']
  t.equal(heartbeat.action, 'receive')
  t.same(heartbeat.messages, [{ $ref: '#/channels/rooms_room_id_d/messages/heartbeat' }])
  t.same(heartbeat.reply, { channel: { $ref: '#/channels/rooms_room_id_d' }, messages: [{ $ref: '#/channels/rooms_room_id_d/messages/heartbeatReply' }] })
  t.same(rooms.messages.heartbeat.payload, { type: 'string', maxLength: 0 })

  const codes = (channel: Doc): Array<[number, string | undefined]> => channel['x-close-codes'].map((c: { code: number, reason?: string }) => [c.code, c.reason])
  t.same(codes(rooms), [[1001, 'server shutting down'], [1002, undefined], [1007, undefined], [1008, 'send buffer full'], [1009, 'message too big'], [1011, 'internal error'], [1012, 'missed messages']],
    'no keepalive, binary allowed, invalidMessage handled, topics in use')
  t.match(rooms['x-close-codes'][2].when, /^text that is not UTF-8$/)

  const feed = doc.channels.feed
  t.equal(feed.address, '/feed/{wildcard}')
  t.same(Object.keys(feed.parameters), ['wildcard'])
  t.same(feed.bindings.ws, { method: 'GET', bindingVersion: '0.1.0' })
  t.same(names(doc, 'feed.send'), ['outbound1', 'outbound2'], 'oneOf branches without literals or titles')
  t.same(Object.values(feed.messages).map((m) => (m as { title: string }).title).filter((title) => title.startsWith('outbound')), ['outbound1', 'outbound2'], 'an untitled message is titled with its name')
  t.equal(doc.components.messages['topic.rooms.said'].title, 'Said', 'a schema title stays')
  t.same(codes(feed).map(([code]) => code), [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012])
  t.match(feed['x-close-codes'][3], { reason: 'binary messages are not accepted' })
  t.match(feed['x-close-codes'][4].when, /does not match the inbound schema/)
  t.match(feed['x-close-codes'][0], { reason: 'ping timed out', when: 'no pong within 30000 ms of a ping (sent every 30000 ms)' })

  t.same(names(doc, 'a_b.receive'), ['text', 'binary'], 'a message hook without inbound takes text and binary')
  t.same(names(doc, 'a_b.send'), ['json'])
  t.equal(doc.operations['a_b_2.receive'], undefined, 'a push-only route receives nothing')
  t.match(doc.channels.a_b_2['x-close-codes'][3], { code: 1003, reason: 'this endpoint accepts no messages' })
  t.equal(doc.channels.root.address, '/')
  t.equal(doc.channels.root.parameters, undefined)

  const topic = doc.channels['topic.rooms']
  t.equal(topic.address, null)
  t.same(topic.messages, { 'topic.rooms.said': { $ref: '#/components/messages/topic.rooms.said' } })
  t.same(topic['x-topic'], { name: 'rooms', history: 100, historyTtl: 600_000, offsetField: 'id', presence: { type: 'object', required: ['name'], properties: { name: { type: 'string' } } }, presenceTtl: 30_000 })
  t.equal(doc.components.messages['topic.rooms.said'].title, 'Said')
  t.same(doc.operations['topic.rooms.send'], {
    action: 'send', channel: { $ref: '#/channels/topic.rooms' }, summary: 'Messages published to topic rooms', messages: [{ $ref: '#/channels/topic.rooms/messages/topic.rooms.said' }]
  })
  t.same(doc.channels['topic.ticks']['x-topic'], { name: 'ticks', history: 0, historyTtl: 600_000, presenceTtl: 30_000 })
  t.same(Object.keys(doc.channels['topic.ticks'].messages), ['topic.ticks.tick', 'topic.ticks.tock'])

  t.equal(app.asyncapi(), doc, 'built once, when the app is ready')
  const yaml = await app.inject('/asyncapi/yaml')
  t.same(parseYaml(yaml.body), doc)
  t.same(await asyncapiErrors(parseYaml(yaml.body)), [], 'the YAML validates too')
})

t.test('transform changes the document before it is served; info and a prefix', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(typedWebsocket)
  await app.register(async (child) => {
    await child.register(asyncapi, {
      info: { title: 'Docs <&> "quoted"', version: '2.1.0', description: 'Everything' },
      routePrefix: '/spec',
      transform: (document) => ({ ...document, info: { ...document.info, 'x-audience': 'partners' } })
    })
    child.get('/live', { websocket: true }, open)
  }, { prefix: '/v2' })
  t.same((app.asyncapi as unknown), undefined, 'decorated in its own context only')
  await app.ready()
  const json = await app.inject('/v2/spec/json')
  t.same(json.json().info, { title: 'Docs <&> "quoted"', version: '2.1.0', description: 'Everything', 'x-audience': 'partners' })
  t.equal(json.json().channels.v2_live.address, '/v2/live')
  const page = await app.inject('/v2/spec')
  t.equal(page.statusCode, 200)
  t.match(page.body, '<title>Docs &#60;&#38;&#62; &#34;quoted&#34;</title>')
  t.match(page.body, '<script src="/v2/spec/static/standalone.js"></script>')
  t.match(page.body, '<link rel="stylesheet" href="/v2/spec/static/default.min.css">')
  const init = await app.inject('/v2/spec/static/init.js')
  t.match(init.body, 'url: "/v2/spec/json"')
})

t.test('before the app is ready, app.asyncapi() builds the document from the routes so far, with the plugin\'s options', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(typedWebsocket, { heartbeat: true })
  await app.register(asyncapi)
  app.get('/early', { websocket: true }, open)
  const doc = app.asyncapi() as Doc
  t.same(Object.keys(doc.channels), ['early'])
  t.same(Object.keys(doc.operations), ['early.heartbeat', 'early.send'], 'heartbeat set for every route by the plugin')
})

t.test('the page, its script and styles: local files, a CSP that allows only this origin', async (t) => {
  const app = await everything(t)
  const page = await app.inject('/asyncapi')
  t.equal(page.statusCode, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  t.match(page.headers['content-security-policy'], /script-src 'self' 'unsafe-eval'; style-src 'self'/)
  t.notMatch(page.body, /https?:/, 'nothing from another origin')
  t.notMatch(page.body, /<script>/, 'no inline script')
  for (let i = 0; i < 2; i++) {
    const script = await app.inject('/asyncapi/static/standalone.js')
    t.equal(script.statusCode, 200)
    t.match(script.headers['content-type'], /^text\/javascript/)
    t.match(script.body, 'AsyncApiStandalone')
  }
  const style = await app.inject('/asyncapi/static/default.min.css')
  t.match(style.headers['content-type'], /^text\/css/)
  t.ok(style.body.length > 1000)
  const init = await app.inject('/asyncapi/static/init.js')
  t.match(init.body, 'AsyncApiStandalone.render(')
  t.match(init.body, 'url: "/asyncapi/json"')
})

t.test('without @asyncapi/react-component the page answers 501 saying what to install; JSON and YAML still work', async (t) => {
  const resolver = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string }
  const original = resolver._resolveFilename
  resolver._resolveFilename = function (request: string, ...rest: unknown[]) {
    if (request.startsWith('@asyncapi/react-component')) throw Object.assign(new Error(`Cannot find module '${request}'`), { code: 'MODULE_NOT_FOUND' })
    return original.call(this, request, ...rest)
  }
  let app
  try {
    app = await appWith(t, (app) => { app.get('/live', { websocket: true }, open) })
  } finally {
    resolver._resolveFilename = original
  }
  const page = await app.inject('/asyncapi')
  t.equal(page.statusCode, 501)
  t.match(page.body, 'npm install @asyncapi/react-component')
  t.match(page.body, '/asyncapi/json')
  t.equal((await app.inject('/asyncapi/static/standalone.js')).statusCode, 404)
  t.equal((await app.inject('/asyncapi/json')).json().channels.live.address, '/live')
  t.equal((await app.inject('/asyncapi/yaml')).statusCode, 200)
})

/** The error app.ready() fails with. */
async function readyError (t: Teardown, routes: (app: FastifyInstance) => void, options: Record<string, unknown> = {}): Promise<Error & { code?: string }> {
  const app = Fastify()
  t.teardown(() => app.close().catch(() => {}))
  try {
    await app.register(typedWebsocket)
    await app.register(asyncapi, options)
    routes(app)
    await app.ready()
  } catch (err) {
    return err as Error & { code?: string }
  }
  throw new Error('app.ready() succeeded')
}

t.test('TypeBox kinds that JSON cannot hold fail app.ready() with an error naming the route or topic', async (t) => {
  // Validators that accept TypeBox's own kinds (TypeBox's compiler does) let such schemas through Fastify.
  const lenient = (app: FastifyInstance): void => { app.setValidatorCompiler(() => () => true) }
  const kinds: Array<[string, unknown, string]> = [
    ['Date', Type.Date(), 'Date'], ['Uint8Array', Type.Uint8Array(), 'Uint8Array'],
    ['Function', Type.Function([], Type.String()), 'Function'], ['Undefined', Type.Undefined(), 'undefined']
  ]
  for (const [what, kind, type] of kinds) {
    const err = await readyError(t, (app) => {
      lenient(app)
      app.get('/rooms/:room', { schema: { headers: Type.Object({ 'x-since': kind as never }) }, websocket: true }, open)
    })
    t.equal(err.code, 'FST_WS_ASYNCAPI_SCHEMA', what)
    t.equal(err.message, `Route "/rooms/:room": the headers schema cannot be described in AsyncAPI: /properties/x-since is of type "${type}", which JSON has no value for`, what)
  }
  const query = await readyError(t, (app) => {
    lenient(app)
    app.get('/q', { schema: { querystring: Type.Date() }, websocket: true }, open)
  })
  t.equal(query.message, 'Route "/q": the querystring schema cannot be described in AsyncAPI: the schema is of type "Date", which JSON has no value for')
  const topic = await readyError(t, (app) => {
    app.websocketTopic('clock', { message: Type.Object({ at: Type.Date() }) })
  })
  // The topic's own validator refuses the schema first, naming the topic.
  t.match(topic.message, /^Topic "clock": the schema does not compile: /)
  const shared = await readyError(t, (app) => {
    lenient(app)
    app.addSchema({ $id: 'When', type: 'object', properties: { at: Type.Date() } })
    app.get('/w', { schema: { headers: { $ref: 'When' } }, websocket: true }, open)
  })
  t.equal(shared.message, 'Route "/w": the "When" schema cannot be described in AsyncAPI: /properties/at is of type "Date", which JSON has no value for')
  const local = await readyError(t, (app) => {
    app.websocketTopic('t', { message: { $defs: { a: { type: 'string' } }, $ref: '#/$defs/a' } as never })
  })
  t.equal(local.message, 'Topic "t": the message schema cannot be described in AsyncAPI: $ref "#/$defs/a" names no schema added with app.addSchema() (local references cannot be moved into the document)')
})

t.test('broken options fail registration with FST_WS_INVALID_OPTION', async (t) => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ info: 'Chat' }, 'info must be an object'],
    [{ info: null }, 'info must be an object'],
    [{ info: [] }, 'info must be an object'],
    [{ servers: [] }, 'servers must be an object of AsyncAPI server objects, by name'],
    [{ servers: null }, 'servers must be an object of AsyncAPI server objects, by name'],
    [{ routePrefix: 'docs' }, 'routePrefix must be a path like "/asyncapi", got "docs"'],
    [{ routePrefix: '/docs/' }, 'routePrefix must be a path like "/asyncapi", got "/docs/"'],
    [{ routePrefix: 1 }, 'routePrefix must be a path like "/asyncapi", got 1'],
    [{ transform: {} }, 'transform must be a function']
  ]
  for (const [options, message] of cases) {
    const err = await readyError(t, () => {}, options)
    t.equal(err.code, 'FST_WS_INVALID_OPTION')
    t.equal(err.message, `fastify-typed-websocket/asyncapi options: ${message}`)
  }
})

t.test('registered without the core plugin, it says which plugin it needs', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close().catch(() => {}))
  await t.rejects(async () => { await app.register(asyncapi) }, /fastify-typed-websocket/)
})

t.test('ESM and CommonJS both get the plugin', async (t) => {
  t.equal(asyncapi.default, asyncapi)
  t.equal(asyncapi.fastifyTypedWebsocketAsyncapi, asyncapi)
  const built = await import('fastify-typed-websocket/asyncapi')
  t.equal(typeof built.default, 'function')
})
