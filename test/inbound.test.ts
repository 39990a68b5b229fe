// plugin/inbound.ts: the inbound queue, pausing the socket (TCP backpressure) while a
// hook is busy, and what still passes meanwhile (pings, the close handshake, keepalive).
import t from 'tap'
import type { TypedWebSocket } from 'fastify-typed-websocket'
import { startServer, connect, closed, messages, until, sleep, deferred } from './helpers/server'

const KiB = 1024

interface CloseSeen { code: number, reason: string }

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

t.test('a slow message handler stops the server reading; nothing is lost, order is kept', async (t) => {
  const gate = deferred()
  const received: string[] = []
  const opened = deferred<TypedWebSocket>()
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        maxPendingMessages: 4,
        async message (socket, msg) {
          received.push(msg as string)
          if (received.length === 1) await gate.promise
          await socket.send(msg as string)
        }
      }
    }, function open (socket) { opened.resolve(socket) })
  })
  const ws = await connect(server.url('/ws'))
  const socket = await opened.promise

  const sent = Array.from({ length: 100 }, (_, i) => `message ${i}`)
  for (const m of sent) ws.send(m)
  await until(() => received.length === 1, 5000, 'the first message')
  await until(() => socket.raw.isPaused, 5000, 'the server to stop reading')
  await sleep(200)
  t.equal(received.length, 1, 'the handler got nothing beyond the first while it was blocked')
  t.equal(socket.raw.isPaused, true, 'the socket is still paused while the handler is blocked')

  const echoes = messages(ws, sent.length)
  gate.resolve()
  t.same(await echoes, sent, 'every message came back, in order')
  t.same(received, sent, 'the handler saw every message, in order')
  await until(() => !socket.raw.isPaused, 5000, 'the server to read again')
  t.equal(socket.raw.isPaused, false, 'reading resumed once the queue drained')

  ws.send('after')
  t.same(await messages(ws, 1), ['after'], 'the connection works as before')
  ws.close()
  await closed(ws)
})

t.test('messages that arrive while an async open runs are held (and reading paused), then delivered in order', async (t) => {
  const gate = deferred()
  const received: string[] = []
  const opened = deferred<TypedWebSocket>()
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        maxPendingMessages: 4,
        message (socket, msg) {
          received.push(msg as string)
          return socket.send(msg as string)
        }
      }
    }, async function open (socket) {
      opened.resolve(socket)
      await gate.promise
    })
  })
  const ws = await connect(server.url('/ws'))
  const socket = await opened.promise
  const sent = Array.from({ length: 50 }, (_, i) => `early ${i}`)
  for (const m of sent) ws.send(m)
  await until(() => socket.raw.isPaused, 5000, 'the server to stop reading')
  t.same(received, [], 'nothing is delivered before open settles')
  const echoes = messages(ws, sent.length)
  gate.resolve()
  t.same(await echoes, sent)
  t.same(received, sent)
  await until(() => !socket.raw.isPaused, 5000, 'the server to read again')
  ws.close()
  await closed(ws)
})

t.test('below maxPendingMessages, pings and the close handshake are not blocked by a slow handler', async (t) => {
  const gate = deferred()
  const received: string[] = []
  const closes: CloseSeen[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        maxPendingMessages: 100,
        async message (_socket, msg) {
          received.push(msg as string)
          if (received.length === 1) await gate.promise
        },
        close (_socket, code, reason) { closes.push({ code, reason }) }
      }
    }, function open () {})
  }, { plugin: { pingInterval: 0 } })
  const ws = await connect(server.url('/ws'))
  ws.send('one')
  ws.send('two')
  ws.send('three')
  await until(() => received.length === 1, 5000, 'the first message')

  const pong = new Promise<string>(resolve => ws.once('pong', (data: Buffer) => resolve(data.toString())))
  ws.ping('still alive?')
  t.equal(await pong, 'still alive?', 'a ping is answered while the handler is blocked')

  ws.close(1000, 'leaving')
  t.same(await closed(ws), { code: 1000, reason: 'leaving' }, 'the close handshake completes while the handler is blocked')
  await sleep(100)
  t.same(closes, [], 'the close hook waits for the message hook')
  t.same(received, ['one'])

  gate.resolve()
  await until(() => closes.length > 0, 5000, 'the close hook')
  await sleep(50)
  t.same(received, ['one', 'two', 'three'], 'messages received before the close are still handled, in order')
  t.same(closes, [{ code: 1000, reason: 'leaving' }], 'then the close hook runs, once')
  t.equal(server.app.websocketClients.size, 0)
})

t.test('the pause reaches the client as TCP backpressure', async (t) => {
  const gate = deferred()
  let count = 0
  const opened = deferred<TypedWebSocket>()
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        maxPendingMessages: 4,
        async message (socket, msg) {
          count++
          if (count === 1) await gate.promise
          await socket.send(String((msg as Buffer).length))
        }
      }
    }, function open (socket) { opened.resolve(socket) })
  })
  const ws = await connect(server.url('/ws'))
  const socket = await opened.promise

  const SIZE = 256 * KiB
  const TOTAL = 100 // 25 MiB: more than the kernel buffers take
  for (let i = 0; i < TOTAL; i++) ws.send(Buffer.alloc(SIZE, i))
  await until(() => socket.raw.isPaused, 5000, 'the server to stop reading')
  await sleep(300)
  t.equal(count, 1, 'one message in the handler')
  t.ok(ws.bufferedAmount > 0, `the client cannot get rid of its data (${ws.bufferedAmount} bytes wait)`)

  const echoes = messages(ws, TOTAL, 20_000)
  gate.resolve()
  const lengths = await echoes
  t.equal(lengths.length, TOTAL)
  t.ok(lengths.every(l => l === String(SIZE)), 'every message arrived whole')
  await until(() => ws.bufferedAmount === 0 && !socket.raw.isPaused, 5000, 'the flow to resume')
  ws.close()
  await closed(ws)
})

t.test('keepalive does not time out a peer whose pongs wait behind the paused socket', async (t) => {
  const gate = deferred()
  let count = 0
  const closes: CloseSeen[] = []
  const opened = deferred<TypedWebSocket>()
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        pingInterval: 100,
        maxPendingMessages: 2,
        async message (socket, msg) {
          count++
          if (count === 1) await gate.promise
          await socket.send(msg as string)
        },
        close (_socket, code, reason) { closes.push({ code, reason }) }
      }
    }, function open (socket) { opened.resolve(socket) })
  })
  const ws = await connect(server.url('/ws'))
  const socket = await opened.promise
  for (let i = 0; i < 10; i++) ws.send(`m${i}`)
  await until(() => socket.raw.isPaused, 5000, 'the server to stop reading')
  await sleep(600) // several ping timeouts
  t.equal(closes.length, 0, 'not closed for missing pongs while the server itself is not reading')
  t.equal(ws.readyState, ws.OPEN)
  const echoes = messages(ws, 10)
  gate.resolve()
  t.equal((await echoes).length, 10)
  await sleep(400)
  t.equal(ws.readyState, ws.OPEN, 'pongs flow again once reading resumed')
  ws.close()
  await closed(ws)
})
