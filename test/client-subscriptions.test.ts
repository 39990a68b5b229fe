// client.subscribe() (fastify-typed-websocket/client, the built package): against a real server
// (messages, replay across a reconnect, reset, presence, refusals, async iteration), and against a
// scripted peer that writes the exact frames of a resubscribe racing a live delivery.
import t from 'tap'
import { Type } from '@sinclair/typebox'
import WsWebSocket, { WebSocketServer, type WebSocket as ServerSide } from 'ws'
import type { FastifyInstance } from 'fastify'
import type { Topic, TypedWebSocket } from 'fastify-typed-websocket'
import { RemoteError, connect, type ResetInfo, type WebSocketConstructor } from 'fastify-typed-websocket/client'
import { startServer, until } from './helpers/server'
import { waitState } from './helpers/client'

const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), text: Type.String() })
const Member = Type.Object({ name: Type.String() })
const Say = Type.Object({ type: Type.Literal('say'), text: Type.String() })
const live = { inbound: Say, subscriptions: { rooms: Said } }
type Rooms = Topic<{ type: 'said', id: number, text: string }, 'id', { name: string }, 'rooms'>
const WebSocket = WsWebSocket as unknown as WebSocketConstructor

async function liveServer (t: tap.Test, history = 100) {
  const setup = { rooms: undefined as unknown as Rooms, sockets: [] as TypedWebSocket[], order: [] as string[] }
  const server = await startServer(t, (app: FastifyInstance) => {
    const rooms = setup.rooms = app.websocketTopic('rooms', { message: Said, history, offsetField: 'id', presence: Member })
    app.get('/live', {
      websocket: {
        ...live,
        subscriptions: {
          rooms: {
            topic: rooms,
            authorize: (_socket, key) => {
              setup.order.push(`subscribe ${key}`)
              return key !== 'staff'
            },
            presence: () => ({ name: 'ann' })
          }
        },
        message (_socket, msg) { setup.order.push(`say ${msg.text}`) }
      }
    }, (socket) => { setup.sockets.push(socket) })
  })
  return { ...server, setup }
}

interface SaidMsg { type: 'said', id: number, text: string }
const texts = (list: SaidMsg[]): string[] => list.map(m => m.text)

t.test('subscribe() delivers each message once, in order, with its offset; ready, presence and unsubscribe', async (t) => {
  const { url, setup } = await liveServer(t)
  const client = connect(live, url('/live'), { WebSocket })
  t.teardown(() => client.close())
  const sub = client.subscribe('rooms', 'lobby')
  const got: Array<[string, number]> = []
  sub.on('message', (msg, { offset }) => { got.push([msg.text, offset]) })
  t.match(await sub.ready, { offset: 0, recovered: false })
  await setup.rooms.publish('lobby', { type: 'said', text: 'a' })
  await setup.rooms.publish('lobby', { type: 'said', text: 'b' })
  await until(() => got.length === 2)
  t.same(got, [['a', 1], ['b', 2]])
  t.same(await sub.presence(), [{ name: 'ann' }])
  t.throws(() => client.subscribe('rooms', 'lobby'), TypeError, 'one subscription per key')
  sub.unsubscribe()
  await until(() => setup.rooms.subscribers('lobby').size === 0)
  await setup.rooms.publish('lobby', { type: 'said', text: 'c' })
  const again = client.subscribe('rooms', 'lobby')
  t.match(await again.ready, { offset: 3 })
  t.same(got.length, 2, 'nothing after unsubscribe()')
})

t.test('a refused subscribe rejects ready with the app error forbidden, and the client stays open', async (t) => {
  const { url } = await liveServer(t)
  const client = connect(live, url('/live'), { WebSocket })
  t.teardown(() => client.close())
  const sub = client.subscribe('rooms', 'staff')
  const errors: Error[] = []
  sub.on('error', (err) => { errors.push(err) })
  const err = await sub.ready.catch((e: unknown) => e) as RemoteError
  t.ok(err instanceof RemoteError)
  t.match(err, { name: 'forbidden', code: 403 })
  t.equal(errors.length, 1)
  t.equal(sub.active, false)
  t.equal(client.state, 'open')
})

t.test('on reconnect every subscription resubscribes from its position before the offline queue flushes, and what it missed is replayed', async (t) => {
  const { url, setup } = await liveServer(t)
  const client = connect(live, url('/live'), { WebSocket, reconnect: { initialDelay: 20, maxDelay: 20 } })
  t.teardown(() => client.close())
  const lobby = client.subscribe('rooms', 'lobby')
  const kitchen = client.subscribe('rooms', 'kitchen')
  const got: SaidMsg[] = []
  const resets: ResetInfo[] = []
  lobby.on('message', (msg) => { got.push(msg) })
  lobby.on('reset', (info) => { resets.push(info) })
  await Promise.all([lobby.ready, kitchen.ready])
  await setup.rooms.publish('lobby', { type: 'said', text: 'a' })
  await until(() => got.length === 1)
  setup.sockets[0].raw.terminate()
  await waitState(client, 'reconnecting')
  client.send({ type: 'say', text: 'queued' })
  await setup.rooms.publish('lobby', { type: 'said', text: 'b' })
  await setup.rooms.publish('lobby', { type: 'said', text: 'c' })
  await until(() => got.length === 3)
  t.same(texts(got), ['a', 'b', 'c'], 'missed messages replayed, once')
  t.same(resets, [])
  t.same(setup.order.slice(2), ['subscribe lobby', 'subscribe kitchen', 'say queued'], 'subscribes went before the queued send')
  await setup.rooms.publish('lobby', { type: 'said', text: 'd' })
  await until(() => got.length === 4)
  t.same(lobby.position?.offset, 4)
})

t.test('a reconnect past what history keeps emits reset with the old and new position, and replays nothing', async (t) => {
  const { url, setup } = await liveServer(t, 1)
  const client = connect(live, url('/live'), { WebSocket, reconnect: { initialDelay: 20, maxDelay: 20 } })
  t.teardown(() => client.close())
  const sub = client.subscribe('rooms', 'lobby')
  const got: SaidMsg[] = []
  const resets: ResetInfo[] = []
  sub.on('message', (msg) => { got.push(msg) })
  sub.on('reset', (info) => { resets.push(info) })
  await sub.ready
  await setup.rooms.publish('lobby', { type: 'said', text: 'a' })
  await until(() => got.length === 1)
  setup.sockets[0].raw.terminate()
  await waitState(client, 'reconnecting')
  for (const text of ['b', 'c', 'd']) await setup.rooms.publish('lobby', { type: 'said', text })
  await until(() => resets.length === 1)
  t.match(resets[0], { oldOffset: 1, offset: 4 })
  await setup.rooms.publish('lobby', { type: 'said', text: 'e' })
  await until(() => got.length === 2)
  t.same(texts(got), ['a', 'e'], 'nothing replayed in place of the gap')
})

t.test('async iteration yields the messages in order and ends on unsubscribe()', async (t) => {
  const { url, setup } = await liveServer(t)
  const client = connect(live, url('/live'), { WebSocket })
  t.teardown(() => client.close())
  const sub = client.subscribe('rooms', 'lobby')
  await sub.ready
  const seen: string[] = []
  const done = (async () => {
    for await (const msg of sub) {
      seen.push(msg.text)
      if (seen.length === 3) sub.unsubscribe()
    }
  })()
  for (const text of ['a', 'b', 'c']) await setup.rooms.publish('lobby', { type: 'said', text })
  await done
  t.same(seen, ['a', 'b', 'c'])
})

/** A scripted peer: `script(ws, n)` answers the n-th connection (from 1); frames received are recorded. */
async function scripted (t: tap.Test, script: (ws: ServerSide, n: number, frames: unknown[]) => void) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()))
  t.teardown(() => new Promise<void>((resolve) => {
    for (const ws of wss.clients) ws.terminate()
    wss.close(() => resolve())
  }))
  const frames: unknown[][] = []
  wss.on('connection', (ws) => {
    const mine: unknown[] = []
    frames.push(mine)
    ws.on('message', (data: Buffer) => {
      mine.push(JSON.parse(data.toString()))
      script(ws, frames.length, mine)
    })
  })
  return { url: `ws://127.0.0.1:${(wss.address() as { port: number }).port}/`, frames }
}

const message = (offset: number, text: string): string => JSON.stringify({
  jsonrpc: '2.0', method: '$/message', params: { topic: 'rooms', key: 'lobby', offset, data: { type: 'said', id: offset, text } }
})

t.test('a resubscribe that races live deliveries delivers nothing twice', async (t) => {
  const peer = await scripted(t, (ws, n, frames) => {
    const last = frames[frames.length - 1] as { id: string, method: string }
    if (last.method !== '$/subscribe') return
    const answer = (result: unknown): void => ws.send(JSON.stringify({ jsonrpc: '2.0', id: last.id, result }))
    if (n === 1) {
      // A live message before the answer, then the answer at the offset before it.
      ws.send(message(1, 'a'))
      answer({ epoch: 'e1', offset: 0, recovered: false })
      ws.send(message(2, 'b'))
      ws.send(message(3, 'c'))
      setTimeout(() => ws.terminate(), 20)
    } else {
      // The replay overlaps what the client holds, live ones cross the answer, one comes twice.
      ws.send(message(2, 'b'))
      ws.send(message(3, 'c'))
      ws.send(message(4, 'd'))
      ws.send(message(5, 'e'))
      answer({ epoch: 'e1', offset: 4, recovered: true })
      ws.send(message(5, 'e'))
      ws.send(message(6, 'f'))
    }
  })
  const client = connect(live, peer.url, { WebSocket, reconnect: { initialDelay: 20, maxDelay: 20 } })
  t.teardown(() => client.close())
  const sub = client.subscribe('rooms', 'lobby')
  const got: Array<[string, number]> = []
  let resets = 0
  sub.on('message', (msg, { offset }) => { got.push([msg.text, offset]) })
  sub.on('reset', () => { resets++ })
  await until(() => got.length === 6, 5000, 'six messages')
  t.same(got, [['a', 1], ['b', 2], ['c', 3], ['d', 4], ['e', 5], ['f', 6]])
  t.equal(resets, 0)
  t.match(peer.frames[1][0], { method: '$/subscribe', params: { topic: 'rooms', key: 'lobby', since: { epoch: 'e1', offset: 3 } } },
    'the resubscribe carries the position held')
})

t.test('recovered: false in a new epoch is a reset, and the messages of the old numbering are not compared with the new', async (t) => {
  const peer = await scripted(t, (ws, n, frames) => {
    const last = frames[frames.length - 1] as { id: string, method: string }
    if (last.method !== '$/subscribe') return
    const answer = (result: unknown): void => ws.send(JSON.stringify({ jsonrpc: '2.0', id: last.id, result }))
    if (n === 1) {
      answer({ epoch: 'e1', offset: 10, recovered: false })
      ws.send(message(11, 'a'))
      setTimeout(() => ws.terminate(), 20)
    } else {
      answer({ epoch: 'e2', offset: 2, recovered: false })
      ws.send(message(3, 'b'))
    }
  })
  const client = connect(live, peer.url, { WebSocket, reconnect: { initialDelay: 20, maxDelay: 20 } })
  t.teardown(() => client.close())
  const sub = client.subscribe('rooms', 'lobby')
  const got: string[] = []
  const resets: ResetInfo[] = []
  sub.on('message', (msg) => { got.push(msg.text) })
  sub.on('reset', (info) => { resets.push(info) })
  await until(() => got.length === 2, 5000, 'two messages')
  t.same(resets, [{ oldEpoch: 'e1', oldOffset: 11, epoch: 'e2', offset: 2 }])
  t.same(got, ['a', 'b'], 'offset 3 of the new epoch is delivered though the old one was at 11')
  t.same(sub.position, { epoch: 'e2', offset: 3 })
})

t.test('client.close() ends subscriptions: a pending ready rejects and iterations end', async (t) => {
  const peer = await scripted(t, () => {})
  const client = connect(live, peer.url, { WebSocket })
  const sub = client.subscribe('rooms', 'lobby')
  await waitState(client, 'open')
  await until(() => peer.frames[0]?.length === 1)
  const iteration = (async () => { for await (const msg of sub) t.fail(`no message, got ${msg.text}`) })()
  client.close()
  await t.rejects(sub.ready)
  await iteration
  t.equal(sub.active, false)
  t.throws(() => client.subscribe('rooms', 'lobby'))
})
