import t from 'tap'
import WebSocket from 'ws'
import { startServer, connect, closed, until, sleep } from './helpers/server'
import { RawClient, Opcode, closePayload } from './helpers/raw'

interface CloseSeen { code: number, reason: string }

function pings (client: RawClient): number {
  return client.frames.filter(f => f.opcode === Opcode.Ping).length
}

t.test('a peer that never answers pings is closed with 1000 "ping timed out", then cut off after closeTimeout', async (t) => {
  const closes: CloseSeen[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: { close (_socket, code, reason) { closes.push({ code, reason }) } }
    }, function open () {})
  }, { plugin: { pingInterval: 100, closeTimeout: 1000 } })

  const client = await RawClient.open(server.port, '/ws')
  await client.until(() => pings(client) > 0, 5000, 'a ping')
  t.same(await client.closing(5000), { code: 1000, reason: 'ping timed out' })
  const closeFrameAt = Date.now()
  const order = client.frames.map(f => f.opcode)
  t.ok(order.indexOf(Opcode.Ping) < order.indexOf(Opcode.Close), 'pings came before the close frame')
  t.equal(client.closed, false, 'the server waits for the close handshake first')

  // The client stays silent: the server destroys the link after closeTimeout.
  await client.until(() => client.closed, 6000, 'the TCP close')
  const waited = (client.closedAt as number) - closeFrameAt
  t.ok(waited >= 700, `the link was kept for about closeTimeout (${waited} ms) before being destroyed`)
  t.ok(waited < 5000, `and destroyed soon after it (${waited} ms)`)

  await until(() => closes.length > 0, 5000, 'the close hook')
  await sleep(50)
  t.equal(closes.length, 1, 'the close hook ran once')
  t.equal(closes[0].code, 1006, 'with 1006: the peer never sent a close frame')
  t.equal(server.app.websocketClients.size, 0)
})

t.test('a peer that answers the close (but never pongs) gives the close hook its code', async (t) => {
  const closes: CloseSeen[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: { close (_socket, code, reason) { closes.push({ code, reason }) } }
    }, function open () {})
  }, { plugin: { pingInterval: 100, closeTimeout: 5000 } })

  const client = await RawClient.open(server.port, '/ws')
  t.same(await client.closing(5000), { code: 1000, reason: 'ping timed out' })
  client.send({ opcode: Opcode.Close, payload: closePayload(1000, 'bye') })
  await client.until(() => client.closed, 4000, 'the TCP close')
  await until(() => closes.length > 0, 5000, 'the close hook')
  await sleep(50)
  t.same(closes, [{ code: 1000, reason: 'bye' }])
  t.equal(server.app.websocketClients.size, 0)
})

t.test('a ws client (auto-pong) stays connected across many intervals', async (t) => {
  const closes: CloseSeen[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: { close (_socket, code, reason) { closes.push({ code, reason }) } }
    }, function open () {})
  }, { plugin: { pingInterval: 100 } })

  const ws = await connect(server.url('/ws'))
  let received = 0
  ws.on('ping', () => { received++ })
  await sleep(1000) // ten intervals
  t.equal(ws.readyState, WebSocket.OPEN, 'still open')
  t.ok(received >= 4, `the client was pinged (${received} pings in 10 intervals)`)
  t.equal(closes.length, 0, 'no close hook')
  t.equal(server.app.websocketClients.size, 1)
  ws.close(1000, 'done')
  t.same(await closed(ws), { code: 1000, reason: 'done' })
  await until(() => closes.length > 0, 5000, 'the close hook')
  t.same(closes, [{ code: 1000, reason: 'done' }])
})

t.test('pingInterval 0 sends no ping', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: true }, function open () {})
  }, { plugin: { pingInterval: 0 } })

  const client = await RawClient.open(server.port, '/ws')
  await sleep(500)
  t.equal(pings(client), 0, 'no ping within 500 ms')
  t.equal(client.closed, false)
  t.equal(client.frames.length, 0, 'nothing at all was sent')
  t.equal(server.app.websocketClients.size, 1)
  client.destroy()
  await until(() => server.app.websocketClients.size === 0, 5000, 'the server to forget the socket')
})

t.test('pingTimeout longer than pingInterval: one ping, then the close after the timeout', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { pingInterval: 100, pingTimeout: 1000 } }, function open () {})
  })

  const client = await RawClient.open(server.port, '/ws')
  await client.until(() => pings(client) > 0, 5000, 'a ping')
  const pingedAt = Date.now()
  t.same(await client.closing(6000), { code: 1000, reason: 'ping timed out' })
  const waited = Date.now() - pingedAt
  t.ok(waited >= 800, `the close waited for pingTimeout, not pingInterval (${waited} ms)`)
  t.equal(pings(client), 1, 'no second ping while the first is unanswered')
  client.destroy()
})

t.test('pingTimeout shorter than pingInterval: the ping comes after the interval, the close soon after', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { pingInterval: 1000, pingTimeout: 100 } }, function open () {})
  })

  const client = await RawClient.open(server.port, '/ws')
  const openedAt = Date.now()
  await client.until(() => pings(client) > 0, 5000, 'a ping')
  const pingedAt = Date.now()
  t.ok(pingedAt - openedAt >= 800, `the first ping waited for pingInterval (${pingedAt - openedAt} ms)`)
  t.same(await client.closing(5000), { code: 1000, reason: 'ping timed out' })
  const waited = Date.now() - pingedAt
  t.ok(waited < 900, `the close followed the ping by about pingTimeout, less than an interval (${waited} ms)`)
  client.destroy()
})

t.test('a route overrides the plugin-wide pingInterval', async (t) => {
  t.test('route on, plugin off', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/loud', { websocket: { pingInterval: 100 } }, function open () {})
      app.get('/default', { websocket: true }, function open () {})
    }, { plugin: { pingInterval: 0 } })
    const loud = await RawClient.open(server.port, '/loud')
    const plain = await RawClient.open(server.port, '/default')
    await loud.until(() => pings(loud) > 0, 5000, 'a ping on the route that turned keepalive on')
    await sleep(400)
    t.equal(pings(plain), 0, 'the other route keeps the plugin default (off)')
    loud.destroy()
    plain.destroy()
  })

  t.test('route off, plugin on', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/quiet', { websocket: { pingInterval: 0 } }, function open () {})
      app.get('/default', { websocket: true }, function open () {})
    }, { plugin: { pingInterval: 100 } })
    const quiet = await RawClient.open(server.port, '/quiet')
    const plain = await RawClient.open(server.port, '/default')
    await plain.until(() => pings(plain) > 0, 5000, 'a ping on the route with the plugin default')
    await sleep(400)
    t.equal(pings(quiet), 0, 'the route that turned keepalive off gets no ping')
    t.equal(quiet.closed, false, 'and is not timed out')
    quiet.destroy()
    plain.destroy()
  })
})

t.test('a route that overrides only pingInterval keeps the plugin-wide pingTimeout', async (t) => {
  // The plugin sets pingTimeout explicitly; the route does not override it.
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { pingInterval: 150 } }, function open () {})
  }, { plugin: { pingInterval: 100, pingTimeout: 1500 } })

  const client = await RawClient.open(server.port, '/ws')
  await client.until(() => pings(client) > 0, 5000, 'a ping')
  const pingedAt = Date.now()
  t.same(await client.closing(6000), { code: 1000, reason: 'ping timed out' })
  const waited = Date.now() - pingedAt
  t.ok(waited >= 1200, `the close waited for the plugin's pingTimeout of 1500 ms (${waited} ms)`)
  client.destroy()
})

t.test('a route that overrides pingInterval, with no pingTimeout set anywhere, times out after its own interval', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { pingInterval: 100 } }, function open () {})
  }, { plugin: { pingInterval: 5000 } })

  const client = await RawClient.open(server.port, '/ws')
  await client.until(() => pings(client) > 0, 3000, 'a ping after the route\'s interval')
  const pingedAt = Date.now()
  t.same(await client.closing(3000), { code: 1000, reason: 'ping timed out' })
  t.ok(Date.now() - pingedAt < 2500, 'pingTimeout followed the route\'s pingInterval, not the plugin\'s')
  client.destroy()
})

t.test('a route that overrides only pingTimeout keeps the plugin-wide pingInterval', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { pingTimeout: 1000 } }, function open () {})
  }, { plugin: { pingInterval: 100 } })

  const client = await RawClient.open(server.port, '/ws')
  await client.until(() => pings(client) > 0, 5000, 'a ping')
  const pingedAt = Date.now()
  t.same(await client.closing(6000), { code: 1000, reason: 'ping timed out' })
  t.ok(Date.now() - pingedAt >= 800, 'the route\'s pingTimeout applies')
  client.destroy()
})

t.test('the pong hook sees the client\'s pongs', async (t) => {
  const pongs: Buffer[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        pingInterval: 100,
        pong (_socket, data) { pongs.push(data) }
      }
    }, function open (socket) { socket.ping('hello') })
  })

  const ws = await connect(server.url('/ws'))
  await until(() => pongs.length >= 3, 5000, 'three pongs')
  t.ok(pongs.every(p => Buffer.isBuffer(p)), 'pong data is a Buffer')
  t.ok(pongs.some(p => p.toString() === 'hello'), 'the answer to socket.ping(data) carries the data')

  const before = pongs.length
  ws.pong('unsolicited')
  await until(() => pongs.some(p => p.toString() === 'unsolicited'), 5000, 'the unsolicited pong')
  t.ok(pongs.length > before)
  t.equal(ws.readyState, WebSocket.OPEN)
  ws.close()
  await closed(ws)
})

t.test('a client ping is answered with its data and reaches the ping hook', async (t) => {
  const seen: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: { ping (_socket, data) { seen.push(data.toString()) } }
    }, function open () {})
  }, { plugin: { pingInterval: 0 } })

  const ws = await connect(server.url('/ws'))
  const pong = new Promise<string>(resolve => ws.once('pong', (data: Buffer) => resolve(data.toString())))
  ws.ping('are you there')
  t.equal(await pong, 'are you there')
  await until(() => seen.length > 0, 5000, 'the ping hook')
  t.same(seen, ['are you there'])
  ws.close()
  await closed(ws)
})
