// Requests under load and at their edges: concurrency, order, backpressure, cancellation,
// timeouts, server → client calls, tracing and logs.
import t from 'tap'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Type } from '@sinclair/typebox'
import type { TypedWebSocket } from 'fastify-typed-websocket'
import { startServer, connect, closed, deferred, sleep, until } from './helpers/server'
import { RawPeer, type Envelope } from './helpers/jsonrpc'

const square = {
  params: Type.Object({ n: Type.Integer(), delay: Type.Integer({ minimum: 0 }) }),
  result: Type.Object({ n: Type.Integer(), square: Type.Integer() })
}

t.test('1,000 concurrent calls on one connection, finishing in random order: every answer matches its call', async (t) => {
  const CALLS = 1000
  let running = 0
  let mostRunning = 0
  const finished: number[] = []
  const allStarted = deferred()
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        maxConcurrentRequests: CALLS,
        requests: { square },
        handlers: {
          async square (_socket, { n, delay }) {
            running++
            mostRunning = Math.max(mostRunning, running)
            // Every handler waits until all have started, then finishes after its own delay.
            if (running === CALLS) allStarted.resolve()
            await allStarted.promise
            await sleep(delay)
            running--
            finished.push(n)
            return { n, square: n * n }
          }
        }
      }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  // Delays drawn so that the order of finishing differs from the order of calling.
  const delays = Array.from({ length: CALLS }, (_, i) => (i * 7919) % 97)
  for (let i = 0; i < CALLS; i++) peer.send({ jsonrpc: '2.0', id: `c${i}`, method: 'square', params: { n: i, delay: delays[i] } })
  await until(() => peer.received.length === CALLS, 15_000, 'all answers')
  const answers = new Map<unknown, Envelope>()
  for (const msg of peer.received) answers.set(msg.id, msg)
  t.equal(answers.size, CALLS, 'one answer per call, no duplicate')
  let matched = 0
  for (let i = 0; i < CALLS; i++) {
    const result = answers.get(`c${i}`)?.result as { n: number, square: number } | undefined
    if (result?.n === i && result.square === i * i) matched++
  }
  t.equal(matched, CALLS, 'every answer carries its own call\'s result')
  t.equal(mostRunning, CALLS, 'all ran at once')
  const order = peer.received.map(msg => Number(String(msg.id).slice(1)))
  t.not(order.join(','), [...order].sort((a, b) => a - b).join(','), 'answers went out as handlers finished, not in call order')
  t.same(order, finished, 'each answer left as its handler finished')
  ws.close()
  await closed(ws)
})

t.test('a slow handler holds back neither pings, nor other calls, nor messages', async (t) => {
  const release = deferred()
  const started = deferred()
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        requests: { slow: {}, quick: { result: Type.String() } },
        handlers: {
          async slow () {
            started.resolve()
            await release.promise
            return 'slow done'
          },
          quick: () => 'quick'
        },
        message (socket, msg) { socket.send(`got ${String(msg)}`).catch(() => {}) }
      }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  const texts = peer.texts
  peer.send({ jsonrpc: '2.0', id: 1, method: 'slow' })
  await started.promise
  const pong = new Promise<string>((resolve) => ws.once('pong', (data: Buffer) => resolve(data.toString())))
  ws.ping('still there?')
  t.equal(await pong, 'still there?', 'a ping is answered while the slow handler runs')
  t.same(await peer.ask(2, 'quick'), { jsonrpc: '2.0', id: 2, result: 'quick' }, 'another call is answered meanwhile')
  ws.send('hello')
  await until(() => texts.length === 1, 2000, 'the message hook')
  t.same(texts, ['got hello'], 'a message is handled meanwhile')
  release.resolve()
  t.same(await peer.answer(1), { jsonrpc: '2.0', id: 1, result: 'slow done' })
  ws.close()
  await closed(ws)
})

t.test('a request waits for the messages received before it (the message order), then runs beside what follows', async (t) => {
  const events: string[] = []
  const hold = deferred()
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        requests: { note: { params: Type.Object({ text: Type.String() }) } },
        handlers: { note (_socket, { text }) { events.push(`request ${text}`); return null } },
        async message (_socket, msg) {
          events.push(`message ${String(msg)} start`)
          if (msg === 'first') await hold.promise
          events.push(`message ${String(msg)} end`)
        }
      }
    }, async () => { await sleep(30); events.push('open done') })
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  peer.send({ jsonrpc: '2.0', id: 0, method: 'note', params: { text: 'during open' } })
  ws.send('first')
  peer.send({ jsonrpc: '2.0', id: 1, method: 'note', params: { text: 'after first' } })
  ws.send('second')
  await sleep(60)
  t.same(events, ['open done', 'request during open', 'message first start'], 'the request after "first" waits for its hook')
  hold.resolve()
  await peer.answer(1)
  await until(() => events.length === 7, 2000, 'the rest')
  t.same(events, ['open done', 'request during open', 'message first start', 'message first end', 'request after first', 'message second start', 'message second end'])
  ws.close()
  await closed(ws)
})

t.test('a flood beyond maxConcurrentRequests queues up to maxPendingMessages, then pauses reading and loses nothing', async (t) => {
  const LIMIT = 4
  const CALLS = 600
  const PENDING = 100
  const PAD = 'x'.repeat(32 * 1024)
  let running = 0
  let mostRunning = 0
  const gates: Array<() => void> = []
  let socket: TypedWebSocket | undefined
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        maxConcurrentRequests: LIMIT,
        maxPendingMessages: PENDING,
        requests: { work: { params: Type.Object({ i: Type.Integer(), pad: Type.String() }), result: Type.Integer() } },
        handlers: {
          async work (_socket, { i }) {
            running++
            mostRunning = Math.max(mostRunning, running)
            await new Promise<void>((resolve) => gates.push(resolve))
            running--
            return i
          }
        }
      }
    }, (s) => { socket = s })
  })
  let read = 0
  const onMessage = (event: unknown): void => { if ((event as { direction: string }).direction === 'in') read++ }
  subscribe('fastify-typed-websocket:message', onMessage)
  t.teardown(() => unsubscribe('fastify-typed-websocket:message', onMessage))
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  for (let i = 0; i < CALLS; i++) peer.send({ jsonrpc: '2.0', id: i, method: 'work', params: { i, pad: PAD } })
  await until(() => running === LIMIT, 5000, 'the first handlers')
  await sleep(100)
  t.equal(running, LIMIT, `no more than ${LIMIT} handlers run`)
  t.equal((socket as TypedWebSocket).raw.isPaused, true, 'the server stopped reading')
  // (ws parses what it has already buffered after a pause: a frame or two more.)
  t.ok(read >= LIMIT + PENDING && read < LIMIT + PENDING + 10, `it read ${PENDING} messages past the running ones, then paused (${read} read)`)
  t.ok(ws.bufferedAmount > 0, `the client's sends wait in its buffer (${ws.bufferedAmount} bytes): TCP backpressure`)
  // Let the handlers finish, a few at a time, until every call is answered.
  const deadline = Date.now() + 20_000
  while (peer.received.length < CALLS && Date.now() < deadline) {
    gates.splice(0).forEach(open => open())
    await sleep(2)
  }
  t.equal(peer.received.length, CALLS, 'every call was answered')
  t.same(peer.received.map(msg => msg.result).sort((a, b) => Number(a) - Number(b)), Array.from({ length: CALLS }, (_, i) => i), 'nothing lost or doubled')
  t.equal(mostRunning, LIMIT)
  t.equal((socket as TypedWebSocket).raw.isPaused, false, 'reading resumed')
  ws.close()
  await closed(ws)
  const log = await until(() => server.logs.some(line => line.msg === 'websocket closed'), 2000).then(() => server.logs.find(line => line.msg === 'websocket closed'))
  t.match(log, { messagesIn: CALLS, messagesOut: CALLS }, 'requests and answers count in the close log')
})

t.test('the handler\'s signal aborts when the connection closes, and the close hook does not wait for the handler', async (t) => {
  for (const closedBy of ['client', 'server while reading is paused'] as const) {
    const started = deferred()
    const reasons: string[] = []
    const closedHook = deferred<number>()
    let finished = false
    let socket: TypedWebSocket | undefined
    const server = await startServer(t, (app) => {
      app.get('/rpc', {
        websocket: {
          // Paused at one request: the server's close cannot read the client's answer, and ends at closeTimeout.
          maxConcurrentRequests: closedBy === 'client' ? 16 : 1,
          closeTimeout: 200,
          requests: { stuck: {} },
          handlers: {
            async stuck (_socket, _params, { signal }) {
              started.resolve()
              // Takes its time after the abort: the close hook does not wait for it.
              await new Promise<void>((resolve) => signal.addEventListener('abort', () => {
                reasons.push((signal.reason as Error).message)
                setTimeout(resolve, 300)
              }))
              finished = true
              return 'late'
            }
          },
          close (_socket, code) { closedHook.resolve(code) }
        }
      }, (s) => { socket = s })
    })
    const ws = await connect(server.url('/rpc'))
    const peer = new RawPeer(ws)
    peer.send({ jsonrpc: '2.0', id: 1, method: 'stuck' })
    peer.send({ jsonrpc: '2.0', id: 2, method: 'stuck' })
    await started.promise
    if (closedBy === 'client') ws.close(1000)
    else (socket as TypedWebSocket).close(4000, 'bye')
    const code = await closedHook.promise
    // (The paused server may still find the client's close frame in the socket's buffer when the link ends.)
    t.ok(closedBy === 'client' ? code === 1000 : code === 4000 || code === 1006, `closed by the ${closedBy}: the close hook ran (${code})`)
    t.equal(finished, false, 'before the handler finished')
    // (At maxConcurrentRequests 1 the second request waits; after the close it never starts.)
    t.same(reasons, closedBy === 'client' ? ['The connection closed', 'The connection closed'] : ['The connection closed'],
      'the running handlers\' signals aborted')
    await until(() => finished, 2000, 'the handler')
    t.same(peer.received, [], 'nothing was answered')
  }
})

t.test('requestTimeout aborts the signal and answers -32800; a late result is dropped', async (t) => {
  const seen: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        requestTimeout: 50,
        requests: { slow: {}, quick: {}, cancelled: {}, closing: {} },
        handlers: {
          async slow (_socket, _params, context) {
            await sleep(120)
            const { signal } = context
            seen.push(`aborted ${String(signal.aborted)}: ${(signal.reason as Error).message}`)
            return 'too late'
          },
          async cancelled (_socket, _params, context) {
            await sleep(120)
            seen.push(`cancelled ${String(context.signal.aborted)}`)
            return 'too late'
          },
          closing (socket) {
            socket.close(4000, 'closing')
            return 'unsent'
          },
          quick: () => 'in time'
        }
      }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  t.same(await peer.ask(1, 'quick'), { jsonrpc: '2.0', id: 1, result: 'in time' })
  t.same(await peer.ask(2, 'slow'), { jsonrpc: '2.0', id: 2, error: { code: -32800, message: 'Request timed out after 50 ms' } })
  await until(() => seen.length === 1, 2000, 'the handler')
  t.same(seen, ['aborted true: Request timed out after 50 ms'], 'a signal read after the abort is aborted already')
  await sleep(20)
  t.same(peer.received, [], 'the late result was not sent')
  t.match(server.logs.find(line => line.msg === 'websocket request' && line.id === 2), { level: 20, method: 'slow', outcome: 'timeout' })
  t.match(server.logs.find(line => line.msg === 'websocket request' && line.id === 1), { method: 'quick', outcome: 'result', durationMs: Number })
  // Cancelled before its timeout: one answer, the cancellation's.
  peer.send({ jsonrpc: '2.0', id: 3, method: 'cancelled' })
  await sleep(10)
  peer.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 3 } })
  t.same(await peer.answer(3), { jsonrpc: '2.0', id: 3, error: { code: -32800, message: 'Request cancelled' } })
  await until(() => seen.length === 2, 2000, 'the cancelled handler')
  t.same(seen[1], 'cancelled true')
  t.same(peer.received, [], 'the timeout after the cancellation answered nothing')
  // A handler that closes the socket: its result has nowhere to go.
  peer.send({ jsonrpc: '2.0', id: 4, method: 'closing' })
  t.same(await closed(ws), { code: 4000, reason: 'closing' })
  t.same(peer.received, [], 'nothing sent after the close')
})

t.test('app errors: undeclared names and data that fails its schema are internal errors, logged', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        requests: {
          a: { errors: { gone: Type.Object({ since: Type.String() }), busy: Type.Optional(Type.Null()) } },
          b: { errors: { busy: Type.Null(), other: Type.String() } }
        },
        handlers: {
          a (socket, params) {
            const kind = (params as { kind?: string } | undefined)?.kind
            if (kind === 'bad-data') throw socket.requestError('gone', { since: 5 } as unknown as { since: string })
            if (kind === 'undeclared') throw socket.requestError(...(['other', 'x'] as never as ['busy', null]))
            throw socket.requestError('busy', undefined as never)
          },
          b (socket) { throw socket.requestError('busy', null, 'try later') }
        }
      }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  t.same(await peer.ask(1, 'a', {}), { jsonrpc: '2.0', id: 1, error: { code: 2, message: 'busy', name: 'busy' } }, 'a message defaults to the name; no data')
  t.same(await peer.ask(2, 'b'), { jsonrpc: '2.0', id: 2, error: { code: 2, message: 'try later', data: null, name: 'busy' } }, 'one name, one code on the route')
  t.same(await peer.ask(3, 'a', { kind: 'bad-data' }), { jsonrpc: '2.0', id: 3, error: { code: -32603, message: 'Internal error' } })
  t.match(server.logs.find(line => line.id === 3 && line.level === 50), { err: { code: 'FST_WS_INVALID_OUTBOUND', message: /\/since/ } })
  t.same(await peer.ask(4, 'a', { kind: 'undeclared' }), { jsonrpc: '2.0', id: 4, error: { code: -32603, message: 'Internal error' } })
  t.match(server.logs.find(line => line.id === 4 && line.level === 50), { err: { message: /"other" is not an error of a/ } })
  ws.close()
  await closed(ws)
})

t.test('a result that fast-json-stringify refuses is an internal error, logged', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        validateOutbound: false,
        requests: { n: { result: Type.Object({ n: Type.Integer() }) }, any: {} },
        handlers: { n: () => ({ n: 'NaN' }) as unknown as { n: number }, any: () => undefined }
      }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  t.same(await peer.ask(1, 'n'), { jsonrpc: '2.0', id: 1, error: { code: -32603, message: 'Internal error' } })
  t.match(server.logs.find(line => line.id === 1 && line.level === 50), { outcome: undefined, err: { code: 'FST_WS_INVALID_OUTBOUND' } })
  t.same(await peer.ask(2, 'any'), { jsonrpc: '2.0', id: 2, result: null }, 'no result schema and nothing returned: null')
  ws.close()
  await closed(ws)
})

t.test('socket.call(): a request to the client, answered, failed, timed out, aborted or cut short', async (t) => {
  const opened = deferred<TypedWebSocket<unknown, unknown, { confirm: { params: { question: string }, result: boolean }, ask: { result: string } }>>()
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        requestTimeout: 10_000,
        clientRequests: {
          confirm: { params: Type.Object({ question: Type.String() }), result: Type.Boolean(), errors: { declined: Type.Object({ why: Type.String() }) } },
          ask: { result: Type.String() }
        }
      }
    }, (socket) => { opened.resolve(socket as never) })
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  const socket = await opened.promise
  const isRequest = (msg: Envelope): boolean => typeof msg.method === 'string' && msg.method !== '$/cancelRequest'

  const answered = socket.call('confirm', { question: 'Delete?' })
  const request = await peer.wait(isRequest)
  t.same(request, { jsonrpc: '2.0', id: 1, method: 'confirm', params: { question: 'Delete?' } }, 'the client receives a JSON-RPC request')
  peer.send({ jsonrpc: '2.0', id: request.id, result: true })
  t.equal(await answered, true, 'its result resolves the call')

  const asked = socket.call('ask', undefined as never)
  t.same(await peer.wait(isRequest), { jsonrpc: '2.0', id: 2, method: 'ask' }, 'no params member when there are none')
  peer.send({ jsonrpc: '2.0', id: 2, result: 42 })
  await t.rejects(asked, { code: 'FST_WS_INVALID_RESULT', message: /ask/ }, 'a result that fails its schema rejects')

  const declined = socket.call('confirm', { question: 'Really?' })
  const second = await peer.wait(isRequest)
  peer.send({ jsonrpc: '2.0', id: second.id, error: { code: 1, message: 'no', data: { why: 'because' }, name: 'declined' } })
  await t.rejects(declined, { name: 'declined', code: 1, message: 'no', data: { why: 'because' } }, 'a declared app error keeps its name')

  const unknown = socket.call('confirm', { question: 'Hm?' })
  const third = await peer.wait(isRequest)
  peer.send({ jsonrpc: '2.0', id: third.id, error: { code: -32601, message: 'Method not found: confirm', name: 'nope' } })
  await t.rejects(unknown, { name: 'RemoteError', code: -32601 }, 'any other error is a RemoteError')
  const odd = socket.call('confirm', { question: 'odd?' })
  const fourth = await peer.wait(isRequest)
  peer.send({ jsonrpc: '2.0', id: fourth.id, error: { weird: true } })
  await t.rejects(odd, { name: 'RemoteError', code: -32603, message: 'Remote error' }, 'a malformed error is still an error')
  const odder = socket.call('confirm', { question: 'odder?' })
  const fifth = await peer.wait(isRequest)
  peer.send({ jsonrpc: '2.0', id: fifth.id, error: null, result: false })
  t.equal(await odder, false, 'error: null with a result is a result')

  const timedOut = socket.call('confirm', { question: 'Anyone?' }, { timeout: 30 })
  const sixth = await peer.wait(isRequest)
  await t.rejects(timedOut, { code: 'FST_WS_REQUEST_TIMEOUT', message: 'No answer to confirm within 30 ms' })
  t.same(await peer.wait(msg => msg.method === '$/cancelRequest'), { jsonrpc: '2.0', method: '$/cancelRequest', params: { id: sixth.id } }, 'the timeout sends the cancellation')
  peer.send({ jsonrpc: '2.0', id: sixth.id, result: true })

  const controller = new AbortController()
  const aborted = socket.call('confirm', { question: 'Stop?' }, { signal: controller.signal })
  const seventh = await peer.wait(isRequest)
  controller.abort(new Error('user left'))
  await t.rejects(aborted, { code: 'FST_WS_REQUEST_ABORTED', cause: { message: 'user left' } })
  t.same(await peer.wait(msg => msg.method === '$/cancelRequest'), { jsonrpc: '2.0', method: '$/cancelRequest', params: { id: seventh.id } })
  await t.rejects(socket.call('confirm', { question: 'x' }, { signal: controller.signal }), { code: 'FST_WS_REQUEST_ABORTED' }, 'an aborted signal rejects at once')

  await t.rejects((socket.call as (...args: unknown[]) => Promise<unknown>)('nope', {}), { code: 'FST_WS_UNKNOWN_METHOD' })
  await t.rejects(socket.call('confirm', { question: 1 } as never), { code: 'FST_WS_INVALID_OUTBOUND', message: /params of confirm: \/question/ })

  const pending = socket.call('confirm', { question: 'Last?' })
  await peer.wait(isRequest)
  ws.close()
  await t.rejects(pending, { code: 'FST_WS_CLOSED' }, 'the connection closing rejects what is pending')
  await closed(ws)
  await t.rejects(socket.call('confirm', { question: 'x' }), { code: 'FST_WS_CLOSED' }, 'a closed socket rejects at once')
})

t.test('socket.call() on a route without requests, and requests on a route that only calls the client', async (t) => {
  const sockets: TypedWebSocket[] = []
  const server = await startServer(t, (app) => {
    app.get('/plain', { websocket: true }, (socket) => { sockets.push(socket) })
    app.get('/calls', {
      websocket: {
        clientRequests: { hi: {} },
        message (socket) { socket.call('hi', undefined, { timeout: 5000 }).catch(() => {}) }
      }
    }, () => {})
  })
  const plain = await connect(server.url('/plain'))
  await until(() => sockets.length === 1)
  await t.rejects((sockets[0].call as (...args: unknown[]) => Promise<unknown>)('hi'), { code: 'FST_WS_UNKNOWN_METHOD' })
  plain.close()
  const ws = await connect(server.url('/calls'))
  const peer = new RawPeer(ws)
  ws.send('call me')
  t.match(await peer.wait(msg => msg.method === 'hi'), { id: 1 })
  t.match(await peer.ask(1, 'anything'), { error: { code: -32601 } }, 'no requests declared: every method is unknown')
  ws.close()
  await closed(ws)
})

t.test('the request TracingChannel and the debug log line', async (t) => {
  const events: string[] = []
  const names = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const
  const handlers = names.map((name) => {
    const fn = (message: unknown): void => {
      const context = message as { method: string, id: unknown, outcome?: string }
      events.push(`${name} ${context.method} ${String(context.id)}${context.outcome === undefined ? '' : ` ${context.outcome}`}`)
    }
    subscribe(`tracing:fastify-typed-websocket:request:${name}`, fn)
    return () => unsubscribe(`tracing:fastify-typed-websocket:request:${name}`, fn)
  })
  t.teardown(() => handlers.forEach(off => off()))
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        requests: { ok: {}, boom: {}, later: {} },
        handlers: {
          ok: () => 1,
          boom () { throw new Error('boom') },
          async later () { await sleep(5); return 2 }
        }
      }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  await peer.ask(1, 'ok')
  await peer.ask(2, 'boom')
  await peer.ask(3, 'later')
  t.same(events, [
    'start ok 1', 'end ok 1', 'asyncStart ok 1 result', 'asyncEnd ok 1 result',
    'start boom 2', 'end boom 2', 'error boom 2 error', 'asyncStart boom 2 error', 'asyncEnd boom 2 error',
    'start later 3', 'end later 3', 'asyncStart later 3 result', 'asyncEnd later 3 result'
  ])
  const lines = server.logs.filter(line => line.msg === 'websocket request').map(({ method, id, outcome, level }) => ({ method, id, outcome, level }))
  t.same(lines, [
    { method: 'ok', id: 1, outcome: 'result', level: 20 },
    { method: 'boom', id: 2, outcome: 'error', level: 20 },
    { method: 'later', id: 3, outcome: 'result', level: 20 }
  ], 'one debug line per request, with its outcome')
  ws.close()
  await closed(ws)
})

t.test('no debug line when the logger is above debug', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/rpc', { websocket: { requests: { ok: {} }, handlers: { ok: () => 1 } } }, () => {})
  }, { fastify: { logger: { level: 'info' } } })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  t.same(await peer.ask(1, 'ok'), { jsonrpc: '2.0', id: 1, result: 1 })
  t.equal(server.logs.filter(line => line.msg === 'websocket request').length, 0)
  ws.close()
  await closed(ws)
})

t.test('a request option that is wrong fails app.ready() naming the route', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['a missing handler', { requests: { a: {} } }, /handlers\.a must be a function/],
    ['a handler for no method', { requests: { a: {} }, handlers: { a () {}, b () {} } }, /handlers\.b: no such method in requests/],
    ['handlers without requests', { handlers: { b () {} } }, /handlers\.b: no such method/],
    ['a reserved name', { requests: { 'rpc.x': {} }, handlers: { 'rpc.x' () {} } }, /reserved/],
    ['a reserved client name', { clientRequests: { '$/x': {} } }, /reserved/],
    ['a method that is not an object', { requests: { a: 1 }, handlers: { a () {} } }, /requests\.a must be an object/],
    ['an unknown key', { requests: { a: { parms: {} } }, handlers: { a () {} } }, /requests\.a: unknown key "parms"/],
    ['errors that are not an object', { requests: { a: { errors: [] } }, handlers: { a () {} } }, /requests\.a\.errors must be an object/],
    ['a schema that does not compile', { requests: { a: { params: { type: 'nope' } } }, handlers: { a () {} } }, /requests\.a\.params schema does not compile/],
    ['a result schema fast-json-stringify refuses', { requests: { a: { result: { $ref: '#/nowhere' } } }, handlers: { a () {} } }, /requests\.a\.result schema does not compile/],
    ['requests that are not an object', { requests: [] }, /requests must be an object keyed by method name/],
    ['maxConcurrentRequests 0', { maxConcurrentRequests: 0 }, /maxConcurrentRequests must be an integer >= 1/],
    ['requestTimeout -1', { requestTimeout: -1 }, /requestTimeout must be an integer >= 1/]
  ]
  for (const [what, websocket, message] of cases) {
    const attempt = startServer(t, (app) => {
      app.get('/bad', { websocket: websocket as never }, () => {})
    }, { listen: false })
    await t.rejects(attempt, { message }, what)
  }
  await t.rejects(startServer(t, () => {}, { listen: false, plugin: { maxConcurrentRequests: 1.5 } }), { message: /maxConcurrentRequests/ }, 'a plugin option too')
})

t.test('answers to a client that does not read fall under maxBufferedAmount like any send', async (t) => {
  const big = 'x'.repeat(256 * 1024)
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: { maxBufferedAmount: 64 * 1024, requests: { big: { result: Type.String() } }, handlers: { big: () => big } }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const socket = (ws as unknown as { _socket: { pause (): void, resume (): void } })._socket
  socket.pause()
  for (let i = 0; i < 40; i++) ws.send(JSON.stringify({ jsonrpc: '2.0', id: i, method: 'big' }))
  await until(() => server.logs.some(line => line.msg === 'websocket peer is not reading; closing'), 5000, 'the cut-off')
  socket.resume()
  t.same(await closed(ws), { code: 1008, reason: 'send buffer full' }, 'cut off, and the server went on')
})

t.test('with validateOutbound: false the params of socket.call() go out unchecked', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        validateOutbound: false,
        clientRequests: { hi: { params: Type.Object({ n: Type.Integer() }) } },
        message (socket) { (socket.call as (...args: unknown[]) => Promise<unknown>)('hi', { n: 'one' }).catch(() => {}) }
      }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  ws.send('go')
  t.same(await peer.wait(msg => msg.method === 'hi'), { jsonrpc: '2.0', id: 1, method: 'hi', params: { n: 'one' } })
  ws.close()
  await closed(ws)
})

t.test('requests that hold maxPendingBytes stop reading too, before maxConcurrentRequests', async (t) => {
  const gates: Array<() => void> = []
  let socket: TypedWebSocket | undefined
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        maxPendingBytes: 2000,
        requests: { hold: { params: Type.Object({ pad: Type.String() }) } },
        handlers: { async hold () { await new Promise<void>((resolve) => gates.push(resolve)); return 'held' } }
      }
    }, (s) => { socket = s })
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  const pad = 'p'.repeat(900)
  for (let i = 0; i < 6; i++) peer.send({ jsonrpc: '2.0', id: i, method: 'hold', params: { pad } })
  await until(() => gates.length === 3, 2000, 'three handlers')
  await sleep(50)
  t.equal(gates.length, 3, 'the third request reached 2000 bytes held: no fourth handler runs')
  t.equal((socket as TypedWebSocket).raw.isPaused, true, 'reading stopped')
  const deadline = Date.now() + 5000
  while (peer.received.length < 6 && Date.now() < deadline) {
    gates.splice(0).forEach(open => open())
    await sleep(5)
  }
  t.same(peer.received.map(msg => msg.id).sort(), [0, 1, 2, 3, 4, 5], 'every request was answered')
  ws.close()
  await closed(ws)
})

t.test('requests count for rateLimit like any message', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: { rateLimit: { messages: 2, interval: 60_000, action: 'close' }, requests: { ok: {} }, handlers: { ok: () => 1 } }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  t.same(await peer.ask(1, 'ok'), { jsonrpc: '2.0', id: 1, result: 1 })
  t.same(await peer.ask(2, 'ok'), { jsonrpc: '2.0', id: 2, result: 1 })
  peer.send({ jsonrpc: '2.0', id: 3, method: 'ok' })
  t.same(await closed(ws), { code: 1008, reason: 'rate limit exceeded' }, 'the third is over the limit')
  t.same(peer.received, [], 'and was not answered')
})

t.test('a BigInt or a cycle in app error data answers -32603, logged, and the server and the connection live', async (t) => {
  const cycle: Record<string, unknown> = {}
  cycle.self = cycle
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        requests: { sync: { errors: { odd: Type.Unknown() } }, async: { errors: { odd: Type.Unknown() } }, ok: {} },
        handlers: {
          sync (socket) { throw socket.requestError('odd', { id: 1n }) },
          async async (socket) {
            await sleep(1)
            throw socket.requestError('odd', cycle)
          },
          ok: () => 'still here'
        }
      }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  t.same(await peer.ask(1, 'sync'), { jsonrpc: '2.0', id: 1, error: { code: -32603, message: 'Internal error' } }, 'a BigInt from a sync handler')
  t.match(server.logs.find(line => line.id === 1 && line.level === 50), { method: 'sync', err: { code: 'FST_WS_INVALID_OUTBOUND', message: /data of app error odd: .*BigInt/ } })
  t.same(await peer.ask(2, 'async'), { jsonrpc: '2.0', id: 2, error: { code: -32603, message: 'Internal error' } }, 'a cycle from an async handler')
  t.match(server.logs.find(line => line.id === 2 && line.level === 50), { method: 'async', err: { code: 'FST_WS_INVALID_OUTBOUND', message: /data of app error odd: .*circular/ } })
  t.same(await peer.ask(3, 'ok'), { jsonrpc: '2.0', id: 3, result: 'still here' }, 'the connection serves on')
  ws.close()
  await closed(ws)
})

t.test('socket.call() with a BigInt or a cycle in its params rejects with a coded error and sends nothing', async (t) => {
  const opened = deferred<TypedWebSocket<unknown, unknown, { echo: { params: unknown, result: unknown } }>>()
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: { clientRequests: { echo: { params: Type.Unknown() } } }
    }, (socket) => { opened.resolve(socket as never) })
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)
  const socket = await opened.promise
  const cycle: Record<string, unknown> = {}
  cycle.self = cycle
  await t.rejects(socket.call('echo', { id: 1n }), { code: 'FST_WS_INVALID_OUTBOUND', message: /params of echo: .*BigInt/ })
  await t.rejects(socket.call('echo', cycle), { code: 'FST_WS_INVALID_OUTBOUND', message: /params of echo: .*circular/ })
  const answered = socket.call('echo', { fine: true })
  const request = await peer.wait(msg => msg.method === 'echo')
  t.same(request, { jsonrpc: '2.0', id: 1, method: 'echo', params: { fine: true } }, 'the first request the client sees is the good call, and the refused ones took no id')
  peer.send({ jsonrpc: '2.0', id: request.id, result: 'ok' })
  t.equal(await answered, 'ok')
  ws.close()
  await closed(ws)
})
