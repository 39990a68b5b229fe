import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { startServer, until, sleep, deferred, type TestServer } from './helpers/server'
import { RawClient, Opcode, closePayload, frame, upgradeRequest, type FrameSpec } from './helpers/raw'

interface Seen {
  opens: number
  closes: Array<{ code: number, reason: string }>
  messages: string[]
}

function trackedRoute (seen: Seen) {
  return (app: FastifyInstance): void => {
    app.get('/ws', {
      websocket: {
        message (socket, msg) {
          seen.messages.push(String(msg))
          return socket.send(String(msg))
        },
        close (_socket, code, reason) { seen.closes.push({ code, reason }) }
      }
    }, function open () { seen.opens++ })
  }
}

async function hostileServer (t: tap.Test): Promise<{ server: TestServer, seen: Seen }> {
  const seen: Seen = { opens: 0, closes: [], messages: [] }
  const server = await startServer(t, trackedRoute(seen), { plugin: { closeTimeout: 1000, pingInterval: 0 } })
  return { server, seen }
}

/** The close hook ran exactly once (open ran) and the socket left websocketClients. */
async function closeHookOnce (t: tap.Test, server: TestServer, seen: Seen): Promise<void> {
  t.equal(seen.opens, 1, 'open ran')
  await until(() => seen.closes.length > 0, 5000, 'the close hook')
  await sleep(50)
  t.equal(seen.closes.length, 1, `the close hook ran once (${seen.closes[0].code})`)
  t.equal(server.app.websocketClients.size, 0, 'websocketClients is empty')
}

/**
 * Opens a real connection, sends `frames` and expects the server to close with `code`.
 * The client then answers the close, as a well-behaved peer would, and hangs up.
 */
async function expectClose (t: tap.Test, frames: Array<FrameSpec | Buffer>, code: number): Promise<string> {
  const { server, seen } = await hostileServer(t)
  const client = await RawClient.open(server.port, '/ws')
  await until(() => seen.opens === 1, 5000, 'open')
  for (const f of frames) client.send(f)
  const close = await client.closing(5000)
  t.equal(close.code, code, `closed with ${code}`)
  t.ok(close.reason.length > 0, `with a reason: "${close.reason}"`)
  t.comment(`reason: ${close.reason}`)
  t.same(seen.messages, [], 'nothing reached the message hook')
  client.send({ opcode: Opcode.Close, payload: closePayload(code) })
  client.socket.end()
  await client.until(() => client.closed, 5000, 'the TCP close')
  await closeHookOnce(t, server, seen)
  return close.reason
}

t.test('an unmasked client frame → 1002', async (t) => {
  await expectClose(t, [{ opcode: Opcode.Text, payload: 'hi', mask: false }], 1002)
})

for (const rsv of ['rsv1', 'rsv2', 'rsv3'] as const) {
  t.test(`${rsv.toUpperCase()} set without an extension → 1002`, async (t) => {
    await expectClose(t, [{ opcode: Opcode.Text, payload: 'hi', [rsv]: true }], 1002)
  })
}

for (const opcode of [3, 7, 11, 15]) {
  t.test(`unknown opcode ${opcode} → 1002`, async (t) => {
    await expectClose(t, [{ opcode, payload: 'hi' }], 1002)
  })
}

t.test('a fragmented control frame (ping with fin=false) → 1002', async (t) => {
  await expectClose(t, [{ opcode: Opcode.Ping, fin: false, payload: 'x' }], 1002)
})

t.test('a control frame with a 126-byte payload → 1002', async (t) => {
  await expectClose(t, [{ opcode: Opcode.Ping, payload: Buffer.alloc(126) }], 1002)
})

t.test('a close frame with a 126-byte payload → 1002', async (t) => {
  await expectClose(t, [{ opcode: Opcode.Close, payload: closePayload(1000, 'x'.repeat(124)) }], 1002)
})

t.test('a continuation frame without a start → 1002', async (t) => {
  await expectClose(t, [{ opcode: Opcode.Continuation, payload: 'orphan' }], 1002)
})

t.test('a new text frame while a fragmented message is open → 1002', async (t) => {
  await expectClose(t, [
    { opcode: Opcode.Text, fin: false, payload: 'first half' },
    { opcode: Opcode.Text, fin: true, payload: 'intruder' }
  ], 1002)
})

t.test('a control frame between fragments is allowed', async (t) => {
  const { server, seen } = await hostileServer(t)
  const client = await RawClient.open(server.port, '/ws')
  client.send({ opcode: Opcode.Text, fin: false, payload: 'hel' })
  client.send({ opcode: Opcode.Ping, payload: 'mid' })
  client.send({ opcode: Opcode.Continuation, fin: true, payload: 'lo' })
  await client.until(() => client.frames.some(f => f.opcode === Opcode.Text), 5000, 'the echo')
  t.same(client.frames.map(f => [f.opcode, f.payload.toString()]), [[Opcode.Pong, 'mid'], [Opcode.Text, 'hello']])
  t.same(seen.messages, ['hello'])
  client.destroy()
})

t.test('invalid UTF-8 in a text message → 1007', async (t) => {
  await expectClose(t, [{ opcode: Opcode.Text, payload: Buffer.from([0x68, 0x69, 0xff, 0xfe]) }], 1007)
})

t.test('invalid UTF-8 split across fragments → 1007', async (t) => {
  // An overlong encoding, cut between two fragments.
  await expectClose(t, [
    { opcode: Opcode.Text, fin: false, payload: Buffer.from([0x61, 0xc0]) },
    { opcode: Opcode.Continuation, fin: true, payload: Buffer.from([0x80, 0x62]) }
  ], 1007)
})

t.test('a lone surrogate (CESU-8) in a text message → 1007', async (t) => {
  await expectClose(t, [{ opcode: Opcode.Text, payload: Buffer.from([0xed, 0xa0, 0x80]) }], 1007)
})

t.test('invalid UTF-8 in a close reason → 1007', async (t) => {
  await expectClose(t, [{ opcode: Opcode.Close, payload: closePayload(1000, Buffer.from([0xff, 0xfe])) }], 1007)
})

for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]) {
  t.test(`a close frame with the reserved code ${code} → 1002`, async (t) => {
    await expectClose(t, [{ opcode: Opcode.Close, payload: closePayload(code) }], 1002)
  })
}

t.test('a close frame with a 1-byte payload → 1002', async (t) => {
  await expectClose(t, [{ opcode: Opcode.Close, payload: Buffer.from([0x03]) }], 1002)
})

t.test('valid close codes are echoed and reach the close hook', async (t) => {
  for (const code of [1000, 1001, 1003, 1011, 3000, 4999]) {
    const { server, seen } = await hostileServer(t)
    const client = await RawClient.open(server.port, '/ws')
    client.send({ opcode: Opcode.Close, payload: closePayload(code, 'why') })
    const close = await client.closing(5000)
    t.equal(close.code, code, `${code} is echoed`)
    await client.until(() => client.closed, 5000, 'the TCP close')
    await closeHookOnce(t, server, seen)
    t.same(seen.closes, [{ code, reason: 'why' }])
  }
})

t.test('an empty close frame: the hook gets 1005', async (t) => {
  const { server, seen } = await hostileServer(t)
  const client = await RawClient.open(server.port, '/ws')
  client.send({ opcode: Opcode.Close })
  await client.closing(5000)
  await client.until(() => client.closed, 5000, 'the TCP close')
  await closeHookOnce(t, server, seen)
  t.equal(seen.closes[0].code, 1005)
})

t.test('frames after the protocol error are ignored', async (t) => {
  const { server, seen } = await hostileServer(t)
  const client = await RawClient.open(server.port, '/ws')
  client.send(Buffer.concat([
    frame({ opcode: Opcode.Text, payload: 'hi', mask: false }),
    frame({ opcode: Opcode.Text, payload: 'after' })
  ]))
  t.equal((await client.closing(5000)).code, 1002)
  await sleep(100)
  client.send({ opcode: Opcode.Text, payload: 'later' })
  await sleep(100)
  t.same(seen.messages, [], 'no message was delivered')
  t.equal(client.frames.filter(f => f.opcode === Opcode.Text).length, 0)
  client.destroy()
  await closeHookOnce(t, server, seen)
})

t.test('a handshake that never finishes', async (t) => {
  t.test('is dropped after Fastify\'s connectionTimeout', async (t) => {
    const seen: Seen = { opens: 0, closes: [], messages: [] }
    const server = await startServer(t, trackedRoute(seen), { fastify: { connectionTimeout: 1000 } })
    const client = await RawClient.connectOnly(server.port)
    const start = Date.now()
    client.socket.write('GET /ws HTT')
    await client.until(() => client.closed, 5000, 'the server to drop the half request')
    const waited = Date.now() - start
    t.ok(waited >= 700, `not before the timeout (${waited} ms)`)
    t.ok(waited < 5000, `within the bound (${waited} ms)`)
    t.equal(seen.opens, 0, 'open never ran')
    t.equal(seen.closes.length, 0, 'nor close')
    t.equal(server.app.websocketClients.size, 0)
  })

  t.test('headers that never end are dropped after connectionTimeout too', async (t) => {
    const seen: Seen = { opens: 0, closes: [], messages: [] }
    const server = await startServer(t, trackedRoute(seen), { fastify: { connectionTimeout: 1000 } })
    const client = await RawClient.connectOnly(server.port)
    client.socket.write('GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n')
    // One more header line now and then keeps the connection busy, never complete.
    for (let i = 0; i < 3 && !client.closed; i++) {
      await sleep(200)
      if (!client.closed) client.socket.write(`X-Slow-${i}: 1\r\n`)
    }
    await client.until(() => client.closed, 5000, 'the server to drop the slow request')
    t.equal(seen.opens, 0)
  })

  t.test('an upgraded connection is not subject to connectionTimeout', async (t) => {
    const seen: Seen = { opens: 0, closes: [], messages: [] }
    const server = await startServer(t, trackedRoute(seen), { fastify: { connectionTimeout: 300 }, plugin: { pingInterval: 0 } })
    const client = await RawClient.open(server.port, '/ws')
    await sleep(800)
    t.equal(client.closed, false, 'an idle WebSocket outlives the HTTP connection timeout')
    client.send({ opcode: Opcode.Text, payload: 'still here' })
    await client.until(() => client.frames.some(f => f.opcode === Opcode.Text), 5000, 'the echo')
    client.destroy()
    await closeHookOnce(t, server, seen)
  })
})

t.test('a connection dropped mid-frame', async (t) => {
  const cut: Array<[string, Buffer]> = [
    ['in the header', frame({ opcode: Opcode.Text, payload: 'x'.repeat(300) }).subarray(0, 3)],
    ['in the payload', frame({ opcode: Opcode.Text, payload: 'x'.repeat(300) }).subarray(0, 100)],
    ['in a fragmented message', frame({ opcode: Opcode.Text, fin: false, payload: 'half of a' })]
  ]
  for (const [where, bytes] of cut) {
    t.test(where, async (t) => {
      const { server, seen } = await hostileServer(t)
      const client = await RawClient.open(server.port, '/ws')
      await until(() => seen.opens === 1, 5000, 'open')
      client.send(bytes)
      await sleep(50)
      client.destroy()
      await closeHookOnce(t, server, seen)
      t.equal(seen.closes[0].code, 1006)
      t.same(seen.messages, [])
    })
  }

  t.test('with a half-close (FIN) instead of a reset', async (t) => {
    const { server, seen } = await hostileServer(t)
    const client = await RawClient.open(server.port, '/ws')
    await until(() => seen.opens === 1, 5000, 'open')
    client.send(frame({ opcode: Opcode.Text, payload: 'x'.repeat(300) }).subarray(0, 100))
    client.socket.end()
    await closeHookOnce(t, server, seen)
    t.equal(seen.closes[0].code, 1006)
    await client.until(() => client.closed, 5000, 'the server to close its side')
  })
})

t.test('a message split into a huge number of tiny fragments is cut off', async (t) => {
  const { server, seen } = await hostileServer(t)
  const client = await RawClient.open(server.port, '/ws')
  await until(() => seen.opens === 1, 5000, 'open')
  const FRAGMENTS = 20_000 // 20 KB of payload: far below maxMessageSize, far above any sane fragment count
  const batch: Buffer[] = [frame({ opcode: Opcode.Text, fin: false, payload: 'a' })]
  for (let i = 1; i < FRAGMENTS; i++) batch.push(frame({ opcode: Opcode.Continuation, fin: false, payload: 'a' }))
  client.send(Buffer.concat(batch))
  const close = await client.closing(5000)
  t.ok(close.code === 1008 || close.code === 1009, `closed with ${close.code} "${close.reason}"`)
  t.same(seen.messages, [])
  client.destroy()
  await closeHookOnce(t, server, seen)
})

t.test('a client that floods pings and never reads the pongs is cut off', async (t) => {
  const { server, seen } = await hostileServer(t)
  const client = await RawClient.open(server.port, '/ws')
  await until(() => seen.opens === 1, 5000, 'open')
  client.socket.pause()
  const socket = [...server.app.websocketClients][0]
  let maxBuffered = 0
  const sampler = setInterval(() => { maxBuffered = Math.max(maxBuffered, socket.bufferedAmount) }, 5)
  t.teardown(() => clearInterval(sampler))
  const batch = Buffer.concat(Array.from({ length: 1000 }, () => frame({ opcode: Opcode.Ping, payload: Buffer.alloc(125, 1) })))
  const start = Date.now()
  let batches = 0
  // At most 64 MiB of pings, for at most 15 s.
  while (batches < 500 && !client.closed && Date.now() - start < 15_000) {
    if (!client.socket.write(batch)) {
      await new Promise(resolve => { client.socket.once('drain', resolve); setTimeout(resolve, 100) })
    }
    batches++
  }
  await until(() => seen.closes.length > 0, 5000, 'the server to drop the connection')
  clearInterval(sampler)
  t.ok(batches < 500, `cut off after ${(batches * batch.length / 1048576).toFixed(1)} MiB of pings`)
  t.ok(maxBuffered < 16 * 1024 * 1024, `the pongs queued on the server stayed bounded (${maxBuffered} bytes)`)
  await closeHookOnce(t, server, seen)
  client.destroy()
})

t.test('a protocol error while the handler is busy drops what is queued', async (t) => {
  const gate = deferred()
  const seen: Seen = { opens: 0, closes: [], messages: [] }
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        async message (_socket, msg) {
          seen.messages.push(String(msg))
          if (seen.messages.length === 1) await gate.promise
        },
        close (_socket, code, reason) { seen.closes.push({ code, reason }) }
      }
    }, function open () { seen.opens++ })
  }, { plugin: { closeTimeout: 1000, pingInterval: 0 } })
  const client = await RawClient.open(server.port, '/ws')
  client.send({ opcode: Opcode.Text, payload: 'first' })
  await until(() => seen.messages.length === 1, 5000, 'the first message')
  client.send({ opcode: Opcode.Text, payload: 'queued 1' })
  client.send({ opcode: Opcode.Text, payload: 'queued 2' })
  client.send({ opcode: Opcode.Text, payload: 'bad', mask: false })
  t.equal((await client.closing(5000)).code, 1002, 'the protocol error is answered at once, though the handler is blocked')
  client.destroy()
  await sleep(100)
  t.same(seen.closes, [], 'the close hook waits for the running handler')
  gate.resolve()
  await closeHookOnce(t, server, seen)
  t.same(seen.messages, ['first'], 'the queued messages were dropped')
})

t.test('frames sent together with the upgrade request are not lost', async (t) => {
  const { server, seen } = await hostileServer(t)
  const client = await RawClient.connectOnly(server.port)
  client.send(Buffer.concat([
    Buffer.from(upgradeRequest('/ws')),
    frame({ opcode: Opcode.Text, payload: 'early bird' }),
    frame({ opcode: Opcode.Text, payload: 'second' })
  ]))
  await client.until(() => client.frames.filter(f => f.opcode === Opcode.Text).length === 2, 5000, 'two echoes')
  t.equal(client.handshake?.status, 101)
  t.same(seen.messages, ['early bird', 'second'])
  client.destroy()
  await closeHookOnce(t, server, seen)
})

t.test('a bad frame sent together with the upgrade request → 1002', async (t) => {
  const { server, seen } = await hostileServer(t)
  const client = await RawClient.connectOnly(server.port)
  client.send(Buffer.concat([
    Buffer.from(upgradeRequest('/ws')),
    frame({ opcode: Opcode.Text, payload: 'unmasked', mask: false })
  ]))
  t.equal((await client.closing(5000)).code, 1002)
  t.equal(client.handshake?.status, 101)
  t.same(seen.messages, [])
  client.destroy()
  await closeHookOnce(t, server, seen)
})

t.test('many protocol errors at once leave nothing behind', async (t) => {
  const { server, seen } = await hostileServer(t)
  const bad: FrameSpec[] = [
    { opcode: Opcode.Text, payload: 'hi', mask: false },
    { opcode: 3 },
    { opcode: Opcode.Ping, fin: false },
    { opcode: Opcode.Continuation, payload: 'x' },
    { opcode: Opcode.Text, payload: Buffer.from([0xff]) },
    { opcode: Opcode.Close, payload: closePayload(1005) }
  ]
  const clients = await Promise.all(Array.from({ length: 30 }, () => RawClient.open(server.port, '/ws')))
  clients.forEach((c, i) => c.send(bad[i % bad.length]))
  await Promise.all(clients.map(c => c.closing(5000)))
  for (const c of clients) c.destroy()
  await until(() => seen.closes.length === clients.length, 5000, 'every close hook')
  await sleep(50)
  t.equal(seen.opens, clients.length)
  t.equal(seen.closes.length, clients.length, 'one close hook per connection')
  t.equal(server.app.websocketClients.size, 0)
})
