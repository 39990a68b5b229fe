import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { startServer, connect, closed, messages, until, sleep, type StartOptions } from './helpers/server'
import { RawClient, Opcode, closePayload } from './helpers/raw'

const N = 1024

interface CloseSeen { code: number, reason: string }

/** A route that echoes the length of each message it gets and records its close hook. */
function lengthEcho (closes: CloseSeen[]) {
  return (app: FastifyInstance): void => {
    app.get('/ws', {
      websocket: {
        message (socket, msg) { return socket.send(String(Buffer.byteLength(msg as string))) },
        close (_socket, code, reason) { closes.push({ code, reason }) }
      }
    }, function open () {})
  }
}

async function sizeServer (t: tap.Test, closes: CloseSeen[], plugin: StartOptions['plugin'] = {}) {
  return startServer(t, lengthEcho(closes), { plugin: { maxMessageSize: N, closeTimeout: 1000, ...plugin } })
}

async function closeHookOnce (t: tap.Test, app: FastifyInstance, closes: CloseSeen[]): Promise<void> {
  await until(() => closes.length > 0, 5000, 'the close hook')
  await sleep(50)
  t.equal(closes.length, 1, 'the close hook ran once')
  t.equal(app.websocketClients.size, 0, 'websocketClients is empty')
}

t.test('maxMessageSize', async (t) => {
  t.test('a message of exactly maxMessageSize bytes is delivered', async (t) => {
    const closes: CloseSeen[] = []
    const server = await sizeServer(t, closes)
    const ws = await connect(server.url('/ws'))
    ws.send('x'.repeat(N))
    t.same(await messages(ws, 1), [String(N)])
    ws.send('é'.repeat(N / 2)) // counted in bytes: 2 bytes each
    t.same(await messages(ws, 1), [String(N)])
    ws.close()
    await closed(ws)
  })

  t.test('one byte more closes with 1009 "message too big"', async (t) => {
    const closes: CloseSeen[] = []
    const server = await sizeServer(t, closes)
    const ws = await connect(server.url('/ws'))
    const got: unknown[] = []
    ws.on('message', (m) => got.push(m))
    ws.send('x'.repeat(N + 1))
    const seen = await closed(ws)
    t.equal(seen.code, 1009)
    t.equal(seen.reason, 'message too big')
    t.same(got, [], 'the message was not delivered')
    await closeHookOnce(t, server.app, closes)
  })

  t.test('binary messages are limited as well', async (t) => {
    const closes: CloseSeen[] = []
    const server = await sizeServer(t, closes)
    const ws = await connect(server.url('/ws'))
    ws.send(Buffer.alloc(N + 1))
    const seen = await closed(ws)
    t.equal(seen.code, 1009)
    t.equal(seen.reason, 'message too big')
    await closeHookOnce(t, server.app, closes)
  })

  t.test('fragments summing to maxMessageSize + 1 close with 1009', async (t) => {
    const closes: CloseSeen[] = []
    const server = await sizeServer(t, closes)
    const client = await RawClient.open(server.port, '/ws')
    client.send({ opcode: Opcode.Text, fin: false, payload: 'a'.repeat(600) })
    client.send({ opcode: Opcode.Continuation, fin: false, payload: 'b'.repeat(N - 600) })
    client.send({ opcode: Opcode.Continuation, fin: true, payload: 'c' })
    const seen = await client.closing()
    t.equal(seen.code, 1009)
    t.equal(seen.reason, 'message too big')
    t.equal(client.frames.filter(f => f.opcode === Opcode.Text).length, 0, 'nothing was delivered')
    client.send({ opcode: Opcode.Close, payload: closePayload(1009) })
    client.socket.end()
    await closeHookOnce(t, server.app, closes)
  })

  t.test('fragments summing to exactly maxMessageSize are delivered', async (t) => {
    const closes: CloseSeen[] = []
    const server = await sizeServer(t, closes)
    const client = await RawClient.open(server.port, '/ws')
    client.send({ opcode: Opcode.Text, fin: false, payload: 'a'.repeat(600) })
    client.send({ opcode: Opcode.Continuation, fin: true, payload: 'b'.repeat(N - 600) })
    await client.until(() => client.frames.some(f => f.opcode === Opcode.Text), 5000, 'the echo')
    t.equal(client.frames.find(f => f.opcode === Opcode.Text)?.payload.toString(), String(N))
    client.destroy()
  })

  t.test('with compression, a message whose inflated size exceeds the limit closes with 1009', async (t) => {
    const closes: CloseSeen[] = []
    const server = await sizeServer(t, closes, { compression: true })
    const ws = await connect(server.url('/ws'), { perMessageDeflate: { threshold: 0 } })
    t.match(ws.extensions, /permessage-deflate/, 'compression was negotiated')
    ws.send('z'.repeat(N)) // compresses to a few bytes, inflates to exactly N
    t.same(await messages(ws, 1), [String(N)], 'exactly the limit after inflation is delivered')
    ws.send('z'.repeat(100 * N)) // a few hundred bytes on the wire, 100 KiB inflated
    const seen = await closed(ws)
    t.equal(seen.code, 1009)
    t.equal(seen.reason, 'message too big')
    await closeHookOnce(t, server.app, closes)
  })

  t.test('a frame header announcing 2^63 bytes is refused at once, without allocating', async (t) => {
    const closes: CloseSeen[] = []
    const server = await sizeServer(t, closes, { maxMessageSize: 10 * 1024 * 1024 })
    const before = process.memoryUsage().rss
    const client = await RawClient.open(server.port, '/ws')
    client.send({ opcode: Opcode.Binary, announce: 2n ** 63n })
    const seen = await client.closing(2000)
    t.equal(seen.code, 1009)
    t.equal(seen.reason, 'message too big')
    client.send({ opcode: Opcode.Close, payload: closePayload(1009) })
    client.socket.end()
    await closeHookOnce(t, server.app, closes)
    const growth = process.memoryUsage().rss - before
    t.ok(growth < 50 * 1024 * 1024, `rss grew ${(growth / 1048576).toFixed(1)} MiB`)
  })

  t.test('a frame header announcing more than the limit (below 2^53) is refused at once', async (t) => {
    const closes: CloseSeen[] = []
    const server = await sizeServer(t, closes)
    const before = process.memoryUsage().rss
    const client = await RawClient.open(server.port, '/ws')
    client.send({ opcode: Opcode.Text, announce: 2n ** 40n })
    const seen = await client.closing(2000)
    t.equal(seen.code, 1009)
    t.equal(seen.reason, 'message too big')
    client.destroy()
    await closeHookOnce(t, server.app, closes)
    const growth = process.memoryUsage().rss - before
    t.ok(growth < 50 * 1024 * 1024, `rss grew ${(growth / 1048576).toFixed(1)} MiB`)
  })

  t.test('a route overrides the plugin-wide maxMessageSize', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/big', {
        websocket: { maxMessageSize: 4 * N, message (socket, msg) { return socket.send(String((msg as string).length)) } }
      }, function open () {})
    }, { plugin: { maxMessageSize: N } })
    const ws = await connect(server.url('/big'))
    ws.send('x'.repeat(4 * N))
    t.same(await messages(ws, 1), [String(4 * N)])
    ws.send('x'.repeat(4 * N + 1))
    t.equal((await closed(ws)).code, 1009)
  })
})

t.test('compression', async (t) => {
  const offer = { 'sec-websocket-extensions': 'permessage-deflate; client_max_window_bits' }

  t.test('compression: true negotiates permessage-deflate', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/ws', { websocket: { message (socket, msg) { return socket.send(msg as string) } } }, function open () {})
    }, { plugin: { compression: true } })

    const raw = await RawClient.open(server.port, '/ws', offer)
    t.match(raw.handshake?.headers['sec-websocket-extensions'], /^permessage-deflate/, 'the 101 accepts the extension')
    raw.destroy()

    const ws = await connect(server.url('/ws'), { perMessageDeflate: { threshold: 0 } })
    t.match(ws.extensions, /permessage-deflate/, 'the ws client sees it negotiated')
    const text = 'compressible '.repeat(1000)
    ws.send(text)
    t.same(await messages(ws, 1), [text], 'messages round-trip through deflate')
    ws.close()
    await closed(ws)
  })

  t.test('a route can turn compression on', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/deflate', { websocket: { compression: { threshold: 0 } } }, function open () {})
      app.get('/plain', { websocket: true }, function open () {})
    })
    const on = await RawClient.open(server.port, '/deflate', offer)
    t.match(on.handshake?.headers['sec-websocket-extensions'], /^permessage-deflate/)
    const off = await RawClient.open(server.port, '/plain', offer)
    t.equal(off.handshake?.headers['sec-websocket-extensions'], undefined)
    on.destroy()
    off.destroy()
  })

  t.test('compression is off by default, even when the client offers it', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/ws', { websocket: true }, function open () {})
    })
    const raw = await RawClient.open(server.port, '/ws', offer)
    t.equal(raw.handshake?.status, 101)
    t.equal(raw.handshake?.headers['sec-websocket-extensions'], undefined, 'no extension header on the 101')
    raw.destroy()

    const ws = await connect(server.url('/ws'), { perMessageDeflate: true })
    t.equal(ws.extensions, '', 'the ws client sees no extension')
    ws.close()
    await closed(ws)
  })

  t.test('a compressed frame (RSV1) on a connection without compression is a protocol error', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/ws', { websocket: true }, function open () {})
    }, { plugin: { closeTimeout: 1000 } })
    const raw = await RawClient.open(server.port, '/ws', offer)
    raw.send({ opcode: Opcode.Text, rsv1: true, payload: Buffer.from([0xca, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]) })
    t.equal((await raw.closing()).code, 1002)
    raw.destroy()
  })
})
