import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import type { Topic, TypedWebSocket } from 'fastify-typed-websocket'
import { startServer, messages, closed, until, sleep } from './helpers/server'

const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), text: Type.String() })
const Member = Type.Object({ name: Type.String() })

type Rooms = Topic<{ type: 'said', id: number, text: string }, 'id', { name: string }>

interface Setup { rooms: Rooms, sockets: TypedWebSocket[] }

/** A server with a `rooms` topic and a route that subscribes each socket to `?room=` (with `?since=`, `?name=`). */
async function roomServer (t: Test, options: { history?: number, historyTtl?: number, compression?: boolean, maxBufferedAmount?: number } = {}) {
  const setup: Setup = { rooms: undefined as unknown as Rooms, sockets: [] }
  const results: Array<{ offset: number, recovered: boolean }> = []
  const server = await startServer(t, (app: FastifyInstance) => {
    setup.rooms = app.websocketTopic('rooms', { message: Said, history: options.history ?? 0, historyTtl: options.historyTtl, offsetField: 'id', presence: Member })
    app.get('/room', {
      websocket: { outbound: Said, compression: options.compression ?? false, maxBufferedAmount: options.maxBufferedAmount }
    }, async (socket, request) => {
      setup.sockets.push(socket)
      const { room, since, name } = request.query as { room: string, since?: string, name?: string }
      const result = await setup.rooms.subscribe(socket, room, {
        since: since === undefined ? undefined : Number(since),
        presence: name === undefined ? undefined : { name }
      })
      results.push(result)
      await socket.send(JSON.stringify({ subscribed: result }))
    })
  })
  return { ...server, setup, results }
}

/** A client whose subscription took effect (the route answers with its result). */
async function join (url: string, options?: WebSocket.ClientOptions): Promise<WebSocket> {
  const ws = new WebSocket(url, options)
  await messages(ws, 1)
  return ws
}

t.test('fan-out to 300 sockets: every message once, in offset order, with the offset written in', async (t) => {
  const server = await roomServer(t)
  const clients = await Promise.all(Array.from({ length: 300 }, () => join(server.url('/room?room=lobby'))))
  const other = await join(server.url('/room?room=other'))
  t.equal(server.setup.rooms.subscribers('lobby').size, 300)
  const all = clients.map(ws => messages(ws, 50))
  const offsets: number[] = []
  for (let i = 0; i < 50; i++) offsets.push((await server.setup.rooms.publish('lobby', { type: 'said', text: `m${i}` })).offset)
  t.same(offsets, Array.from({ length: 50 }, (_, i) => i + 1))
  const got = await Promise.all(all)
  for (const list of got) {
    t.same(list.map(m => JSON.parse(m as string)), Array.from({ length: 50 }, (_, i) => ({ id: i + 1, type: 'said', text: `m${i}` })))
  }
  other.on('message', () => t.fail('a message for another key'))
  await sleep(50)
  for (const ws of clients) ws.close()
  other.close()
})

t.test('except skips the publishing socket only', async (t) => {
  const server = await roomServer(t)
  const a = await join(server.url('/room?room=r'))
  const b = await join(server.url('/room?room=r'))
  const got: string[] = []
  a.on('message', (m) => got.push(String(m)))
  const toB = messages(b, 2)
  await server.setup.rooms.publish('r', { type: 'said', text: 'one' }, { except: server.setup.sockets[0] })
  await server.setup.rooms.publish('r', { type: 'said', text: 'two' })
  t.same((await toB).map(m => JSON.parse(m as string).text), ['one', 'two'])
  await until(() => got.length === 1)
  t.same(got.map(m => JSON.parse(m).text), ['two'])
  a.close(); b.close()
})

t.test('since: replay from history, then live; recovered false when out of reach', async (t) => {
  const server = await roomServer(t, { history: 5 })
  const first = await join(server.url('/room?room=r'))
  for (let i = 1; i <= 8; i++) await server.setup.rooms.publish('r', { type: 'said', text: `m${i}` })
  // since 5: 6, 7, 8 replayed
  const ws = new WebSocket(server.url('/room?room=r&since=5'))
  const got = await messages(ws, 4)
  t.same(got.slice(0, 3).map(m => JSON.parse(m as string).id), [6, 7, 8])
  t.same(JSON.parse(got[3] as string), { subscribed: { offset: 8, recovered: true } })
  // too old (history keeps 4..8), ahead, none, equal
  for (const [since, recovered] of [['1', false], ['20', false], ['8', true]] as const) {
    const c = new WebSocket(server.url(`/room?room=r&since=${since}`))
    t.same(JSON.parse((await messages(c, 1))[0] as string), { subscribed: { offset: 8, recovered } }, `since ${since}`)
    c.close()
  }
  t.same((await server.setup.rooms.history('r', { since: 6, limit: 1 })).map(e => e.offset), [7])
  t.same((await server.setup.rooms.history('r')).map(e => e.message.text), ['m4', 'm5', 'm6', 'm7', 'm8'])
  t.same((await server.setup.rooms.history('r', { limit: 2 })).map(e => e.offset), [7, 8])
  first.close(); ws.close()
})

t.test('a live message during the replay comes after it, once', async (t) => {
  const server = await roomServer(t, { history: 10 })
  const first = await join(server.url('/room?room=r'))
  for (let i = 1; i <= 3; i++) await server.setup.rooms.publish('r', { type: 'said', text: `m${i}` })
  const ws = new WebSocket(server.url('/room?room=r&since=0'))
  const got = messages(ws, 5)
  // Publish while the subscription is replaying: the history call is async.
  await until(() => server.setup.sockets.length === 2)
  const live = server.setup.rooms.publish('r', { type: 'said', text: 'live' })
  await live
  const list = (await got).map(m => JSON.parse(m as string))
  const ids = list.filter(m => m.id !== undefined).map(m => m.id)
  t.same(ids, [1, 2, 3, 4])
  first.close(); ws.close()
})

t.test('presence, unsubscribe and closing sockets leave their keys', async (t) => {
  const server = await roomServer(t)
  const a = await join(server.url('/room?room=r&name=ann'))
  const b = await join(server.url('/room?room=r&name=bob'))
  t.same((await server.setup.rooms.presence('r')).map(m => m.name).sort(), ['ann', 'bob'])
  a.close()
  await until(() => server.setup.rooms.subscribers('r').size === 1)
  await until(() => true)
  await sleep(20)
  t.same((await server.setup.rooms.presence('r')).map(m => m.name), ['bob'])
  await server.setup.rooms.unsubscribe(server.setup.sockets[1], 'r')
  t.equal(server.setup.rooms.subscribers('r').size, 0)
  t.same(await server.setup.rooms.presence('r'), [])
  await t.rejects(server.setup.rooms.subscribe(server.setup.sockets[1], 'r', { presence: { name: 3 } as never }), { code: 'FST_WS_INVALID_PRESENCE' })
  b.close()
})

t.test('publish rejects a message that breaks the schema, and bad keys', async (t) => {
  const server = await roomServer(t)
  const a = await join(server.url('/room?room=r'))
  a.on('message', () => t.fail('nothing is sent'))
  await t.rejects(server.setup.rooms.publish('r', { type: 'said', text: 5 } as never), { code: 'FST_WS_INVALID_OUTBOUND', message: /\/text/ })
  await t.rejects(server.setup.rooms.publish('', { type: 'said', text: 'x' }), { code: 'FST_WS_INVALID_OPTION' })
  await sleep(30)
  a.close()
})

t.test('duplicate topic names are refused', async (t) => {
  await startServer(t, (app) => {
    app.websocketTopic('a', { message: Said })
    t.throws(() => app.websocketTopic('a', { message: Said }), { code: 'FST_WS_DUPLICATE_TOPIC' })
    t.throws(() => app.websocketTopic('b', { message: Said, offsetField: 'text' as never }), { code: 'FST_WS_INVALID_OPTION' })
    const described = (app as unknown as Record<symbol, ReadonlyMap<string, { history: number }>>)[Symbol.for('fastify-typed-websocket.topics')]
    t.equal(described.get('a')?.history, 0)
  }, { listen: false })
})

t.test('compression negotiated: the ordinary send, same bytes, in order', async (t) => {
  const server = await roomServer(t, { compression: true })
  const plain = await join(server.url('/room?room=r'), { perMessageDeflate: false })
  const deflate = await join(server.url('/room?room=r'))
  t.match(server.setup.sockets[1].raw.extensions, /permessage-deflate/)
  const p1 = messages(plain, 20)
  const p2 = messages(deflate, 20)
  for (let i = 0; i < 20; i++) server.setup.rooms.publish('r', { type: 'said', text: 'x'.repeat(i * 100) })
  const [g1, g2] = await Promise.all([p1, p2])
  t.same(g1, g2)
  t.same(g2.map(m => JSON.parse(m as string).id), Array.from({ length: 20 }, (_, i) => i + 1))
  plain.close(); deflate.close()
})

t.test('a slow reader is cut with 1008 while the others get everything', async (t) => {
  const server = await roomServer(t, { maxBufferedAmount: 256 * 1024 })
  const fast = await join(server.url('/room?room=r'))
  const slow = await join(server.url('/room?room=r'))
  ;(slow as unknown as { _socket: { pause (): void } })._socket.pause()
  const got = messages(fast, 2000, 20_000)
  const text = 'y'.repeat(4000)
  for (let i = 0; i < 2000; i++) {
    await server.setup.rooms.publish('r', { type: 'said', text })
    if (i % 50 === 0) await sleep(2)
  }
  const list = await got
  t.equal(list.length, 2000)
  t.equal(JSON.parse(list[1999] as string).id, 2000)
  await until(() => server.setup.sockets[1].closeCode !== undefined || !server.setup.sockets[1].isOpen, 10_000)
  ;(slow as unknown as { _socket: { resume (): void } })._socket.resume()
  const c = await closed(slow)
  t.equal(c.code, 1008)
  fast.close()
})

t.test('app.close() unsubscribes everything and closes the broker', async (t) => {
  const server = await roomServer(t, { history: 3 })
  const a = await join(server.url('/room?room=r'))
  await server.setup.rooms.publish('r', { type: 'said', text: 'x' })
  const gone = closed(a)
  await server.app.close()
  t.equal((await gone).code, 1001)
  t.equal(server.setup.rooms.subscribers('r').size, 0)
  await t.rejects(server.setup.rooms.publish('r', { type: 'said', text: 'x' }), { code: 'FST_WS_TOPIC_NOT_READY' })
})
