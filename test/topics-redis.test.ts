// Topics on redisBroker against a real redis-server: what one node does when Redis is
// slow or away while sockets subscribe, and `except` while other messages are on their way.
import t, { type Test } from 'tap'
import Redis from 'ioredis'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import type { Topic, TypedWebSocket } from 'fastify-typed-websocket'
import { redisBroker } from '../plugin/redis'
import { startRedis, type RedisServer } from './helpers/redis'
import { startServer, messages, sleep } from './helpers/server'

const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), text: Type.String() })
const Member = Type.Object({ name: Type.String() })

type Rooms = Topic<{ type: 'said', id: number, text: string }, 'id', { name: string }>

interface Room { rooms: Rooms, sockets: TypedWebSocket[] }

/** One node on `redis`: a `rooms` topic and a route that subscribes each socket to `?room=` as `?name=`, answering with the result or the error code. */
async function roomNode (t: Test, redis: RedisServer, brokerTimeout: number) {
  const client = new Redis(redis.port, '127.0.0.1', { lazyConnect: true })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const room: Room = { rooms: undefined as unknown as Rooms, sockets: [] }
  const server = await startServer(t, (app: FastifyInstance) => {
    room.rooms = app.websocketTopic('rooms', { message: Said, history: 10, offsetField: 'id', presence: Member })
    app.get('/room', { websocket: { outbound: Said } }, async (socket, request) => {
      room.sockets.push(socket)
      const { room: key, name } = request.query as { room: string, name?: string }
      try {
        const result = await room.rooms.subscribe(socket, key, { presence: name === undefined ? undefined : { name } })
        await socket.send(JSON.stringify({ subscribed: result }))
      } catch (err) {
        await socket.send(JSON.stringify({ error: (err as { code: string }).code }))
      }
    })
    // Subscribes and, in the same tick, unsubscribes: the subscribe is still under way at the broker.
    app.get('/flip', { websocket: { outbound: Said } }, async (socket, request) => {
      const key = (request.query as { room: string }).room
      const subscribing = room.rooms.subscribe(socket, key).then((result) => ({ subscribed: result }), (err: { code: string }) => ({ error: err.code }))
      await room.rooms.unsubscribe(socket, key)
      await socket.send(JSON.stringify(await subscribing))
    })
  }, { plugin: { broker: redisBroker({ client, brokerTimeout }) } })
  return { ...server, room }
}

/** A client and the route's first answer. */
async function open (url: string): Promise<{ ws: WebSocket, answer: Record<string, unknown> }> {
  const ws = new WebSocket(url)
  const [answer] = await messages(ws, 1)
  return { ws, answer: JSON.parse(answer as string) }
}

const said = (text: string) => ({ type: 'said' as const, text })

t.test('except: a message published meanwhile still reaches the excepted socket', async (t) => {
  const redis = await startRedis(t)
  const node = await roomNode(t, redis, 2000)
  const a = await open(node.url('/room?room=lobby'))
  const b = await open(node.url('/room?room=lobby'))
  const [sa] = node.room.sockets
  const toA = messages(a.ws, 2)
  const toB = messages(b.ws, 3)
  // Both publishes are on their way together: when the first arrives, the second's `except` waits for its own.
  const offsets = await Promise.all([
    node.room.rooms.publish('lobby', said('for all')),
    node.room.rooms.publish('lobby', said('not for a'), { except: sa })
  ])
  t.same(offsets, [{ offset: 1 }, { offset: 2 }])
  await node.room.rooms.publish('lobby', said('for all again'))
  t.same((await toA).map((m) => JSON.parse(m as string).text), ['for all', 'for all again'], 'a gets the other messages, not the one that excepts it')
  t.same((await toB).map((m) => JSON.parse(m as string).id), [1, 2, 3], 'b gets all three in order')
  a.ws.close()
  b.ws.close()
})

t.test('Redis away while a socket subscribes: the subscribe rejects and nothing stays behind', async (t) => {
  const redis = await startRedis(t)
  const node = await roomNode(t, redis, 300)
  await redis.kill()
  const down = await open(node.url('/room?room=hall&name=dan'))
  t.same(down.answer, { error: 'FST_WS_BROKER_UNAVAILABLE' }, 'the broker could not subscribe the key')
  t.equal(node.room.rooms.subscribers('hall').size, 0, 'the socket is not a subscriber')
  await redis.restart()
  // The node reconnects to Redis by itself, with ioredis's backoff: bounded attempts.
  let back: { ws: WebSocket, answer: Record<string, unknown> } | undefined
  for (let attempt = 0; attempt < 40 && back === undefined; attempt++) {
    const next = await open(node.url('/room?room=hall&name=eve'))
    if ('subscribed' in next.answer) back = next
    else {
      next.ws.close()
      await sleep(100)
    }
  }
  t.same(back?.answer, { subscribed: { offset: 0, recovered: false } }, 'the key subscribes once Redis is back')
  const got = messages((back as { ws: WebSocket }).ws, 1)
  await node.room.rooms.publish('hall', said('back'))
  t.same(JSON.parse((await got)[0] as string), { id: 1, type: 'said', text: 'back' })
  t.same(await node.room.rooms.presence('hall'), [{ name: 'eve' }], 'only the socket that subscribed is a member')
  down.ws.close()
  back?.ws.close()
})

t.test('a join that gets no answer in time leaves no member behind', async (t) => {
  const redis = await startRedis(t)
  const node = await roomNode(t, redis, 300)
  const admin = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => admin.disconnect())
  const ann = await open(node.url('/room?room=lobby&name=ann'))
  t.same(ann.answer, { subscribed: { offset: 0, recovered: false } })
  // Redis holds every command for a while: the join is sent, and answered too late.
  await admin.call('CLIENT', 'PAUSE', '2000', 'ALL')
  const bea = await open(node.url('/room?room=lobby&name=bea'))
  t.same(bea.answer, { error: 'FST_WS_BROKER_UNAVAILABLE' }, 'the join timed out')
  // A socket already subscribed keeps its subscription when joining again fails.
  await t.rejects(node.room.rooms.subscribe(node.room.sockets[0], 'lobby', { presence: { name: 'ann again' } }), { code: 'FST_WS_BROKER_UNAVAILABLE' })
  await admin.ping()
  const subscribers = node.room.rooms.subscribers('lobby')
  t.ok(subscribers.size === 1 && subscribers.has(node.room.sockets[0]), 'ann is subscribed, bea is not')
  const members = (await node.room.rooms.presence('lobby')).map((m) => m.name)
  t.equal(members.length, 1, 'one member: the socket that is subscribed')
  t.notOk(members.includes('bea'), 'the join that failed was undone once Redis ran it')
  const got = messages(ann.ws, 1)
  await node.room.rooms.publish('lobby', said('still here'))
  t.equal(JSON.parse((await got)[0] as string).text, 'still here')
  bea.ws.close()
  ann.ws.close()
})

/** How many connections are subscribed to the key's Redis channel. */
async function listeners (admin: Redis, key: string): Promise<number> {
  const [, count] = await admin.call('PUBSUB', 'NUMSUB', `fastify-typed-websocket:5:rooms:${key}`) as [string, number]
  return count
}

t.test('unsubscribed while the broker was still subscribing: the node leaves the Redis channel', async (t) => {
  const redis = await startRedis(t)
  const node = await roomNode(t, redis, 2000)
  const admin = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => admin.disconnect())
  const flip = await open(node.url('/flip?room=gone'))
  t.same(flip.answer, { error: 'FST_WS_CLOSED' }, 'the subscribe that was undone rejects')
  t.equal(node.room.rooms.subscribers('gone').size, 0)
  // The route answers once unsubscribe resolved: by then the node has left the channel.
  t.equal(await listeners(admin, 'gone'), 0, 'no connection listens to a key without subscribers')
  await node.room.rooms.publish('gone', said('nobody'))
  // The key subscribes again as usual.
  const back = await open(node.url('/room?room=gone'))
  t.same(back.answer, { subscribed: { offset: 1, recovered: false } })
  t.equal(await listeners(admin, 'gone'), 1)
  flip.ws.close()
  back.ws.close()
})

t.test('a new first subscriber while the node is still leaving the key: the key stays subscribed', async (t) => {
  const redis = await startRedis(t)
  const node = await roomNode(t, redis, 2000)
  const admin = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => admin.disconnect())
  const a = await open(node.url('/room?room=lobby'))
  const b = await open(node.url('/room?room=hall'))
  const [sa, sb] = node.room.sockets
  // The last subscriber leaves and another socket joins in the same tick.
  const leaving = node.room.rooms.unsubscribe(sa, 'lobby')
  const joining = node.room.rooms.subscribe(sb, 'lobby')
  await leaving
  t.same(await joining, { offset: 0, recovered: false }, 'the new subscriber waited for the leave, then subscribed')
  t.equal(await listeners(admin, 'lobby'), 1, 'the node listens to the key again')
  const got = messages(b.ws, 1)
  await node.room.rooms.publish('lobby', said('after the leave'))
  t.equal(JSON.parse((await got)[0] as string).text, 'after the leave')
  a.ws.close()
  b.ws.close()
})
