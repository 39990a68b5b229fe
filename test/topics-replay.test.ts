// Topics on the in-memory broker: a live message while a subscriber is still replaying
// history, and app.close() with sockets of another app still subscribed.
import t from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import type { Topic, TypedWebSocket } from 'fastify-typed-websocket'
import typedWebsocket from './helpers/plugin'
import { MemoryBroker } from '../plugin/memory-broker'
import type { BrokerEntry, BrokerTopic } from '../plugin/broker'
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
