// plugin/outbound.ts: send() and when its promise settles, the write queue and the
// maxBufferedAmount cut-off, as a client that reads slowly or not at all sees them.
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
