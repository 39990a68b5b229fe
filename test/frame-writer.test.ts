// plugin/frame-writer.ts: the topic fast path on ws 8: a frame built once goes straight to a socket only
// while that is safe; the first frame of a tick is written at once, further
// frames of the same tick leave together at its end.
import t, { type Test } from 'tap'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import type { FastifyInstance } from 'fastify'
import type { Topic, TypedWebSocket } from 'fastify-typed-websocket'
import { startServer, messages, sleep } from './helpers/server'

const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), text: Type.String() })
type Rooms = Topic<{ type: 'said', id: number, text: string }, 'id'>

interface NetState { writableCorked: number, writableLength: number }

async function roomServer (t: Test) {
  const setup = { rooms: undefined as unknown as Rooms, sockets: [] as TypedWebSocket[] }
  const server = await startServer(t, (app: FastifyInstance) => {
    setup.rooms = app.websocketTopic('rooms', { message: Said, offsetField: 'id' })
    app.get('/room', { websocket: { outbound: Said } }, async (socket) => {
      setup.sockets.push(socket)
      await setup.rooms.subscribe(socket, 'r')
      await socket.send('subscribed')
    })
  })
  return { ...server, setup }
}

async function join (url: string): Promise<WebSocket> {
  const ws = new WebSocket(url)
  await messages(ws, 1)
  return ws
}

const net = (socket: TypedWebSocket): NetState => (socket.raw as unknown as { _socket: NetState })._socket
const said = (id: number, text: string): string => JSON.stringify({ id, type: 'said', text })

t.test('a burst in one tick: the first frame goes out at once, the rest corked until the end of the tick, all in order', async (t) => {
  const server = await roomServer(t)
  const ws = await join(server.url('/room'))
  const socket = server.setup.sockets[0]
  const got = messages(ws, 102)
  server.setup.rooms.publish('r', { type: 'said', text: 'first' })
  t.equal(net(socket).writableCorked, 0, 'the first frame of the tick is written at once')
  t.equal(net(socket).writableLength, 0, 'and nothing waits')
  server.setup.rooms.publish('r', { type: 'said', text: 'second' })
  t.equal(net(socket).writableCorked, 1, 'a second frame in the same tick corks the socket')
  t.ok(net(socket).writableLength > 0, 'and waits for the end of the tick')
  // An ordinary send in the same tick keeps its place between the frames.
  socket.send({ type: 'said', id: 0, text: 'direct' })
  for (let i = 0; i < 99; i++) server.setup.rooms.publish('r', { type: 'said', text: `m${i}` })
  await new Promise(resolve => setImmediate(resolve))
  t.equal(net(socket).writableCorked, 0, 'uncorked at the end of the tick')
  const list = await got
  t.same(list.slice(0, 3), [said(1, 'first'), said(2, 'second'), JSON.stringify({ type: 'said', id: 0, text: 'direct' })])
  t.same(list.slice(3), Array.from({ length: 99 }, (_, i) => said(i + 3, `m${i}`)))
  // A later tick starts over: its first frame is written at once again.
  const next = messages(ws, 1)
  server.setup.rooms.publish('r', { type: 'said', text: 'later' })
  t.equal(net(socket).writableCorked, 0)
  t.same(await next, [said(102, 'later')])
  ws.close()
})

t.test('ws still reading a Blob: the topic message is an ordinary send queued behind it', async (t) => {
  const server = await roomServer(t)
  const ws = await join(server.url('/room'))
  const socket = server.setup.sockets[0]
  const got = messages(ws, 2)
  socket.raw.send(new Blob([Buffer.from('blob first')]))
  const sender = (socket.raw as unknown as { _sender: { _state: number } })._sender
  t.not(sender._state, 0, 'the sender is busy reading the Blob')
  server.setup.rooms.publish('r', { type: 'said', text: 'after the blob' })
  const [first, second] = await got
  t.same(first, Buffer.from('blob first'))
  t.equal(second, said(1, 'after the blob'))
  ws.close()
})

t.test('a fragmented message half sent: no frame is put inside it; the message goes through ws', async (t) => {
  const server = await roomServer(t)
  const ws = await join(server.url('/room'))
  const other = await join(server.url('/room'))
  const socket = server.setup.sockets[0]
  const got = messages(ws, 1)
  const elsewhere = messages(other, 1)
  socket.raw.send('part one;', { fin: false })
  server.setup.rooms.publish('r', { type: 'said', text: 'x' })
  // ws ends the fragmented message with the next send, as it always does: the
  // peer gets one valid message rather than a protocol error.
  t.same(await got, ['part one;' + said(1, 'x')])
  t.same(await elsewhere, [said(1, 'x')])
  const next = messages(ws, 1)
  server.setup.rooms.publish('r', { type: 'said', text: 'y' })
  t.same(await next, [said(2, 'y')], 'the next message is a frame of its own again')
  ws.close()
  other.close()
})

t.test('a socket gone in the middle of a corked tick: the others get everything, nothing throws', async (t) => {
  const server = await roomServer(t)
  const gone = await join(server.url('/room'))
  const stays = await join(server.url('/room'))
  const got = messages(stays, 3)
  server.setup.rooms.publish('r', { type: 'said', text: 'a' })
  server.setup.rooms.publish('r', { type: 'said', text: 'b' })
  t.equal(net(server.setup.sockets[0]).writableCorked, 1)
  server.setup.sockets[0].raw.terminate()
  server.setup.rooms.publish('r', { type: 'said', text: 'c' })
  t.same(await got, [said(1, 'a'), said(2, 'b'), said(3, 'c')])
  await sleep(20)
  t.equal(server.setup.rooms.subscribers('r').size, 1)
  gone.close()
  stays.close()
})
