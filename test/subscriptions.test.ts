import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { Topic } from 'fastify-typed-websocket'
import { startServer, connect, until, deferred, sleep } from './helpers/server'
import { RawPeer, type Envelope } from './helpers/jsonrpc'
import { MemoryBroker } from '../plugin/memory-broker'
import type { BrokerTopic } from '../plugin/broker'

/** The in-memory broker, whose subscribe fails for key "down", and for key "slow" once `gate` resolves. */
class FailingBroker extends MemoryBroker {
  readonly gate = deferred()
  override async subscribe (topic: BrokerTopic, key: string): ReturnType<MemoryBroker['subscribe']> {
    if (key === 'slow') await this.gate.promise
    if (key === 'down' || key === 'slow') throw new Error('broker down')
    return await super.subscribe(topic, key)
  }
}

const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), text: Type.String() })
const Member = Type.Object({ name: Type.String() })
type Rooms = Topic<{ type: 'said', id: number, text: string }, 'id', { name: string }, 'rooms'>

/** A `/live` route whose clients may subscribe to `rooms` (not to key "staff") and `prices`. */
async function liveServer (t: Test, options: { maxSubscriptions?: number, history?: number } = {}) {
  const setup = { rooms: undefined as unknown as Rooms, frames: 0 }
  const server = await startServer(t, (app: FastifyInstance) => {
    const rooms = setup.rooms = app.websocketTopic('rooms', { message: Said, history: options.history ?? 10, offsetField: 'id', presence: Member })
    const prices = app.websocketTopic('prices', { message: Type.Number() })
    app.get('/live', {
      websocket: {
        maxSubscriptions: options.maxSubscriptions,
        subscriptions: {
          rooms: {
            topic: rooms,
            authorize: async (_socket, key) => key !== 'staff',
            presence: (socket) => ({ name: (socket.request.query as { name?: string }).name ?? 'anon' })
          },
          prices: { topic: prices }
        }
      }
    }, () => {})
  })
  return { ...server, setup }
}

async function peerOf (url: string): Promise<RawPeer> {
  const ws = await connect(url)
  t.teardown(() => ws.terminate())
  return new RawPeer(ws)
}

function deliveries (peer: RawPeer): Envelope[] {
  return peer.received.filter(m => m.method === '$/message')
}

t.test('$/subscribe answers a position and $/message delivers each publish in order', async (t) => {
  const { url, setup } = await liveServer(t)
  const peer = await peerOf(url('/live'))
  const answer = await peer.ask(1, '$/subscribe', { topic: 'rooms', key: 'lobby' })
  t.match(answer, { jsonrpc: '2.0', id: 1, result: { offset: 0, recovered: false } })
  t.type((answer.result as { epoch: unknown }).epoch, 'string')
  await setup.rooms.publish('lobby', { type: 'said', text: 'a' })
  await setup.rooms.publish('lobby', { type: 'said', text: 'b' })
  await setup.rooms.publish('other', { type: 'said', text: 'elsewhere' })
  await until(() => deliveries(peer).length === 2)
  t.same(deliveries(peer), [
    { jsonrpc: '2.0', method: '$/message', params: { topic: 'rooms', key: 'lobby', offset: 1, data: { id: 1, type: 'said', text: 'a' } } },
    { jsonrpc: '2.0', method: '$/message', params: { topic: 'rooms', key: 'lobby', offset: 2, data: { id: 2, type: 'said', text: 'b' } } }
  ])
})

t.test('$/subscribe with since replays what history holds, then live messages', async (t) => {
  const { url, setup } = await liveServer(t)
  for (const text of ['a', 'b', 'c']) await setup.rooms.publish('lobby', { type: 'said', text })
  const peer = await peerOf(url('/live'))
  const answer = await peer.ask(1, '$/subscribe', { topic: 'rooms', key: 'lobby', since: { epoch: '', offset: 1 } })
  t.match(answer.result, { offset: 3, recovered: true })
  await setup.rooms.publish('lobby', { type: 'said', text: 'd' })
  await until(() => deliveries(peer).length === 3)
  t.same(deliveries(peer).map(m => (m.params as { offset: number }).offset), [2, 3, 4])
})

t.test('refusals are answers and the socket stays open', async (t) => {
  const { url, setup } = await liveServer(t, { maxSubscriptions: 2 })
  const peer = await peerOf(url('/live'))
  const forbidden = await peer.ask(1, '$/subscribe', { topic: 'rooms', key: 'staff' })
  t.match(forbidden.error, { code: 403, name: 'forbidden' })
  const unknown = await peer.ask(2, '$/subscribe', { topic: 'nope', key: 'x' })
  t.match(unknown.error, { code: -32602, message: /unknown topic "nope"/ })
  const badKey = await peer.ask(3, '$/subscribe', { topic: 'rooms', key: '' })
  t.match(badKey.error, { code: -32602, message: /non-empty string/ })
  const noTopic = await peer.ask(4, '$/subscribe', { key: 'x' })
  t.match(noTopic.error, { code: -32602, message: /topic must be a string/ })
  const badSince = await peer.ask(5, '$/subscribe', { topic: 'rooms', key: 'x', since: 'soon' })
  t.match(badSince.error, { code: -32602, message: /since must be/ })
  t.match((await peer.ask(6, '$/subscribe', { topic: 'rooms', key: 'a', since: 0 })).result, { recovered: true })
  t.match((await peer.ask(7, '$/subscribe', { topic: 'prices', key: 'b', since: ':0' })).result, { recovered: true })
  const again = await peer.ask(8, '$/subscribe', { topic: 'rooms', key: 'a' })
  t.match(again.error, { code: -32602, message: /already subscribed/ })
  const third = await peer.ask(9, '$/subscribe', { topic: 'rooms', key: 'c' })
  t.match(third.error, { code: -32602, message: /more than maxSubscriptions \(2\)/ })
  t.same((await peer.ask(10, '$/unsubscribe', { topic: 'rooms', key: 'a' })).result, null)
  t.match((await peer.ask(11, '$/subscribe', { topic: 'rooms', key: 'c' })).result, { recovered: false })
  t.equal(peer.ws.readyState, peer.ws.OPEN)
  t.equal(setup.rooms.subscribers('staff').size, 0)
})

t.test('$/unsubscribe stops the deliveries of its key only', async (t) => {
  const { url, setup } = await liveServer(t)
  const peer = await peerOf(url('/live'))
  await peer.ask(1, '$/subscribe', { topic: 'rooms', key: 'a' })
  await peer.ask(2, '$/subscribe', { topic: 'rooms', key: 'b' })
  t.same((await peer.ask(3, '$/unsubscribe', { topic: 'rooms', key: 'a' })).result, null)
  t.same((await peer.ask(4, '$/unsubscribe', { topic: 'rooms', key: 'a' })).result, null, 'unsubscribing twice is no error')
  await setup.rooms.publish('a', { type: 'said', text: 'gone' })
  await setup.rooms.publish('b', { type: 'said', text: 'kept' })
  await until(() => deliveries(peer).length === 1)
  t.match(deliveries(peer)[0].params, { key: 'b', offset: 1 })
  t.equal(setup.rooms.subscribers('a').size, 0)
})

t.test('$/presence lists the members of a key the socket is subscribed to', async (t) => {
  const { url } = await liveServer(t)
  const ann = await peerOf(url('/live?name=ann'))
  const bob = await peerOf(url('/live?name=bob'))
  await ann.ask(1, '$/subscribe', { topic: 'rooms', key: 'lobby' })
  await bob.ask(1, '$/subscribe', { topic: 'rooms', key: 'lobby' })
  const members = await ann.ask(2, '$/presence', { topic: 'rooms', key: 'lobby' })
  t.same((members.result as Array<{ name: string }>).map(m => m.name).sort(), ['ann', 'bob'])
  const outside = await ann.ask(3, '$/presence', { topic: 'rooms', key: 'elsewhere' })
  t.match(outside.error, { code: -32602, message: /not subscribed/ })
})

t.test('one $/message frame is built for every client subscriber of a key, beside server-driven subscribers', async (t) => {
  let built = 0
  const original = Buffer.concat
  const server = await liveServer(t)
  const peers = await Promise.all([1, 2, 3].map(() => peerOf(server.url('/live'))))
  for (const [i, peer] of peers.entries()) await peer.ask(i, '$/subscribe', { topic: 'rooms', key: 'lobby' })
  // buildFrame concatenates the frame's parts once per frame it builds.
  Buffer.concat = function (...args: Parameters<typeof original>) {
    built++
    return original.apply(Buffer, args)
  } as typeof original
  try {
    await server.setup.rooms.publish('lobby', { type: 'said', text: 'once' })
    await until(() => peers.every(p => deliveries(p).length === 1))
  } finally {
    Buffer.concat = original
  }
  t.ok(built <= 2, `frames built: ${built}`)
  const texts = peers.map(p => JSON.stringify(deliveries(p)[0]))
  t.equal(new Set(texts).size, 1)
})

t.test('a route with subscriptions checks them at ready()', async (t) => {
  const cases: Array<[string, (app: FastifyInstance) => unknown, RegExp]> = [
    ['not an object', () => 'rooms', /subscriptions must be an object/],
    ['an entry not an object', () => ({ rooms: 1 }), /subscriptions.rooms must be an object/],
    ['an unknown key', (app) => ({ rooms: { topic: app.websocketTopic('rooms', { message: Said }), lobby: true } }), /unknown key "lobby"/],
    ['no topic', () => ({ rooms: {} }), /must be a topic declared/],
    ['another name', (app) => ({ lobby: { topic: app.websocketTopic('rooms', { message: Said }) } }), /entry's name must be its topic's name/],
    ['authorize not a function', (app) => ({ rooms: { topic: app.websocketTopic('rooms', { message: Said }), authorize: true } }), /authorize must be a function/],
    ['presence without a schema', (app) => ({ rooms: { topic: app.websocketTopic('rooms', { message: Said }), presence: () => ({}) } }), /declares no presence schema/]
  ]
  for (const [what, subscriptions, message] of cases) {
    await t.test(what, async (t) => {
      await t.rejects(startServer(t, (app) => {
        app.get('/live', { websocket: { subscriptions: subscriptions(app) as never } }, () => {})
      }), { code: 'FST_WS_INVALID_OPTION', message })
    })
  }
  await t.rejects(startServer(t, (app) => {
    app.get('/live', { websocket: { maxSubscriptions: 0 } }, () => {})
  }), { code: 'FST_WS_INVALID_OPTION', message: /maxSubscriptions must be an integer >= 1/ })
})

t.test('a subscribe the broker fails is answered -32603 and logged, counts for nothing, and the socket stays open', async (t) => {
  const broker = new FailingBroker()
  const server = await startServer(t, (app: FastifyInstance) => {
    const rooms = app.websocketTopic('rooms', { message: Said })
    app.get('/live', { websocket: { maxSubscriptions: 1, subscriptions: { rooms: { topic: rooms } } } }, () => {})
  }, { plugin: { broker } })
  const peer = await peerOf(server.url('/live'))
  const failed = await peer.ask(1, '$/subscribe', { topic: 'rooms', key: 'down' })
  t.match(failed.error, { code: -32603, message: 'Internal error' })
  t.ok(server.logs.some(l => l.msg === 'websocket subscription failed'), 'logged')
  t.match((await peer.ask(2, '$/subscribe', { topic: 'rooms', key: 'up' })).result, { recovered: false }, 'the failed one did not count')
  const none = await peer.ask(3, '$/subscribe')
  t.match(none.error, { code: -32602, message: /topic must be a string/ })
  const gone = await peerOf(server.url('/live'))
  gone.send({ jsonrpc: '2.0', id: 1, method: '$/subscribe', params: { topic: 'rooms', key: 'slow' } })
  await until(() => server.app.websocketClients.size === 2)
  gone.ws.terminate()
  await until(() => server.app.websocketClients.size === 1)
  broker.gate.resolve()
  // (The rejection settles within microtasks of the gate; a few ms is ample.)
  await sleep(20)
  t.equal(server.logs.filter(l => l.msg === 'websocket subscription failed').length, 1, 'nothing logged for a socket that is gone')
})
