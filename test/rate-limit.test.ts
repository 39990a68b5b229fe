// rateLimit: a token bucket per connection. 'pause' stops reading until tokens return
// (nothing dropped or reordered, keepalive does not time the client out); 'close' closes
// with 1008 `rate limit exceeded`. Each test floods at ten times the limit.
import t from 'tap'
import { startServer, connect, closed, until, sleep } from './helpers/server'

t.test("action 'pause': the message hook sees at most the limit's rate, and every message in order", async (t) => {
  const MESSAGES = 20
  const INTERVAL = 100
  const RATE = MESSAGES / INTERVAL // per ms
  const SENT = 400
  const seen: Array<{ n: number, at: number }> = []
  let start = 0
  const closes: Array<[number, string, string]> = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        rateLimit: { messages: MESSAGES, interval: INTERVAL, action: 'pause' },
        // Shorter than the time the flood takes to deliver: keepalive must not time the client out.
        pingInterval: 150,
        pingTimeout: 150,
        message (_socket, msg) { seen.push({ n: Number(msg), at: Date.now() - start }) },
        close (_socket, code, reason, details) { closes.push([code, reason, details.closedBy]) }
      }
    }, function open () {})
  })
  const ws = await connect(server.url('/ws'))
  start = Date.now()
  // Ten times the limit: 2000 messages/s for 0.2 s.
  for (let i = 0; i < SENT; i += 20) {
    for (let j = i; j < i + 20; j++) ws.send(String(j))
    await sleep(10)
  }
  let pongAt = 0
  ws.once('pong', () => { pongAt = Date.now() - start })
  ws.ping()
  await until(() => seen.length === SENT, 15_000, 'every message to reach the hook')
  t.same(seen.map(s => s.n), Array.from({ length: SENT }, (_, i) => i), 'all delivered, in order')
  let worst = 0
  for (let k = 0; k < seen.length; k++) {
    // A token bucket delivers at most its burst plus the refill since the start.
    const allowed = MESSAGES + RATE * seen[k].at + 1
    worst = Math.max(worst, (k + 1) / allowed)
  }
  t.ok(worst <= 1, `never ahead of the bucket (worst ${worst.toFixed(2)} of the allowance)`)
  const elapsed = seen[seen.length - 1].at
  t.ok(elapsed >= (SENT - MESSAGES) / RATE - 50, `delivery took ${elapsed} ms, as the rate demands`)
  await until(() => pongAt > 0, 5000, 'the client ping to be answered')
  t.ok(ws.readyState === ws.OPEN, 'keepalive did not time the paused client out')
  const gone = closed(ws)
  ws.close(1000, 'done')
  t.same(await gone, { code: 1000, reason: 'done' })
  await until(() => closes.length === 1, 5000, 'the close hook')
  t.same(closes, [[1000, 'done', 'client']])
})

t.test("action 'close': a flood closes with 1008 rate limit exceeded", async (t) => {
  const seen: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        rateLimit: { messages: 20, interval: 100, action: 'close' },
        message (_socket, msg) { seen.push(msg as string) }
      }
    }, function open () {})
  })
  const ws = await connect(server.url('/ws'))
  const gone = closed(ws)
  for (let i = 0; i < 400 && ws.readyState === ws.OPEN; i++) {
    ws.send(String(i))
    if (i % 20 === 19) await sleep(10)
  }
  t.same(await gone, { code: 1008, reason: 'rate limit exceeded' })
  t.ok(seen.length >= 20 && seen.length <= 30, `the hook saw the burst and no more (${seen.length})`)
  t.same(seen, seen.map((_, i) => String(i)), 'in order')
})

t.test('a client within the limit is never slowed', async (t) => {
  const seen: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        rateLimit: { messages: 50, interval: 100, action: 'close' },
        message (_socket, msg) { seen.push(msg as string) }
      }
    }, function open () {})
  })
  const ws = await connect(server.url('/ws'))
  for (let i = 0; i < 5; i++) {
    for (let j = 0; j < 20; j++) ws.send(`${i}.${j}`)
    await sleep(120)
  }
  await until(() => seen.length === 100, 5000, 'all messages')
  t.equal(ws.readyState, ws.OPEN)
  ws.close()
  await closed(ws)
})

t.test('bytes: the byte bucket limits too, and a message larger than it passes once it is full', async (t) => {
  const seen: Array<{ size: number, at: number }> = []
  let start = 0
  const server = await startServer(t, (app) => {
    app.get('/pause', {
      websocket: {
        rateLimit: { messages: 1000, bytes: 1000, interval: 200, action: 'pause' },
        message (_socket, msg) { seen.push({ size: (msg as string).length, at: Date.now() - start }) }
      }
    }, function open () {})
    app.get('/close', {
      websocket: { rateLimit: { messages: 1000, bytes: 1000, interval: 1000, action: 'close' }, message () {} }
    }, function open () {})
  })
  const ws = await connect(server.url('/pause'))
  start = Date.now()
  ws.send('x'.repeat(3000))
  for (let i = 0; i < 4; i++) ws.send('y'.repeat(500))
  await until(() => seen.length === 5, 10_000, 'every message')
  t.same(seen.map(s => s.size), [3000, 500, 500, 500, 500])
  t.ok(seen[0].at < 100, 'the big one passed at once: the bucket was full')
  // It left 2000 bytes of debt: 2500 bytes at 5 bytes/ms before the second.
  t.ok(seen[1].at >= 450, `the next waited for the debt (${seen[1].at} ms)`)
  ws.close()
  await closed(ws)

  const flood = await connect(server.url('/close'))
  const gone = closed(flood)
  for (let i = 0; i < 10 && flood.readyState === flood.OPEN; i++) flood.send('z'.repeat(300))
  t.same(await gone, { code: 1008, reason: 'rate limit exceeded' })
})
