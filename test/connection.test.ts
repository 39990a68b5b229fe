// plugin/connection.ts: paths of the per-connection state machine not reached by the feature tests.
import t from 'tap'
import type { EventEmitter } from 'node:events'
import { Type } from '@sinclair/typebox'
import { startServer, connect, messages, closed, deferred } from './helpers/server'
import type { TypedWebSocket } from 'fastify-typed-websocket'

t.test('messages queued during an async open are all delivered to a sync message hook, in order', async (t) => {
  const release = deferred()
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: { message (socket, msg) { socket.send(`echo ${String(msg)}`).catch(() => {}) } }
    }, async function open () { await release.promise })
  })
  const ws = await connect(server.url('/ws'))
  const got = messages(ws, 3)
  ws.send('a')
  ws.send('b')
  ws.send('c')
  setTimeout(() => release.resolve(), 50)
  t.same(await got, ['echo a', 'echo b', 'echo c'])
})

t.test('an invalid message in the queue closes 1007 and drops what is queued behind it', async (t) => {
  const release = deferred()
  const seen: unknown[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        inbound: Type.Object({ n: Type.Integer() }),
        message (_socket, msg) { seen.push(msg) }
      }
    }, async function open () { await release.promise })
  })
  const ws = await connect(server.url('/ws'))
  const closing = closed(ws)
  ws.send('{"n":1}')
  ws.send('{"n":"two"}')
  ws.send('{"n":3}')
  setTimeout(() => release.resolve(), 50)
  t.same(await closing, { code: 1007, reason: '/n must be integer' })
  t.same(seen, [{ n: 1 }], 'the message after the invalid one never reached the hook')
})

t.test('a receiver error without a close code of its own closes with 1002 and its message', async (t) => {
  const opened = deferred<TypedWebSocket>()
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: true }, function open (socket) { opened.resolve(socket) })
  })
  const ws = await connect(server.url('/ws'))
  const socket = await opened.promise
  const closing = closed(ws)
  // The shape of error a future ws might raise: no status code attached.
  const receiver = (socket.raw as unknown as { _receiver: EventEmitter })._receiver
  receiver.emit('error', new Error('unexpected frame'))
  // With ws internals off, ws's own listener closes, without a code to give.
  t.same(await closing, process.env.FASTIFY_TYPED_WEBSOCKET_INTERNALS === 'off' ? { code: 1005, reason: '' } : { code: 1002, reason: 'unexpected frame' })
})

t.test('an object sent with { binary: true } goes out as a binary frame of its JSON', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: { message (socket) { return socket.send({ kind: 'snapshot', n: 1 }, { binary: true }) } }
    }, function open () {})
  })
  const ws = await connect(server.url('/ws'))
  const got = messages(ws, 1)
  ws.send('go')
  const [frame] = await got
  t.ok(Buffer.isBuffer(frame), 'binary frame')
  t.same(JSON.parse(frame.toString()), { kind: 'snapshot', n: 1 })
})
