// The typed client (fastify-typed-websocket/client, the built package) against real servers,
// on `ws` and on undici's WebSocket: messages, reconnect, refusals, requests, the queue.
import t from 'tap'
import { createServer, type AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import WsWebSocket from 'ws'
import { Agent, WebSocket as UndiciWebSocket } from 'undici'
import {
  AbortError, ClientQueueFullError, ConnectionClosedError, InvalidServerMessageError, TimeoutError, connect,
  type ClientOptions, type WebSocketConstructor
} from 'fastify-typed-websocket/client'
import { sleep, startServer, until, type TestServer } from './helpers/server'
import { echo, implementations, recordStates, waitState } from './helpers/client'

interface TypedEcho { send (msg: { type: 'answer', id: string, delay: number }): Promise<void> }

interface Echo { server: TestServer, received: string[], tokens: string[], requests: number, plainGets: number }

/** The echo route: `say` → `said`, `ask` → `answer` after `delay` ms, `bye` → close(code, reason). */
async function startEcho (t: tap.Test, port = 0, hook?: (app: FastifyInstance, echo: Echo) => void): Promise<Echo> {
  const state = { received: [] as string[], tokens: [] as string[], requests: 0, plainGets: 0 } as Echo
  state.server = await startServer(t, (app) => {
    app.addHook('onRequest', async (request) => {
      state.requests++
      if (request.headers.upgrade === undefined) state.plainGets++
    })
    hook?.(app, state)
    app.get('/echo', {
      websocket: {
        ...echo,
        heartbeat: true,
        async message (socket, msg) {
          if (msg.type === 'say') {
            state.received.push(msg.text)
            await socket.send({ type: 'said', text: msg.text })
          } else if (msg.type === 'ask') {
            setTimeout(() => { if (socket.isOpen) socket.send({ type: 'answer', id: msg.id, delay: msg.delay }) }, msg.delay)
          } else {
            socket.close(msg.code, msg.reason)
          }
        }
      }
    }, (_socket, request) => {
      state.tokens.push(String((request.query as Record<string, string>).token))
    })
  }, { fastify: { forceCloseConnections: true }, listen: port === 0 ? undefined : false })
  if (port !== 0) {
    await state.server.app.listen({ host: '127.0.0.1', port })
    state.server.port = port
    state.server.url = (path) => `ws://127.0.0.1:${port}${path}`
  }
  return state
}

/** A port nothing listens on (right now). */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise(resolve => server.close(resolve))
  return port
}

const fast = { initialDelay: 20, maxDelay: 100 }

for (const [name, WebSocket] of implementations) {
  t.test(`${name}: typed messages both ways, in order, then close()`, async (t) => {
    const { server } = await startEcho(t)
    const client = connect(echo, server.url('/echo'), { WebSocket })
    const states = recordStates(client)
    const said: string[] = []
    const all: string[] = []
    client.on('said', (msg) => { said.push(msg.text) })
    client.on('message', (msg) => { all.push(msg.type) })
    for (const text of ['one', 'two', 'three']) client.send({ type: 'say', text })
    await waitState(client, 'open')
    await until(() => said.length === 3, 5000, 'three said')
    t.strictSame(said, ['one', 'two', 'three'], 'sent before open: queued, then sent in order')
    t.strictSame(all, ['said', 'said', 'said'])
    client.close()
    t.equal(client.state, 'closed')
    t.strictSame(states, ['connecting', 'open', 'closed'])
    t.throws(() => client.send({ type: 'say', text: 'late' }), ConnectionClosedError, 'a closed client refuses sends')
  })

  t.test(`${name}: reconnects after a server restart; queued sends go out first, in order`, async (t) => {
    const first = await startEcho(t)
    const port = first.server.port
    let attempts = 0
    const client = connect(echo, first.server.url('/echo'), {
      WebSocket,
      reconnect: fast,
      query: () => ({ token: `t${++attempts}` })
    })
    t.teardown(() => client.close())
    const said: string[] = []
    client.on('said', (msg) => { said.push(msg.text) })
    await waitState(client, 'open')
    client.send({ type: 'say', text: 'before' })
    await until(() => said.length === 1, 5000, 'first said')
    await first.server.app.close()
    await waitState(client, 'reconnecting')
    t.equal(client.closeCode, 1001)
    t.equal(client.closeReason, 'server shutting down')
    for (const text of ['q1', 'q2', 'q3']) client.send({ type: 'say', text })
    await sleep(150) // a few failed attempts against the closed port
    t.ok(client.attempt >= 1, `attempts counted while down (${client.attempt})`)
    const off = client.on('state', (state) => { if (state === 'open') client.send({ type: 'say', text: 'after' }) })
    const second = await startEcho(t, port)
    await waitState(client, 'open')
    off()
    await until(() => second.received.length === 4, 5000, 'four messages on the new server')
    t.strictSame(second.received, ['q1', 'q2', 'q3', 'after'], 'the queue first, in order, then sends made once open')
    t.equal(client.attempt, 0, 'reset once open')
    t.equal(first.tokens.length, 1)
    t.equal(second.tokens.length, 1)
    t.not(second.tokens[0], first.tokens[0], 'query was evaluated again for the new attempt')
  })

  t.test(`${name}: a 401 from a hook ends in refused, with status and body, not retried`, async (t) => {
    const echoServer = await startEcho(t, 0, (app) => {
      app.addHook('preValidation', async (request, reply) => {
        if ((request.query as Record<string, string>).token !== 'good') {
          return reply.code(401).send({ error: 'Unauthorized', message: 'invalid or expired token' })
        }
      })
    })
    const client = connect(echo, echoServer.server.url('/echo'), { WebSocket, reconnect: fast, query: { token: 'bad' } })
    const states = recordStates(client)
    await waitState(client, 'refused')
    t.strictSame(states, ['connecting', 'refused'])
    t.equal(client.refusal?.status, 401)
    t.strictSame(JSON.parse(client.refusal?.body ?? ''), { error: 'Unauthorized', message: 'invalid or expired token' })
    const requests = echoServer.requests
    t.equal(echoServer.plainGets, 1, 'one plain GET after the failed upgrade')
    await sleep(300)
    t.equal(echoServer.requests, requests, 'no further attempt')
    t.throws(() => client.send({ type: 'say', text: 'x' }), ConnectionClosedError)
  })
}

t.test('403, 404 and 429 are refusals too', async (t) => {
  for (const status of [403, 404, 429]) {
    const { server } = await startEcho(t, 0, (app) => {
      app.addHook('onRequest', async (request, reply) => { if (request.url.startsWith('/echo')) return reply.code(status).send(`no: ${status}`) })
    })
    const client = connect(echo, server.url('/echo'), { WebSocket: implementations[0][1], reconnect: fast })
    await waitState(client, 'refused')
    t.strictSame(client.refusal, { status, body: `no: ${status}` }, String(status))
  }
})

t.test('5xx answers and network errors are retried until the server accepts', async (t) => {
  const port = await freePort()
  const client = connect(echo, `ws://127.0.0.1:${port}/echo`, { WebSocket: implementations[0][1], reconnect: fast })
  t.teardown(() => client.close())
  const states = recordStates(client)
  await until(() => client.attempt >= 3, 5000, 'three attempts against a closed port')
  t.equal(client.state, 'reconnecting')
  let refusals = 2
  const echoServer = await startEcho(t, port, (app) => {
    app.addHook('onRequest', async (request, reply) => {
      if (refusals > 0 && request.headers.upgrade !== undefined) {
        refusals--
        return reply.code(503).send('starting')
      }
    })
  })
  await waitState(client, 'open')
  t.equal(refusals, 0, 'both 503s were seen')
  t.notOk(states.includes('refused'))
  t.ok(echoServer.requests >= 3)
})

t.test('a handshake refused after the hooks passed (the probe gets 400) is retried', async (t) => {
  let allow = false
  const { server } = await startEcho(t, 0, (app) => { app.addHook('onRequest', async () => {}) })
  // a route whose origin check fails until `allow`
  server.app.log.debug('origin test')
  class FromElsewhere extends WsWebSocket {
    constructor (url: string, protocols?: string | string[]) { super(url, protocols, { origin: allow ? `http://127.0.0.1:${server.port}` : 'http://elsewhere.example' }) }
  }
  const client = connect(echo, server.url('/echo'), { WebSocket: FromElsewhere as unknown as WebSocketConstructor, reconnect: fast })
  t.teardown(() => client.close())
  await until(() => client.attempt >= 2, 5000, 'two attempts')
  t.equal(client.state, 'reconnecting', 'a 403 from the origin check is not a refusal by the app')
  allow = true
  await waitState(client, 'open')
})

t.test('no reconnect after 1002, 1003, 1007, 1009, 1010 or a code in noReconnect; reconnect after others, 1008 too', async (t) => {
  const { server } = await startEcho(t)
  for (const [code, expected] of [[4001, 'closed'], [1008, 'reconnecting'], [1009, 'closed'], [1003, 'closed'], [1011, 'reconnecting'], [4002, 'reconnecting']] as const) {
    const client = connect(echo, server.url('/echo'), { WebSocket: implementations[0][1], reconnect: fast, noReconnect: [4001] })
    t.teardown(() => client.close())
    await waitState(client, 'open')
    client.send({ type: 'bye', code, reason: `bye ${code}` })
    await waitState(client, expected)
    t.equal(client.closeCode, code)
    t.equal(client.closeReason, `bye ${code}`)
    if (expected === 'reconnecting') await waitState(client, 'open')
    client.close()
  }
})

t.test('a client cut with 1008 `rate limit exceeded` comes back by itself, and its later sends arrive', async (t) => {
  const received: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/limited', {
      websocket: {
        ...echo,
        rateLimit: { messages: 3, interval: 60_000, action: 'close' },
        message (_socket, msg) { if (msg.type === 'say') received.push(msg.text) }
      }
    }, () => {})
  })
  const client = connect(echo, server.url('/limited'), { WebSocket: implementations[0][1], reconnect: fast })
  t.teardown(() => client.close())
  const states = recordStates(client)
  await waitState(client, 'open')
  for (let i = 1; i <= 4; i++) client.send({ type: 'say', text: `m${i}` })
  await waitState(client, 'reconnecting')
  t.equal(client.closeCode, 1008)
  t.equal(client.closeReason, 'rate limit exceeded')
  await waitState(client, 'open')
  client.send({ type: 'say', text: 'after' })
  await until(() => received.includes('after'), 5000, 'the send after the reconnect')
  t.strictSame(received, ['m1', 'm2', 'm3', 'after'], 'the message past the limit was refused, the one after the reconnect arrived')
  t.strictSame(states.slice(0, 4), ['connecting', 'open', 'reconnecting', 'open'])
})

t.test('two clients in one process never share a request id; another client\'s id settles nothing', async (t) => {
  const seen: string[] = []
  const sockets: TypedEcho[] = []
  const server = await startServer(t, (app) => {
    app.get('/ids', {
      websocket: {
        ...echo,
        message (_socket, msg) { if (msg.type === 'ask') seen.push(msg.id) }
      }
    }, (socket) => { sockets.push(socket as unknown as TypedEcho) })
  })
  const a = connect(echo, server.url('/ids'), { WebSocket: implementations[0][1] })
  const b = connect(echo, server.url('/ids'), { WebSocket: implementations[0][1] })
  t.teardown(() => { a.close(); b.close() })
  await waitState(a, 'open')
  await waitState(b, 'open')
  const fromA = a.request({ type: 'ask', delay: 0 }, { timeout: 5000 })
  const fromB = b.request({ type: 'ask', delay: 0 }, { timeout: 5000 })
  await until(() => seen.length === 2, 5000, 'both requests at the server')
  const [idA, idB] = seen
  t.not(idA, idB, 'the first requests of two clients carry different ids')
  t.match(idA, /^[0-9a-z]{8}-1$/)
  t.match(idB, /^[0-9a-z]{8}-1$/)
  // The server sends B an answer carrying A's id: it reaches B as a plain message.
  const plain = new Promise<unknown>(resolve => b.on('answer', resolve))
  const [socketA, socketB] = sockets
  await socketB.send({ type: 'answer', id: idA, delay: 1 })
  t.match(await plain, { type: 'answer', id: idA }, 'another client\'s id is an ordinary message')
  await socketB.send({ type: 'answer', id: idB, delay: 2 })
  t.match(await fromB, { id: idB, delay: 2 }, 'B\'s request is settled by its own id only')
  await socketA.send({ type: 'answer', id: idA, delay: 3 })
  t.match(await fromA, { id: idA, delay: 3 })
  const more = a.request({ type: 'ask', delay: 0 }, { timeout: 5000 }).catch(() => {})
  await until(() => seen.length === 3, 5000, 'a second request')
  t.equal(seen[2], idA.replace(/-1$/, '-2'), 'one client numbers its requests under one prefix')
  a.close()
  await more
})

t.test('reconnect: false closes for good after the first loss', async (t) => {
  const { server } = await startEcho(t)
  const client = connect(echo, server.url('/echo'), { WebSocket: implementations[0][1], reconnect: false })
  await waitState(client, 'open')
  client.send({ type: 'bye', code: 1011, reason: 'boom' })
  await waitState(client, 'closed')
  t.equal(client.closeCode, 1011)
})

for (const [name, WebSocket] of implementations) {
  t.test(`${name}: request() answers, timeouts, closes and aborts are distinct`, async (t) => {
    const { server } = await startEcho(t)
    const client = connect(echo, server.url('/echo'), { WebSocket, reconnect: fast })
    t.teardown(() => client.close())
    const seen: string[] = []
    client.on('message', (msg) => { seen.push(msg.type) })
    // sent before open: queued, answered once connected; answered out of order
    const slow = client.request({ type: 'ask', delay: 150 })
    const quick = client.request({ type: 'ask', delay: 10 })
    const [a, b] = await Promise.all([slow, quick])
    t.match(a, { type: 'answer', delay: 150 })
    t.match(b, { type: 'answer', delay: 10 })
    t.not((a as { id: string }).id, (b as { id: string }).id, 'unique ids')

    const timedOut = await client.request({ type: 'ask', delay: 200 }, { timeout: 30 }).catch((err: unknown) => err)
    t.type(timedOut, TimeoutError)
    t.equal((timedOut as TimeoutError).code, 'FST_WS_CLIENT_TIMEOUT')
    await sleep(300)
    t.strictSame(seen, [], 'answers, even late ones, never reach the message listeners')

    const controller = new AbortController()
    const aborted = client.request({ type: 'ask', delay: 100 }, { signal: controller.signal }).catch((err: unknown) => err)
    controller.abort()
    const abortError = await aborted
    t.type(abortError, AbortError)
    t.equal((abortError as Error).name, 'AbortError')

    const cut = client.request({ type: 'ask', delay: 1000 }, { timeout: 5000 }).catch((err: unknown) => err)
    await sleep(20)
    client.send({ type: 'bye', code: 1011, reason: 'going' })
    const closedError = await cut
    t.type(closedError, ConnectionClosedError)
    t.equal((closedError as ConnectionClosedError).closeCode, 1011)
    t.notOk(closedError instanceof TimeoutError)
    await waitState(client, 'open')
    t.match(await client.request({ type: 'ask', delay: 0 }), { type: 'answer' }, 'works again after the reconnect')

    const pending = client.request({ type: 'ask', delay: 1000 }).catch((err: unknown) => err)
    client.close()
    t.type(await pending, ConnectionClosedError, 'close() rejects what is pending')
  })
}

t.test('the offline queue is bounded in messages and bytes', async (t) => {
  const port = await freePort()
  const options: ClientOptions<typeof echo> = { WebSocket: implementations[0][1], reconnect: fast, maxQueue: { messages: 2, bytes: 100 } }
  const client = connect(echo, `ws://127.0.0.1:${port}/echo`, options)
  t.teardown(() => client.close())
  client.send({ type: 'say', text: 'a' })
  client.send({ type: 'say', text: 'b' })
  t.throws(() => client.send({ type: 'say', text: 'c' }), ClientQueueFullError)
  const bytes = connect(echo, `ws://127.0.0.1:${port}/echo`, options)
  t.teardown(() => bytes.close())
  t.throws(() => bytes.send({ type: 'say', text: 'é'.repeat(50) }), { code: 'FST_WS_CLIENT_QUEUE_FULL' }, '100 characters, 125 bytes')
  await t.rejects(client.request({ type: 'ask', delay: 0 }), ClientQueueFullError, 'a request that cannot be queued rejects')
})

t.test('heartbeat: rtt is measured, the server answers without calling message', async (t) => {
  const echoServer = await startEcho(t)
  const client = connect(echo, echoServer.server.url('/echo'), { WebSocket: implementations[1][1], heartbeat: { interval: 30, timeout: 1000 } })
  t.teardown(() => client.close())
  await waitState(client, 'open')
  t.equal(client.rtt, undefined)
  await until(() => client.rtt !== undefined, 5000, 'a heartbeat answer')
  t.ok((client.rtt as number) >= 0)
  await sleep(100)
  t.strictSame(echoServer.received, [], 'heartbeats never reached message')
  t.equal(client.state, 'open')
})

t.test('a server message that fails outbound is reported with validate: true', async (t) => {
  const Strict = { inbound: Type.Object({ type: Type.Literal('go') }), outbound: Type.Object({ type: Type.Literal('n'), n: Type.Integer() }) }
  const { server } = await startServer(t, (app) => {
    app.get('/bad', { websocket: { ...Strict, message: (socket) => { socket.send('{"type":"n","n":"one"}'); socket.send('not json'); socket.send({ type: 'n', n: 1 }) } } }, () => {})
  }).then(server => ({ server }))
  const client = connect(Strict, server.url('/bad'), { WebSocket: implementations[0][1], validate: true })
  t.teardown(() => client.close())
  const errors: Error[] = []
  const got: number[] = []
  client.on('invalidMessage', (err) => { errors.push(err) })
  client.on('n', (msg) => { got.push(msg.n) })
  client.send({ type: 'go' })
  await until(() => got.length === 1 && errors.length === 2, 5000, 'one message and two errors')
  t.strictSame(got, [1])
  t.type(errors[0], InvalidServerMessageError)
  t.match(errors[0].message, /\/n/)
  t.match(errors[1].message, /not JSON/)
})

t.test('an http: URL is turned into ws:, and a bad scheme or missing WebSocket throws', async (t) => {
  const { server } = await startEcho(t)
  const client = connect(echo, `http://127.0.0.1:${server.port}/echo`, { WebSocket: implementations[0][1] })
  t.teardown(() => client.close())
  await waitState(client, 'open')
  t.throws(() => connect(echo, 'ftp://127.0.0.1/echo', { WebSocket: implementations[0][1] }), TypeError)
  t.throws(() => connect(echo, 'ws://127.0.0.1/echo'), /No global WebSocket/, 'Node 20 has none: pass ws')
})

// undici's WebSocket as Node's global one is: (url, { protocols, headers }), with its own dispatcher.
class UndiciWithInit extends UndiciWebSocket {
  constructor (url: string, init: { protocols?: string | string[], headers?: Record<string, string> }) {
    const dispatcher = new Agent()
    super(url, { ...init, dispatcher })
    this.addEventListener('close', () => { dispatcher.destroy().catch(() => {}) }, { once: true })
  }
}

for (const [name, WebSocket] of [['ws', WsWebSocket], ['undici (Node\'s global WebSocket)', UndiciWithInit]] as const) {
  t.test(`${name}: headers go with the upgrade and with the refusal probe`, async (t) => {
    const seen: string[] = []
    const echoServer = await startEcho(t, 0, (app) => {
      app.addHook('preValidation', async (request, reply) => {
        seen.push(`${request.headers.upgrade === undefined ? 'probe' : 'upgrade'} ${String(request.headers.authorization)}`)
        if (request.headers.authorization !== 'Bearer good') return reply.code(401).send({ error: 'Unauthorized', message: 'bad token' })
      })
    })
    let token = 'good'
    const client = connect(echo, echoServer.server.url('/echo'), {
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      reconnect: fast,
      headers: () => ({ authorization: `Bearer ${token}` })
    })
    await waitState(client, 'open')
    client.send({ type: 'say', text: 'with a header' })
    await until(() => echoServer.received.length === 1, 5000, 'the message')
    token = 'stale'
    client.send({ type: 'bye', code: 4000, reason: 'again' })
    await waitState(client, 'refused')
    t.equal(client.refusal?.status, 401)
    t.equal(seen[0], 'upgrade Bearer good')
    t.ok(seen.includes('upgrade Bearer stale') && seen.includes('probe Bearer stale'), seen.join(', '))
    t.strictSame(seen.slice(1).filter(s => !s.endsWith('Bearer stale')), [], 'each attempt sends the headers of its time')
    t.equal(seen.at(-1), 'probe Bearer stale', 'the probe, then nothing more')
  })
}

t.test('a route that does not answer heartbeats: the close reason says so', async (t) => {
  // What a route with inbound and without heartbeat: true answered an empty text message with.
  const server = await startServer(t, (app) => {
    app.get('/old', {
      websocket: {
        message (socket, msg) {
          if (msg === '') socket.close(1007, 'invalid JSON: Unexpected end of JSON input')
        }
      }
    }, () => {})
  })
  const client = connect(echo, server.url('/old'), { WebSocket: WsWebSocket as unknown as WebSocketConstructor, heartbeat: { interval: 20, timeout: 1000 } })
  await waitState(client, 'closed')
  t.equal(client.closeCode, 1007)
  t.equal(client.closeReason, 'invalid JSON: Unexpected end of JSON input (the route does not answer heartbeats: ' +
    'set heartbeat: true on it, or turn the client\'s heartbeat off)')
})

t.test('a long backoff is cut short once the server answers plain requests again', async (t) => {
  const first = await startEcho(t)
  const port = first.server.port
  // Without the watch, the attempt after the restart would wait up to a minute.
  const client = connect(echo, first.server.url('/echo'), { WebSocket: WsWebSocket as unknown as WebSocketConstructor, reconnect: { initialDelay: 60_000, maxDelay: 60_000 } })
  t.teardown(() => client.close())
  await waitState(client, 'open')
  await first.server.app.close()
  await waitState(client, 'reconnecting')
  await sleep(1500)
  const second = await startEcho(t, port)
  // (the attempt itself is due at a random time within a minute; rarely, it is due this soon anyway)
  await waitState(client, 'open', 8000)
  client.send({ type: 'say', text: 'back' })
  await until(() => second.received.length === 1, 5000, 'the message after the restart')
})
