// Topics on the in-memory broker: a live message while a subscriber is still replaying
// history, app.close() with sockets of another app still subscribed, a broker that
// delivers more than it should, and except on a topic without offsets.
import t from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import type { Topic, TypedWebSocket } from 'fastify-typed-websocket'
import typedWebsocket from './helpers/plugin'
import { MemoryBroker } from '../plugin/memory-broker'
import type { BrokerEntry, BrokerMessage, BrokerSink, BrokerTopic } from '../plugin/broker'
import { startServer, messages, deferred } from './helpers/server'

const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), text: Type.String() })
const Member = Type.Object({ name: Type.String() })

type Rooms = Topic<{ type: 'said', id: number, text: string }, 'id', { name: string }>
type Gate = ReturnType<typeof deferred<void>>

/** The in-memory broker, whose history answers only when the test lets it: as a slow network would. */
class SlowHistory extends MemoryBroker {
  held: { reached: Gate, go: Gate } | undefined

  override async history (topic: BrokerTopic, key: string, options: { since?: number, limit?: number }): Promise<BrokerEntry[]> {
    const entries = await super.history(topic, key, options)
    const held = this.held
    if (held !== undefined) {
      held.reached.resolve()
      await held.go.promise
    }
    return entries
  }
}

const said = (text: string) => ({ type: 'said' as const, text })

t.test('a message published while a subscriber replays history comes after the replay, once', async (t) => {
  const broker = new SlowHistory()
  let rooms = undefined as unknown as Rooms
  const server = await startServer(t, (app: FastifyInstance) => {
    rooms = app.websocketTopic('rooms', { message: Said, history: 10, offsetField: 'id' })
    app.get('/room', { websocket: { outbound: Said } }, async (socket, request) => {
      const since = (request.query as { since?: string }).since
      const result = await rooms.subscribe(socket, 'lobby', { since: since === undefined ? undefined : Number(since) })
      await socket.send(JSON.stringify({ subscribed: result }))
    })
  }, { plugin: { broker } })
  const live = new WebSocket(server.url('/room'))
  await messages(live, 1)
  const toLive = messages(live, 5)
  for (const text of ['one', 'two', 'three']) await rooms.publish('lobby', said(text))
  broker.held = { reached: deferred(), go: deferred() }
  const late = new WebSocket(server.url('/room?since=1'))
  const toLate = messages(late, 5)
  await broker.held.reached.promise
  // The replay (2, 3) is read but not sent yet: 4 is live, and must wait behind it.
  t.same(await rooms.publish('lobby', said('four')), { offset: 4 })
  broker.held.go.resolve()
  broker.held = undefined
  await messages(late, 4)
  await rooms.publish('lobby', said('five'))
  t.same((await toLate).map((m) => JSON.parse(m as string)), [
    { id: 2, type: 'said', text: 'two' },
    { id: 3, type: 'said', text: 'three' },
    { id: 4, type: 'said', text: 'four' },
    { subscribed: { offset: 3, recovered: true } },
    { id: 5, type: 'said', text: 'five' }
  ], 'history first, then the live message that came meanwhile, then what follows: no gap, no duplicate')
  t.same((await toLive).map((m) => JSON.parse(m as string).id), [1, 2, 3, 4, 5], 'the live subscriber is not held up')
  live.close()
  late.close()
})

t.test('app.close() unsubscribes every socket, even those of another app', async (t) => {
  const home = Fastify()
  await home.register(typedWebsocket)
  const rooms: Rooms = home.websocketTopic('rooms', { message: Said, history: 10, offsetField: 'id', presence: Member })
  await home.ready()
  const sockets: TypedWebSocket[] = []
  const server = await startServer(t, (app: FastifyInstance) => {
    app.get('/room', { websocket: { outbound: Said } }, async (socket, request) => {
      sockets.push(socket)
      await rooms.subscribe(socket, (request.query as { room: string }).room, { presence: { name: 'guest' } })
      await socket.send(JSON.stringify({ subscribed: true }))
    })
  })
  const clients = [new WebSocket(server.url('/room?room=a')), new WebSocket(server.url('/room?room=b'))]
  await Promise.all(clients.map((ws) => messages(ws, 1)))
  t.equal(rooms.subscribers('a').size + rooms.subscribers('b').size, 2)
  t.same(await rooms.presence('a'), [{ name: 'guest' }])
  await home.close()
  t.equal(rooms.subscribers('a').size + rooms.subscribers('b').size, 0, 'the topic has no subscribers left')
  await t.rejects(rooms.publish('a', said('after')), { code: 'FST_WS_BROKER_UNAVAILABLE', message: /closed/ })
  // The sockets belong to the other app, which is still running: they stay open.
  const echo = messages(clients[0], 1)
  await sockets[0].send(JSON.stringify({ still: 'open' }))
  t.same(JSON.parse((await echo)[0] as string), { still: 'open' })
  for (const ws of clients) ws.close()
})

/** A broker that delivers every message twice, and to keys this node has no subscriber for: as an at-least-once, broadcast-everything broker would. */
class LooseBroker extends MemoryBroker {
  sink: BrokerSink | undefined

  override async start (sink: BrokerSink): Promise<void> {
    this.sink = sink
    await super.start(sink)
  }

  override async publish (topic: BrokerTopic, key: string, message: BrokerMessage): Promise<number> {
    const offset = await super.publish(topic, key, message)
    const data = message.head === undefined ? message.body : message.head + offset + message.body
    this.sink?.deliver(topic.name, key, { offset, data })
    return offset
  }
}

t.test('a broker that delivers twice and everywhere: each subscriber still gets each message once', async (t) => {
  let rooms = undefined as unknown as Rooms
  const server = await startServer(t, (app: FastifyInstance) => {
    rooms = app.websocketTopic('rooms', { message: Said, offsetField: 'id' })
    app.get('/room', { websocket: { outbound: Said } }, async (socket) => {
      await rooms.subscribe(socket, 'lobby')
      await socket.send(JSON.stringify({ subscribed: true }))
    })
  }, { plugin: { broker: new LooseBroker() } })
  const ws = new WebSocket(server.url('/room'))
  await messages(ws, 1)
  const got = messages(ws, 3)
  await rooms.publish('elsewhere', said('for a key nobody here holds'))
  for (const text of ['one', 'two', 'three']) await rooms.publish('lobby', said(text))
  t.same((await got).map((m) => JSON.parse(m as string).id), [1, 2, 3], 'once each, in order')
  const more = messages(ws, 1)
  await rooms.publish('lobby', said('four'))
  t.equal(JSON.parse((await more)[0] as string).id, 4, 'the second copy of 3 was dropped, not queued')
  ws.close()
})

t.test('except on a topic without offsetField skips only that socket', async (t) => {
  const Note = Type.Object({ text: Type.String() })
  let notes = undefined as unknown as Topic<{ text: string }>
  const sockets: TypedWebSocket[] = []
  const server = await startServer(t, (app: FastifyInstance) => {
    notes = app.websocketTopic('notes', { message: Note })
    app.get('/notes', { websocket: true }, async (socket) => {
      sockets.push(socket)
      await notes.subscribe(socket, 'k')
      await socket.send('subscribed')
    })
  })
  const a = new WebSocket(server.url('/notes'))
  await messages(a, 1)
  const b = new WebSocket(server.url('/notes'))
  await messages(b, 1)
  const toA = messages(a, 1)
  const toB = messages(b, 2)
  await notes.publish('k', { text: 'from a' }, { except: sockets[0] })
  await notes.publish('k', { text: 'for all' })
  t.same(await toA, ['{"text":"for all"}'], 'a does not get its own message')
  t.same(await toB, ['{"text":"from a"}', '{"text":"for all"}'])
  a.close()
  b.close()
})

/** A broker through which another node publishes the same text just before this node's publish fails. */
class SameTextElsewhere extends MemoryBroker {
  failNext = false
  override async publish (topic: BrokerTopic, key: string, message: BrokerMessage): Promise<number> {
    if (!this.failNext) return super.publish(topic, key, message)
    this.failNext = false
    await super.publish(topic, key, { head: message.head, body: message.body })
    throw new Error('the broker refused this publish')
  }
}

t.test('except skips only its own publish: the same text from another node reaches the excepted socket', async (t) => {
  const Note = Type.Object({ text: Type.String() })
  const broker = new SameTextElsewhere()
  let notes = undefined as unknown as Topic<{ text: string }>
  const sockets: TypedWebSocket[] = []
  const server = await startServer(t, (app: FastifyInstance) => {
    notes = app.websocketTopic('notes', { message: Note })
    app.get('/notes', { websocket: true }, async (socket) => {
      sockets.push(socket)
      await notes.subscribe(socket, 'k')
      await socket.send('subscribed')
    })
  }, { plugin: { broker } })
  const a = new WebSocket(server.url('/notes'))
  await messages(a, 1)
  const b = new WebSocket(server.url('/notes'))
  await messages(b, 1)
  const toA = messages(a, 2)
  const toB = messages(b, 2)
  broker.failNext = true
  await t.rejects(notes.publish('k', { text: 'hi' }, { except: sockets[0] }), /refused/)
  await notes.publish('k', { text: 'after' })
  t.same(await toA, ['{"text":"hi"}', '{"text":"after"}'], 'the identical message from another node was not the one a published')
  t.same(await toB, ['{"text":"hi"}', '{"text":"after"}'])
  a.close()
  b.close()
})

t.test('except on a key without local subscribers keeps nothing', async (t) => {
  const Note = Type.Object({ text: Type.String() })
  const broker = new MemoryBroker()
  let notes = undefined as unknown as Topic<{ text: string }>
  const sockets: TypedWebSocket[] = []
  const server = await startServer(t, (app: FastifyInstance) => {
    notes = app.websocketTopic('notes', { message: Note, historyTtl: 30 })
    app.get('/notes', { websocket: true }, async (socket) => {
      sockets.push(socket)
      await notes.subscribe(socket, 'k')
      await socket.send('subscribed')
    })
  }, { plugin: { broker } })
  const a = new WebSocket(server.url('/notes'))
  await messages(a, 1)
  // a is on 'k'; 'elsewhere' has no local subscriber: nothing there to skip, nothing to hold.
  for (let i = 0; i < 1000; i++) await notes.publish(`elsewhere-${i}`, { text: 'x' }, { except: sockets[0] })
  const toA = messages(a, 1)
  await notes.publish('k', { text: 'for a' })
  t.same(await toA, ['{"text":"for a"}'])
  a.close()
  await new Promise(resolve => setTimeout(resolve, 100))
  t.ok(broker.size <= 1, `idle keys dropped (left: ${broker.size})`)
})

/** A broker of its own making: its deliveries carry no tag, and come before the answer, after it, or never. */
class UntaggedBroker extends MemoryBroker {
  mode: 'after' | 'before' | 'never' = 'after'
  #sink: BrokerSink | undefined
  override async start (sink: BrokerSink): Promise<void> {
    this.#sink = sink
    await super.start({ deliver: () => {}, lost: () => {} })
  }

  override async publish (topic: BrokerTopic, key: string, message: BrokerMessage): Promise<number> {
    const offset = await super.publish(topic, key, { head: message.head, body: message.body })
    const entry = { offset, data: message.head === undefined ? message.body : message.head + offset + message.body }
    const sink = this.#sink as BrokerSink
    if (this.mode === 'before') sink.deliver(topic.name, key, entry)
    else if (this.mode === 'after') setImmediate(() => sink.deliver(topic.name, key, entry))
    return offset
  }
}

t.test('a broker without tags: except is matched by offset once known; a delivery it cannot place goes to every socket', async (t) => {
  const Note = Type.Object({ text: Type.String() })
  const broker = new UntaggedBroker()
  let notes = undefined as unknown as Topic<{ text: string }>
  const sockets: TypedWebSocket[] = []
  const server = await startServer(t, (app: FastifyInstance) => {
    notes = app.websocketTopic('notes', { message: Note })
    app.get('/notes', { websocket: true }, async (socket) => {
      sockets.push(socket)
      await notes.subscribe(socket, 'k')
      await socket.send('subscribed')
    })
  }, { plugin: { broker } })
  const a = new WebSocket(server.url('/notes'))
  await messages(a, 1)
  const b = new WebSocket(server.url('/notes'))
  await messages(b, 1)
  const toA = messages(a, 3)
  const toB = messages(b, 4)
  await notes.publish('k', { text: 'late, by offset' }, { except: sockets[0] })
  // (In offset order, as the broker contract asks: the late delivery before the next publish.)
  await new Promise(resolve => setImmediate(resolve))
  broker.mode = 'before'
  await notes.publish('k', { text: 'early, untagged' }, { except: sockets[0] })
  broker.mode = 'never'
  await notes.publish('k', { text: 'never delivered' }, { except: sockets[0] })
  broker.mode = 'after'
  await notes.publish('k', { text: 'next' })
  await notes.publish('k', { text: 'last' })
  t.same((await toA).map(m => JSON.parse(m as string).text), ['early, untagged', 'next', 'last'],
    'skipped by offset; an untagged early delivery is not skipped; an exception never delivered is dropped when the next passes')
  t.same((await toB).map(m => JSON.parse(m as string).text), ['late, by offset', 'early, untagged', 'next', 'last'], 'b gets every message that was delivered')
  a.close()
  b.close()
})
