import t from 'tap'
import type { TypedWebSocket } from 'fastify-typed-websocket'
import { startServer, connect, closed, messages, until, sleep, deferred } from './helpers/server'
import { RawClient, Opcode } from './helpers/raw'
import { WebSocketClosedError } from './helpers/plugin'

const KiB = 1024
const MiB = 1024 * KiB

interface CloseSeen { code: number, reason: string }

t.test('send() resolves once the frame is flushed, not while the peer is not reading', async (t) => {
  const opened = deferred<TypedWebSocket>()
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { maxBufferedAmount: 256 * MiB } }, function open (socket) { opened.resolve(socket) })
  })
  const ws = await connect(server.url('/ws'))
  const socket = await opened.promise

  t.equal(await socket.send('small'), undefined, 'a small send resolves')
  t.same(await messages(ws, 1), ['small'])

  ws.pause()
  // More than the kernel buffers of a loopback connection can take.
  const big = Buffer.alloc(48 * MiB, 7)
  let flushed = false
  const sending = socket.send(big).then(() => { flushed = true })
  await sleep(300)
  t.equal(flushed, false, 'not resolved while the client is not reading')
  t.ok(socket.bufferedAmount > 0, `bytes wait in the send buffer (${socket.bufferedAmount})`)

  const arrived = messages(ws, 1, 20_000)
  ws.resume()
  await sending
  t.equal(flushed, true, 'resolved once the client read')
  const [message] = await arrived
  t.equal((message as Buffer).length, big.length, 'the client got the whole message')
  t.equal(socket.bufferedAmount, 0)
  ws.close()
  await closed(ws)
})

t.test('a client that stops reading is cut off at maxBufferedAmount', async (t) => {
  const LIMIT = 1 * MiB
  const CHUNK = 64 * KiB
  const FRAME_OVERHEAD = 10
  const MAX_SENDS = 2000
  const closes: CloseSeen[] = []
  const result = deferred<{ sends: number, maxBuffered: number, error: unknown, stoppedAt: number }>()
  const settled = { flushed: 0, failed: 0 }
  const rejections: unknown[] = []

  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        maxBufferedAmount: LIMIT,
        closeTimeout: 500,
        close (_socket, code, reason) { closes.push({ code, reason }) }
      }
    }, function open (socket) {
      // The producer runs beside the connection: bounded in sends and in time.
      const chunk = Buffer.alloc(CHUNK, 1)
      async function produce (): Promise<void> {
        let sends = 0
        let maxBuffered = 0
        let error: unknown
        const deadline = Date.now() + 15_000
        while (sends < MAX_SENDS && Date.now() < deadline) {
          try {
            socket.send(chunk).then(() => { settled.flushed++ }, (err: unknown) => { settled.failed++; rejections.push(err) })
          } catch (err) {
            error = err
            break
          }
          sends++
          maxBuffered = Math.max(maxBuffered, socket.bufferedAmount)
          await new Promise(resolve => setImmediate(resolve))
        }
        result.resolve({ sends, maxBuffered, error, stoppedAt: Date.now() })
      }
      produce().catch((err: unknown) => result.resolve({ sends: 0, maxBuffered: 0, error: err, stoppedAt: Date.now() }))
    })
  })

  const client = await RawClient.open(server.port, '/ws')
  client.socket.pause() // the handshake is done; from now on nothing is read

  const { sends, maxBuffered, error, stoppedAt } = await result.promise
  t.type(error, WebSocketClosedError, `the send loop stopped with a WebSocketClosedError after ${sends} sends`)
  t.ok(sends < MAX_SENDS, 'before the loop\'s own bound')
  t.ok(maxBuffered > LIMIT, `the buffer did reach the limit (${maxBuffered})`)
  t.ok(maxBuffered < LIMIT + 2 * (CHUNK + FRAME_OVERHEAD), `and never went far past it (${maxBuffered} for a limit of ${LIMIT})`)
  t.ok(server.logs.some(l => l.level === 40 && l.msg === 'websocket peer is not reading; closing'), 'a warning was logged')

  await until(() => closes.length > 0, 5000, 'the close hook')
  const waited = Date.now() - stoppedAt
  await sleep(50)
  t.equal(closes.length, 1, 'the close hook ran once')
  t.ok(closes[0].code === 1006 || (closes[0].code === 1008 && closes[0].reason === 'send buffer full'),
    `the server saw the socket close (${closes[0].code} ${closes[0].reason})`)
  t.ok(waited < 5000, `within a bound after the limit was hit (${waited} ms)`)
  t.equal(server.app.websocketClients.size, 0)
  await until(() => settled.flushed + settled.failed === sends, 5000, 'every send to settle')
  t.ok(settled.failed > 0, `the sends still queued when the link was destroyed were rejected (${settled.flushed} flushed, ${settled.failed} rejected)`)
  const kinds = new Set(rejections.map((err) => {
    const e = err as { code?: unknown, cause?: { code?: unknown } }
    return `${err instanceof WebSocketClosedError ? 'WebSocketClosedError' : 'other'} ${String(e.code)} cause ${String(e.cause?.code)}`
  }))
  t.strictSame([...kinds], ['WebSocketClosedError FST_WS_CLOSED cause ERR_STREAM_DESTROYED'],
    'each rejected with WebSocketClosedError, the stream\'s error as its cause')

  // What the client finds when it finally reads: data, then the end of the connection;
  // if the close frame made it out before the link was destroyed, it says why.
  client.socket.resume()
  await client.until(() => client.closed, 10_000, 'the end of the connection')
  const close = client.close
  if (close !== undefined) t.same(close, { code: 1008, reason: 'send buffer full' })
  t.ok(client.frames.filter(f => f.opcode === Opcode.Binary).length < sends, 'the frames still queued were dropped')
})

t.test('one message larger than maxBufferedAmount still reaches a client that reads', async (t) => {
  // The limit is about a reader that falls behind, not about the size of one message.
  const opened = deferred<TypedWebSocket>()
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { maxBufferedAmount: 1 * MiB } }, function open (socket) { opened.resolve(socket) })
  })
  const ws = await connect(server.url('/ws'), { maxPayload: 64 * MiB })
  const socket = await opened.promise
  const arrived = messages(ws, 1, 20_000)
  const closedEarly = closed(ws, 20_000).then((c) => c, () => undefined)
  await socket.send(Buffer.alloc(8 * MiB, 3))
  t.equal(((await arrived)[0] as Buffer).length, 8 * MiB, 'the client got the message')
  const early = await Promise.race([closedEarly, sleep(300).then(() => undefined)])
  t.equal(early, undefined, `the connection was not closed (${JSON.stringify(early)})`)
  t.equal(socket.isOpen, true)
  if (ws.readyState === ws.OPEN) {
    ws.close()
    await closedEarly
  }
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

t.test('many tiny messages to a client that stops reading: each waiting message counts against maxBufferedAmount', async (t) => {
  const LIMIT = 64 * KiB
  const opened = deferred<TypedWebSocket>()
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { maxBufferedAmount: LIMIT, closeTimeout: 200 } }, function open (socket) { opened.resolve(socket) })
  })
  const client = await RawClient.open(server.port, '/ws')
  client.socket.pause() // from now on nothing is read
  const socket = await opened.promise
  let sent = 0
  let flushed = 0
  let refused: unknown
  // Bounded: the kernel takes a few hundred thousand 1-byte frames before anything waits.
  for (let chunk = 0; chunk < 50_000 && refused === undefined; chunk++) {
    for (let i = 0; i < 100 && refused === undefined; i++) {
      try {
        socket.send('x').then(() => { flushed++ }, () => {})
        sent++
      } catch (err) {
        refused = err
      }
    }
    await new Promise(resolve => setImmediate(resolve))
  }
  t.ok(refused instanceof WebSocketClosedError, `send refused after ${sent} messages`)
  const waiting = sent - flushed
  // 64 KiB / 512 bytes per waiting message = 128, plus at most one batch of 100 sent between checks.
  t.ok(waiting <= 128 + 100, `at most ~128 messages were waiting when the client was cut off (${waiting})`)
  client.destroy()
})
