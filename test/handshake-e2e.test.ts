// The handshake end to end (docs/handshake.md, "The refusals, in order"): every row of its table from a raw
// TCP client, and from the `ws` client and undici's WHATWG WebSocket where they can send it.
import t, { type Test } from 'tap'
import type { IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import type WebSocket from 'ws'
import {
  closed, connect, connectWhatwg, deferred, messages, sleep, startServer, until, whatwgClosed,
  type ConnectOptions, type Refused, type TestServer, type WhatwgInit
} from './helpers/server'
import { GOOD_KEY, RawClient, rawHttp, rawResponse, upgradeRequest, Opcode } from './helpers/raw'
import typedWebsocket from './helpers/plugin'

const TEXT = 'text/plain; charset=utf-8'
const JSON_TYPE = 'application/json; charset=utf-8'
// RFC 6455 section 1.3: the accept value for GOOD_KEY.
const GOOD_ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='
const ACCEPTED_HEADERS = { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-accept': GOOD_ACCEPT }

const UPGRADE_BODY = 'Can "Upgrade" only to "WebSocket".'
const CONNECTION_BODY = '"Connection" must be "Upgrade".'
const ORIGIN_BODY = 'Cross origin websockets not allowed'
const VERSION_BODY = 'Sec-WebSocket-Version must be 13 or 8.'
const KEY_BODY = 'Missing or invalid Sec-WebSocket-Key header.'
const PROTOCOL_BODY = 'Invalid Sec-WebSocket-Protocol header.'

// What undici's WHATWG WebSocket shows for any refused handshake: no status, an
// error event, then close 1006 (RFC 6455 section 7.1.5: no close frame was received).
const WHATWG_REFUSED = { events: ['error', 'close'], code: 1006, wasClean: false, reason: '' }

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

function withoutDate (headers: Record<string, string | string[] | undefined>): Answer['headers'] {
  const { date: _date, ...rest } = headers
  return rest
}

/** A refusal as the plugin sends it over an upgrade connection: plain text, then close. */
function textAnswer (status: number, body: string, headers: Record<string, string> = {}): Answer {
  return {
    status,
    headers: { 'content-type': TEXT, 'content-length': String(Buffer.byteLength(body)), connection: 'close', ...headers },
    body
  }
}

/** Fastify's JSON answer (validation, errors, 404, 503) over an upgrade connection. */
function jsonAnswer (status: number, body: unknown, headers: Record<string, string> = {}): Answer {
  const text = JSON.stringify(body)
  return {
    status,
    headers: { 'content-type': JSON_TYPE, 'content-length': String(Buffer.byteLength(text)), connection: 'close', ...headers },
    body: text
  }
}

/** Sends a raw request and reads the answer until the server closes the connection. */
async function rawAnswer (port: number, request: string): Promise<Answer> {
  const res = await rawHttp(port, request)
  return { status: res.status, headers: withoutDate(res.headers), body: res.body }
}

/** What the `ws` client was answered; fails if it opened. */
async function wsAnswer (url: string, options: ConnectOptions = {}): Promise<Answer> {
  let ws: WebSocket
  try {
    ws = await connect(url, options)
  } catch (err) {
    const refused = err as Refused
    if (refused.statusCode === undefined) throw err
    return { status: refused.statusCode, headers: withoutDate(refused.headers), body: refused.body }
  }
  ws.terminate()
  throw new Error('the ws client opened')
}

/** Opens a raw WebSocket client, asserts the 101 it got, and closes it. */
async function rawAccepted (t: Test, port: number, path: string, headers: Record<string, string | null> = {}, expected: Record<string, string> = {}): Promise<void> {
  const client = await RawClient.open(port, path, headers)
  t.same(client.handshake, { status: 101, headers: { ...ACCEPTED_HEADERS, ...expected }, body: '' }, '101 for the raw client')
  client.destroy()
}

/** Opens a `ws` client, asserts that it is open, and closes it. */
async function wsAccepted (t: Test, url: string, options: ConnectOptions = {}): Promise<WebSocket> {
  const ws = await connect(url, options)
  t.equal(ws.readyState, ws.OPEN, 'the ws client opened')
  ws.close()
  await closed(ws)
  return ws
}

/** Opens undici's WebSocket, asserts that it is open, and closes it. */
async function whatwgAccepted (t: Test, url: string, init?: WhatwgInit): Promise<string> {
  const ws = await connectWhatwg(url, init)
  t.equal(ws.readyState, ws.OPEN, 'the WHATWG WebSocket opened')
  const protocol = ws.protocol
  const gone = whatwgClosed(ws)
  ws.close()
  await gone
  return protocol
}

/** The first text frame a raw client got. */
async function firstText (client: RawClient): Promise<string> {
  await client.until(() => client.frames.some(f => f.opcode === Opcode.Text), 5000, 'a text frame')
  return (client.frames.find(f => f.opcode === Opcode.Text) as { payload: Buffer }).payload.toString()
}

/** A route that answers any message with what the server side saw. */
function reportingRoute (app: FastifyInstance, url: string, options: Record<string, unknown> = {}): void {
  app.get(url, {
    websocket: {
      ...options,
      message (socket) {
        return socket.send(`protocol=${socket.protocol}`)
      }
    }
  }, function open () {})
}

function plainRoute (app: FastifyInstance): void {
  app.get('/ws', { websocket: true }, function open () {})
}

// --- the Handshake table, row by row -------------------------------------------------------

t.test('an upgrade without a Host header is answered 400 before any hook, as Node answers a GET without one', async (t) => {
  const hooks: string[] = []
  const server = await startServer(t, (app) => {
    app.addHook('onRequest', async (request) => { hooks.push(request.url) })
    app.get('/ws', { websocket: true }, function open () {})
  })
  const missing = 'Missing Host header.'
  t.same(await rawAnswer(server.port, upgradeRequest('/ws', { host: null })), textAnswer(400, missing), 'no Host')
  t.same(await rawAnswer(server.port, upgradeRequest('/ws', { host: '' })), textAnswer(400, missing), 'an empty Host')
  t.same(await rawAnswer(server.port, upgradeRequest('/nowhere', { host: null })), textAnswer(400, missing), 'on any path')
  t.same(await rawAnswer(server.port, upgradeRequest('/ws', { host: null }).replace('HTTP/1.1', 'HTTP/1.0')), textAnswer(400, missing), 'HTTP/1.0 too')
  t.same(hooks, [], 'the request was never routed')
  const plain = await rawHttp(server.port, 'GET /ws HTTP/1.1\r\n\r\n')
  t.equal(plain.status, 400, 'Node\'s own answer to an ordinary GET without Host')
  await rawAccepted(t, server.port, '/ws', {})
  t.same(hooks, ['/ws'], 'with Host the upgrade is routed and accepted')
})

t.test('GET without Upgrade: websocket is answered 400 "Can \\"Upgrade\\" only to \\"WebSocket\\"."', async (t) => {
  const server = await startServer(t, plainRoute)

  t.test('a plain GET that closes its connection', async (t) => {
    t.same(await rawAnswer(server.port, 'GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'), textAnswer(400, UPGRADE_BODY))
  })

  t.test('a plain keep-alive GET gets the answer on its open connection', async (t) => {
    const res = await rawResponse(server.port, 'GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n')
    t.equal(res.status, 400)
    t.equal(res.headers['content-type'], TEXT)
    t.equal(res.body, UPGRADE_BODY)
  })

  t.test('an Upgrade to another protocol, then the connection closes', async (t) => {
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { upgrade: 'h2c' })), textAnswer(400, UPGRADE_BODY))
  })
})

t.test('Upgrade: websocket whose Connection lacks upgrade is answered 400 "\\"Connection\\" must be \\"Upgrade\\"."', async (t) => {
  const server = await startServer(t, plainRoute)

  t.test('Connection: close', async (t) => {
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { connection: 'close' })), textAnswer(400, CONNECTION_BODY))
  })

  t.test('Connection: keep-alive', async (t) => {
    const res = await rawResponse(server.port, upgradeRequest('/ws', { connection: 'keep-alive' }))
    t.equal(res.status, 400)
    t.equal(res.headers['content-type'], TEXT)
    t.equal(res.body, CONNECTION_BODY)
  })

  t.test('no Connection header', async (t) => {
    const res = await rawResponse(server.port, upgradeRequest('/ws', { connection: null }))
    t.equal(res.status, 400)
    t.equal(res.body, CONNECTION_BODY)
  })

  t.test('a comma list that holds upgrade succeeds', async (t) => {
    await rawAccepted(t, server.port, '/ws', { connection: 'keep-alive, Upgrade' })
    await rawAccepted(t, server.port, '/ws', { connection: 'Upgrade, keep-alive' })
  })

  t.test('upgrade in any case succeeds', async (t) => {
    await rawAccepted(t, server.port, '/ws', { connection: 'UPGRADE' })
    await rawAccepted(t, server.port, '/ws', { connection: 'upgrade' })
  })
})

t.test('an Origin that fails the same-host rule is answered 403 "Cross origin websockets not allowed"', async (t) => {
  const server = await startServer(t, plainRoute)
  const url = server.url('/ws')
  const self = `http://127.0.0.1:${server.port}` // what the ws and undici clients send as Host

  t.test('another host', async (t) => {
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { origin: 'http://evil.test' })), textAnswer(403, ORIGIN_BODY))
    t.same(await wsAnswer(url, { origin: 'http://evil.test' }), textAnswer(403, ORIGIN_BODY))
    await t.rejects(connectWhatwg(url, { headers: { origin: 'http://evil.test' } }), WHATWG_REFUSED)
  })

  t.test('Sec-WebSocket-Origin when Origin is absent', async (t) => {
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { 'sec-websocket-origin': 'http://evil.test' })), textAnswer(403, ORIGIN_BODY))
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { 'sec-websocket-origin': 'http://evil.test', 'sec-websocket-version': '8' })),
      textAnswer(403, ORIGIN_BODY))
    // ws sends the origin as Sec-WebSocket-Origin in protocol version 8
    t.same(await wsAnswer(url, { origin: 'http://evil.test', protocolVersion: 8 }), textAnswer(403, ORIGIN_BODY))
    await t.rejects(connectWhatwg(url, { headers: { 'sec-websocket-origin': 'http://evil.test' } }), WHATWG_REFUSED)
    await rawAccepted(t, server.port, '/ws', { 'sec-websocket-origin': 'http://localhost', 'sec-websocket-version': '8' })
    await wsAccepted(t, url, { origin: self, protocolVersion: 8 })
  })

  t.test('Origin wins over Sec-WebSocket-Origin', async (t) => {
    await rawAccepted(t, server.port, '/ws', { origin: 'http://localhost', 'sec-websocket-origin': 'http://evil.test' })
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { origin: 'http://evil.test', 'sec-websocket-origin': 'http://localhost' })),
      textAnswer(403, ORIGIN_BODY))
  })

  t.test('the null origin', async (t) => {
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { origin: 'null' })), textAnswer(403, ORIGIN_BODY))
    t.same(await wsAnswer(url, { origin: 'null' }), textAnswer(403, ORIGIN_BODY))
    await t.rejects(connectWhatwg(url, { headers: { origin: 'null' } }), WHATWG_REFUSED)
  })

  t.test('a scheme-less origin', async (t) => {
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { origin: 'localhost' })), textAnswer(403, ORIGIN_BODY))
    t.same(await wsAnswer(url, { origin: `127.0.0.1:${server.port}` }), textAnswer(403, ORIGIN_BODY))
    await t.rejects(connectWhatwg(url, { headers: { origin: `127.0.0.1:${server.port}` } }), WHATWG_REFUSED)
  })

  t.test('the same host on another port', async (t) => {
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { origin: 'http://localhost:8080' })), textAnswer(403, ORIGIN_BODY))
    const otherPort = `http://127.0.0.1:${server.port === 65535 ? 1 : server.port + 1}`
    t.same(await wsAnswer(url, { origin: otherPort }), textAnswer(403, ORIGIN_BODY))
    await t.rejects(connectWhatwg(url, { headers: { origin: otherPort } }), WHATWG_REFUSED)
  })

  t.test('the same host in another case passes', async (t) => {
    await rawAccepted(t, server.port, '/ws', { origin: 'HTTP://LOCALHOST' })
    await rawAccepted(t, server.port, '/ws', { origin: 'http://example.com', host: 'Example.COM' })
    await wsAccepted(t, url, { origin: `http://LocalHost:${server.port}`, headers: { host: `localhost:${server.port}` } })
    await whatwgAccepted(t, url, { headers: { origin: `HTTP://127.0.0.1:${server.port}` } })
  })

  t.test('the same host passes', async (t) => {
    await rawAccepted(t, server.port, '/ws', { origin: 'http://localhost' })
    await rawAccepted(t, server.port, '/ws', { origin: 'https://localhost:443' })
    await wsAccepted(t, url, { origin: self })
    await whatwgAccepted(t, url, { headers: { origin: self } })
  })

  t.test('no Origin passes (non-browser clients)', async (t) => {
    await rawAccepted(t, server.port, '/ws')
    await wsAccepted(t, url)
    await whatwgAccepted(t, url)
  })
})

t.test('a missing or unsupported Sec-WebSocket-Version is answered 426 with Sec-WebSocket-Version: 13, 8', async (t) => {
  const server = await startServer(t, plainRoute)
  const expected = textAnswer(426, VERSION_BODY, { 'sec-websocket-version': '13, 8' })

  t.test('missing', async (t) => {
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { 'sec-websocket-version': null })), expected)
  })

  t.test('unsupported versions', async (t) => {
    for (const version of ['12', '7', '14', '13, 8', 'thirteen']) {
      t.same(await rawAnswer(server.port, upgradeRequest('/ws', { 'sec-websocket-version': version })), expected, version)
    }
  })

  t.test('version 8 is accepted', async (t) => {
    await rawAccepted(t, server.port, '/ws', { 'sec-websocket-version': '8' })
    await wsAccepted(t, server.url('/ws'), { protocolVersion: 8 })
  })

  t.test('version 13 is accepted', async (t) => {
    await rawAccepted(t, server.port, '/ws', { 'sec-websocket-version': '13' })
    await wsAccepted(t, server.url('/ws'), { protocolVersion: 13 })
    await whatwgAccepted(t, server.url('/ws'))
  })
})

t.test('a missing or malformed Sec-WebSocket-Key is answered 400', async (t) => {
  const server = await startServer(t, plainRoute)
  const malformed: Array<string | null> = [
    null, '', 'not-a-key', 'dGhlIHNhbXBsZSBub25jZQ', 'dGhlIHNhbXBsZSBub25jZSE=', 'dGhlIHNhbXBsZSBub25jZQ-='
  ]
  for (const key of malformed) {
    t.same(await rawAnswer(server.port, upgradeRequest('/ws', { 'sec-websocket-key': key })), textAnswer(400, KEY_BODY), String(key))
  }
})

t.test('a hook that replies: that reply, exactly, and no upgrade', async (t) => {
  const hooks = ['onRequest', 'preParsing', 'preValidation', 'preHandler'] as const
  const server = await startServer(t, (app) => {
    const deny = (hook: string, reply: FastifyReply): FastifyReply =>
      reply.code(401).header('x-denied-by', hook).header('www-authenticate', 'Bearer').send(`denied by ${hook}`)
    app.get('/onRequest', {
      onRequest: (request, reply, done) => {
        if (request.headers['x-let-in'] === 'yes') done()
        else deny('onRequest', reply)
      },
      websocket: true
    }, function open () {})
    app.get('/preParsing', {
      preParsing: (request, reply, payload, done) => {
        if (request.headers['x-let-in'] === 'yes') done(null, payload)
        else deny('preParsing', reply)
      },
      websocket: true
    }, function open () {})
    app.get('/preValidation', {
      preValidation: async (request, reply) => {
        if (request.headers['x-let-in'] !== 'yes') return deny('preValidation', reply)
      },
      websocket: true
    }, function open () {})
    app.get('/preHandler', {
      preHandler: async (request, reply) => {
        if (request.headers['x-let-in'] !== 'yes') return deny('preHandler', reply)
      },
      websocket: true
    }, function open () {})
    app.get('/json', {
      preValidation: async (_request, reply) => reply.code(429).header('retry-after', '30').send({ error: 'slow down', retry: 30 }),
      websocket: true
    }, function open () {})
  })

  for (const hook of hooks) {
    t.test(hook, async (t) => {
      const expected = textAnswer(401, `denied by ${hook}`, { 'x-denied-by': hook, 'www-authenticate': 'Bearer' })
      t.same(await rawAnswer(server.port, upgradeRequest(`/${hook}`)), expected, 'raw client')
      t.same(await wsAnswer(server.url(`/${hook}`)), expected, 'ws client')
      await t.rejects(connectWhatwg(server.url(`/${hook}`)), WHATWG_REFUSED, 'WHATWG WebSocket')
      await rawAccepted(t, server.port, `/${hook}`, { 'x-let-in': 'yes' })
      await wsAccepted(t, server.url(`/${hook}`), { headers: { 'x-let-in': 'yes' } })
      await whatwgAccepted(t, server.url(`/${hook}`), { headers: { 'x-let-in': 'yes' } })
    })
  }

  t.test('a JSON reply', async (t) => {
    const expected = jsonAnswer(429, { error: 'slow down', retry: 30 }, { 'retry-after': '30' })
    t.same(await rawAnswer(server.port, upgradeRequest('/json')), expected)
    t.same(await wsAnswer(server.url('/json')), expected)
    await t.rejects(connectWhatwg(server.url('/json')), WHATWG_REFUSED)
  })
})

t.test('a params, querystring or headers schema that fails: Fastify\'s 400 validation reply', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/rooms/:room', {
      schema: {
        params: { type: 'object', properties: { room: { type: 'string', pattern: '^[a-z]+$' } } },
        querystring: { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } },
        headers: { type: 'object', required: ['x-token'], properties: { 'x-token': { type: 'string' } } }
      },
      websocket: {
        message (socket) {
          return socket.send(JSON.stringify({ params: socket.request.params, query: socket.request.query }))
        }
      }
    }, function open () {})
  })
  const validation = (message: string): Answer =>
    jsonAnswer(400, { statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request', message })

  t.test('params', async (t) => {
    const expected = validation('params/room must match pattern "^[a-z]+$"')
    t.same(await rawAnswer(server.port, upgradeRequest('/rooms/A1?n=1', { 'x-token': 't' })), expected)
    t.same(await wsAnswer(server.url('/rooms/A1?n=1'), { headers: { 'x-token': 't' } }), expected)
    await t.rejects(connectWhatwg(server.url('/rooms/A1?n=1'), { headers: { 'x-token': 't' } }), WHATWG_REFUSED)
  })

  t.test('querystring', async (t) => {
    const expected = validation('querystring/n must be integer')
    t.same(await rawAnswer(server.port, upgradeRequest('/rooms/a?n=x', { 'x-token': 't' })), expected)
    t.same(await wsAnswer(server.url('/rooms/a?n=x'), { headers: { 'x-token': 't' } }), expected)
    await t.rejects(connectWhatwg(server.url('/rooms/a?n=x'), { headers: { 'x-token': 't' } }), WHATWG_REFUSED)
  })

  t.test('headers', async (t) => {
    const expected = validation('headers must have required property \'x-token\'')
    t.same(await rawAnswer(server.port, upgradeRequest('/rooms/a?n=1')), expected)
    t.same(await wsAnswer(server.url('/rooms/a?n=1')), expected)
    await t.rejects(connectWhatwg(server.url('/rooms/a?n=1')), WHATWG_REFUSED)
  })

  t.test('a request that passes opens with the coerced values', async (t) => {
    const client = await RawClient.open(server.port, '/rooms/lobby?n=5', { 'x-token': 't' })
    client.send({ opcode: Opcode.Text, payload: 'what did you see?' })
    t.same(JSON.parse(await firstText(client)), { params: { room: 'lobby' }, query: { n: 5 } })
    client.destroy()
    const ws = await connect(server.url('/rooms/lobby?n=7'), { headers: { 'x-token': 't' } })
    ws.send('what did you see?')
    const [first] = await messages(ws, 1)
    t.same(JSON.parse(first.toString()), { params: { room: 'lobby' }, query: { n: 7 } })
    ws.close()
    await closed(ws)
  })
})

t.test('a hook, checkOrigin or selectSubprotocol that throws: Fastify\'s error handler answers', async (t) => {
  const routes = (app: FastifyInstance): void => {
    app.get('/hook', { preValidation: async () => { throw new Error('hook failed') }, websocket: true }, function open () {})
    app.get('/hook-callback', { onRequest: (_request, _reply, done) => done(new Error('callback hook failed')), websocket: true }, function open () {})
    app.get('/hook-status', {
      preHandler: async () => { throw Object.assign(new Error('who are you'), { statusCode: 401 }) },
      websocket: true
    }, function open () {})
    app.get('/origin', { websocket: { checkOrigin: () => { throw new Error('origin check failed') } } }, function open () {})
    app.get('/origin-async', { websocket: { checkOrigin: async () => { throw new Error('origin lookup failed') } } }, function open () {})
    app.get('/select', { websocket: { selectSubprotocol: () => { throw new Error('select failed') } } }, function open () {})
    app.get('/select-async', { websocket: { selectSubprotocol: async () => { throw new Error('select lookup failed') } } }, function open () {})
  }
  const failures: Array<[path: string, headers: Record<string, string>, message: string]> = [
    ['/hook', {}, 'hook failed'],
    ['/hook-callback', {}, 'callback hook failed'],
    ['/origin', { origin: 'http://localhost' }, 'origin check failed'],
    ['/origin-async', { origin: 'http://localhost' }, 'origin lookup failed'],
    ['/select', { 'sec-websocket-protocol': 'v1' }, 'select failed'],
    ['/select-async', { 'sec-websocket-protocol': 'v1' }, 'select lookup failed']
  ]

  t.test('500 by default', async (t) => {
    const server = await startServer(t, routes)
    for (const [path, headers, message] of failures) {
      const expected = jsonAnswer(500, { statusCode: 500, error: 'Internal Server Error', message })
      t.same(await rawAnswer(server.port, upgradeRequest(path, headers)), expected, `${path}: raw client`)
      const { 'sec-websocket-protocol': protocol, ...rest } = headers
      t.same(await wsAnswer(server.url(path), { headers: rest, protocols: protocol }), expected, `${path}: ws client`)
      await t.rejects(connectWhatwg(server.url(path), { headers: rest, protocols: protocol ?? [] }), WHATWG_REFUSED, `${path}: WHATWG WebSocket`)
    }
    const logged = server.logs.filter(l => l.level === 50).map(l => (l.err as { message: string }).message)
    t.same(new Set(logged), new Set(failures.map(f => f[2])), 'each error is logged')
  })

  t.test('the error\'s own status code', async (t) => {
    const server = await startServer(t, routes)
    t.same(await rawAnswer(server.port, upgradeRequest('/hook-status')),
      jsonAnswer(401, { statusCode: 401, error: 'Unauthorized', message: 'who are you' }))
  })

  t.test('a custom error handler\'s reply', async (t) => {
    const server = await startServer(t, (app) => {
      app.setErrorHandler(function (err, _request, reply) {
        return reply.code(418).header('x-handled', 'yes').send(`handled: ${(err as Error).message}`)
      })
      routes(app)
    })
    for (const [path, headers, message] of failures) {
      const expected = textAnswer(418, `handled: ${message}`, { 'x-handled': 'yes' })
      t.same(await rawAnswer(server.port, upgradeRequest(path, headers)), expected, `${path}: raw client`)
      const { 'sec-websocket-protocol': protocol, ...rest } = headers
      t.same(await wsAnswer(server.url(path), { headers: rest, protocols: protocol }), expected, `${path}: ws client`)
    }
  })

  t.test('a hook header that cannot be sent on the 101 is a 500, not a broken handshake', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/bad-value', {
        onRequest: async (_request, reply) => { reply.header('x-bad', 'line\nbreak') },
        websocket: true
      }, function open () {})
      app.get('/bad-name', {
        onRequest: async (_request, reply) => { reply.header('x bad', 'value') },
        websocket: true
      }, function open () {})
    })
    const cases = [
      ['/bad-value', { statusCode: 500, code: 'ERR_INVALID_CHAR', error: 'Internal Server Error', message: 'Invalid character in header content ["x-bad"]' }],
      ['/bad-name', { statusCode: 500, code: 'ERR_INVALID_HTTP_TOKEN', error: 'Internal Server Error', message: 'Header name must be a valid HTTP token ["x bad"]' }]
    ] as const
    for (const [path, error] of cases) {
      // Fastify's fallback answer: the reply's headers are the broken ones, so it sends none of them
      const res = await rawHttp(server.port, upgradeRequest(path))
      t.equal(res.status, 500, path)
      t.same(withoutDate(res.headers), { connection: 'close', 'transfer-encoding': 'chunked' }, path)
      const json = JSON.stringify(error)
      t.equal(res.body, `${Buffer.byteLength(json).toString(16)}\r\n${json}\r\n0\r\n\r\n`, path)
    }
  })
})

t.test('the server is closing: 503', async (t) => {
  t.test('an upgrade held in a hook when app.close() starts gets 503 when released', async (t) => {
    const release = deferred()
    let held = 0
    const server = await startServer(t, (app) => {
      app.get('/ws', {
        preValidation: async () => {
          held++
          await release.promise
        },
        websocket: true
      }, function open () {})
    })
    const raw = rawAnswer(server.port, upgradeRequest('/ws'))
    const ws = wsAnswer(server.url('/ws'))
    const whatwg = connectWhatwg(server.url('/ws')).then(() => 'opened', (err: unknown) => err)
    await until(() => held === 3, 5000, 'three upgrades held in preValidation')
    const closing = server.app.close()
    await sleep(50)
    release.resolve()
    const expected = jsonAnswer(503, { error: 'Service Unavailable', message: 'Service Unavailable', statusCode: 503 })
    t.same(await raw, expected, 'raw client')
    t.same(await ws, expected, 'ws client')
    t.match(await whatwg, WHATWG_REFUSED, 'WHATWG WebSocket')
    await closing
  })

  t.test('a new upgrade while open sockets are being closed gets 503', async (t) => {
    const server = await startServer(t, plainRoute, { plugin: { closeTimeout: 5000 } })
    // A raw client does not answer the server's close frame, so shutdown waits for it.
    const lingering = await RawClient.open(server.port, '/ws')
    const closing = server.app.close()
    t.same(await lingering.closing(), { code: 1001, reason: 'server shutting down' })
    // Fastify's router answers this one itself
    const expected = jsonAnswer(503, { error: 'Service Unavailable', message: 'Service Unavailable', statusCode: 503 },
      { 'content-type': 'application/json' })
    t.same(await rawAnswer(server.port, upgradeRequest('/ws')), expected, 'raw client')
    t.same(await wsAnswer(server.url('/ws')), expected, 'ws client')
    await t.rejects(connectWhatwg(server.url('/ws')), WHATWG_REFUSED, 'WHATWG WebSocket')
    lingering.destroy()
    await closing
  })
})

t.test('the checks run in Tornado\'s order', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { selectSubprotocol: () => { throw new Error('never reached') } } }, function open () {})
    app.get('/hooked', {
      preValidation: async (_request, reply) => reply.code(401).send('no token'),
      websocket: true
    }, function open () {})
    app.get('/schema', {
      schema: { querystring: { type: 'object', required: ['n'], properties: { n: { type: 'integer' } } } },
      websocket: true
    }, function open () {})
  })
  const evil = 'http://evil.test'
  const cases: Array<[what: string, request: string, expected: Answer]> = [
    ['Upgrade and Origin fail: the Upgrade answer', upgradeRequest('/ws', { upgrade: 'h2c', origin: evil }), textAnswer(400, UPGRADE_BODY)],
    ['Connection and Origin fail: the Connection answer', upgradeRequest('/ws', { connection: 'close', origin: evil }), textAnswer(400, CONNECTION_BODY)],
    ['Origin and version fail: 403', upgradeRequest('/ws', { origin: evil, 'sec-websocket-version': '12' }), textAnswer(403, ORIGIN_BODY)],
    ['Origin and key fail: 403', upgradeRequest('/ws', { origin: evil, 'sec-websocket-key': null }), textAnswer(403, ORIGIN_BODY)],
    ['version and key fail: 426', upgradeRequest('/ws', { 'sec-websocket-version': null, 'sec-websocket-key': 'bad' }),
      textAnswer(426, VERSION_BODY, { 'sec-websocket-version': '13, 8' })],
    ['key and subprotocol header fail: the key answer', upgradeRequest('/ws', { 'sec-websocket-key': 'bad', 'sec-websocket-protocol': 'a,,b' }),
      textAnswer(400, KEY_BODY)],
    ['a malformed subprotocol header is refused before selectSubprotocol runs', upgradeRequest('/ws', { 'sec-websocket-protocol': 'a b' }),
      textAnswer(400, PROTOCOL_BODY)],
    ['a hook\'s reply comes before the checks (hooks run first)', upgradeRequest('/hooked', { origin: evil, 'sec-websocket-version': null }),
      textAnswer(401, 'no token')],
    ['schema validation comes before the checks', upgradeRequest('/schema', { origin: evil }),
      jsonAnswer(400, { statusCode: 400, code: 'FST_ERR_VALIDATION', error: 'Bad Request', message: 'querystring must have required property \'n\'' })]
  ]
  for (const [what, request, expected] of cases) t.same(await rawAnswer(server.port, request), expected, what)
})

// --- checkOrigin forms ------------------------------------------------------------------------

t.test('checkOrigin: true allows every origin', async (t) => {
  const server = await startServer(t, plainRoute, { plugin: { checkOrigin: true } })
  await rawAccepted(t, server.port, '/ws', { origin: 'http://evil.test' })
  await rawAccepted(t, server.port, '/ws', { origin: 'null' })
  await wsAccepted(t, server.url('/ws'), { origin: 'http://evil.test' })
  await whatwgAccepted(t, server.url('/ws'), { headers: { origin: 'http://evil.test' } })
})

t.test('checkOrigin: an array of strings and RegExps', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { checkOrigin: ['https://app.example.com', /^http:\/\/[a-z]+\.trusted\.test(:\d+)?$/] } }, function open () {})
    app.get('/global', { websocket: { checkOrigin: [/^https:\/\/app\.example\.com$/g] } }, function open () {})
    app.get('/default', { websocket: true }, function open () {})
  }, { plugin: { checkOrigin: true } })

  t.test('an allowed string, in any case', async (t) => {
    await rawAccepted(t, server.port, '/ws', { origin: 'https://app.example.com' })
    await rawAccepted(t, server.port, '/ws', { origin: 'HTTPS://APP.EXAMPLE.COM' })
    await wsAccepted(t, server.url('/ws'), { origin: 'https://app.example.com' })
    await whatwgAccepted(t, server.url('/ws'), { headers: { origin: 'https://app.example.com' } })
  })

  t.test('an origin matching a RegExp', async (t) => {
    await rawAccepted(t, server.port, '/ws', { origin: 'http://api.trusted.test:8080' })
    await wsAccepted(t, server.url('/ws'), { origin: 'http://www.trusted.test' })
  })

  t.test('any other origin, even the same host: 403', async (t) => {
    for (const origin of ['https://evil.test', 'http://app.example.com', 'http://trusted.test.evil.test', 'http://localhost']) {
      t.same(await rawAnswer(server.port, upgradeRequest('/ws', { origin })), textAnswer(403, ORIGIN_BODY), origin)
    }
    t.same(await wsAnswer(server.url('/ws'), { origin: 'https://evil.test' }), textAnswer(403, ORIGIN_BODY))
    await t.rejects(connectWhatwg(server.url('/ws'), { headers: { origin: 'https://evil.test' } }), WHATWG_REFUSED)
  })

  t.test('a route\'s checkOrigin overrides the plugin\'s', async (t) => {
    await rawAccepted(t, server.port, '/default', { origin: 'https://evil.test' })
  })

  t.test('a global RegExp allows the same origin every time', async (t) => {
    const statuses = []
    for (let i = 0; i < 4; i++) {
      statuses.push((await rawResponse(server.port, upgradeRequest('/global', { origin: 'https://app.example.com' }))).status)
    }
    t.same(statuses, [101, 101, 101, 101])
  })
})

t.test('checkOrigin: a function receiving (origin, request)', async (t) => {
  const calls: Array<{ origin: string, url: string, host: string | undefined }> = []
  const server = await startServer(t, (app) => {
    app.get('/sync', {
      websocket: {
        checkOrigin (origin, request) {
          calls.push({ origin, url: request.url, host: request.headers.host })
          return origin === 'http://friend.test'
        }
      }
    }, function open () {})
    app.get('/async', {
      websocket: {
        async checkOrigin (origin) {
          await sleep(5)
          return origin === 'http://friend.test'
        }
      }
    }, function open () {})
  })

  t.test('sync', async (t) => {
    calls.length = 0
    await rawAccepted(t, server.port, '/sync?x=1', { origin: 'http://friend.test' })
    t.same(await rawAnswer(server.port, upgradeRequest('/sync', { origin: 'http://localhost' })), textAnswer(403, ORIGIN_BODY))
    t.same(await rawAnswer(server.port, upgradeRequest('/sync', { 'sec-websocket-origin': 'http://foe.test' })), textAnswer(403, ORIGIN_BODY))
    t.same(calls, [
      { origin: 'http://friend.test', url: '/sync?x=1', host: 'localhost' },
      { origin: 'http://localhost', url: '/sync', host: 'localhost' },
      { origin: 'http://foe.test', url: '/sync', host: 'localhost' }
    ])
    await wsAccepted(t, server.url('/sync'), { origin: 'http://friend.test' })
    t.same(await wsAnswer(server.url('/sync'), { origin: 'http://foe.test' }), textAnswer(403, ORIGIN_BODY))
    await whatwgAccepted(t, server.url('/sync'), { headers: { origin: 'http://friend.test' } })
  })

  t.test('no Origin: allowed without asking the function', async (t) => {
    calls.length = 0
    await rawAccepted(t, server.port, '/sync')
    t.same(calls, [])
  })

  t.test('async', async (t) => {
    await rawAccepted(t, server.port, '/async', { origin: 'http://friend.test' })
    t.same(await rawAnswer(server.port, upgradeRequest('/async', { origin: 'http://foe.test' })), textAnswer(403, ORIGIN_BODY))
    await wsAccepted(t, server.url('/async'), { origin: 'http://friend.test' })
    t.same(await wsAnswer(server.url('/async'), { origin: 'http://foe.test' }), textAnswer(403, ORIGIN_BODY))
    await t.rejects(connectWhatwg(server.url('/async'), { headers: { origin: 'http://foe.test' } }), WHATWG_REFUSED)
  })
})

// --- subprotocols -----------------------------------------------------------------------------

t.test('subprotocols: the server\'s preferred among those offered', async (t) => {
  // undici does not close the connection it refuses for a missing subprotocol:
  // a short closeTimeout keeps the shutdown that ends it quick
  const server = await startServer(t, (app) => {
    reportingRoute(app, '/ws', { subprotocols: ['v2', 'v1'] })
  }, { plugin: { closeTimeout: 200 } })

  t.test('raw client', async (t) => {
    const client = await RawClient.open(server.port, '/ws', { 'sec-websocket-protocol': 'v1, v2, v3' })
    t.same(client.handshake, { status: 101, headers: { ...ACCEPTED_HEADERS, 'sec-websocket-protocol': 'v2' }, body: '' })
    client.send({ opcode: Opcode.Text, payload: 'which?' })
    t.equal(await firstText(client), 'protocol=v2', 'socket.protocol on the server')
    client.destroy()
  })

  t.test('ws client', async (t) => {
    const ws = await connect(server.url('/ws'), { protocols: ['v1', 'v2'] })
    t.equal(ws.protocol, 'v2')
    ws.send('which?')
    t.same(await messages(ws, 1), ['protocol=v2'])
    ws.close()
    await closed(ws)
    const v1 = await connect(server.url('/ws'), { protocols: ['v0', 'v1'] })
    t.equal(v1.protocol, 'v1')
    v1.close()
    await closed(v1)
  })

  t.test('WHATWG WebSocket', async (t) => {
    const ws = await connectWhatwg(server.url('/ws'), ['v1', 'v2'])
    t.equal(ws.protocol, 'v2')
    const reply = new Promise<string>(resolve => ws.addEventListener('message', (e) => resolve(String(e.data)), { once: true }))
    ws.send('which?')
    t.equal(await reply, 'protocol=v2')
    const gone = whatwgClosed(ws)
    ws.close(1000)
    t.same(await gone, { code: 1000, reason: '', wasClean: true })
  })

  t.test('none offered: no header, open, socket.protocol is empty', async (t) => {
    const client = await RawClient.open(server.port, '/ws')
    t.same(client.handshake, { status: 101, headers: ACCEPTED_HEADERS, body: '' })
    client.send({ opcode: Opcode.Text, payload: 'which?' })
    t.equal(await firstText(client), 'protocol=')
    client.destroy()
    t.equal(await whatwgAccepted(t, server.url('/ws')), '')
    const ws = await connect(server.url('/ws'))
    t.equal(ws.protocol, '')
    ws.close()
    await closed(ws)
  })

  t.test('none matching: no header, the connection still opens', async (t) => {
    const client = await RawClient.open(server.port, '/ws', { 'sec-websocket-protocol': 'v3, v4' })
    t.same(client.handshake, { status: 101, headers: ACCEPTED_HEADERS, body: '' })
    client.send({ opcode: Opcode.Text, payload: 'which?' })
    t.equal(await firstText(client), 'protocol=')
    client.destroy()
    // Both clients then give up themselves, as RFC 6455 section 4.1 tells them to.
    await t.rejects(connect(server.url('/ws'), { protocols: ['v3'] }), { message: 'Server sent no subprotocol' })
    await t.rejects(connectWhatwg(server.url('/ws'), ['v3']), WHATWG_REFUSED)
  })

  t.test('a malformed Sec-WebSocket-Protocol header: 400', async (t) => {
    for (const header of ['', 'v1,,v2', 'v1 v2', 'v1, v1', '"v1"']) {
      t.same(await rawAnswer(server.port, upgradeRequest('/ws', { 'sec-websocket-protocol': header })), textAnswer(400, PROTOCOL_BODY), JSON.stringify(header))
    }
  })
})

t.test('selectSubprotocol', async (t) => {
  const offers: string[][] = []
  const server = await startServer(t, (app) => {
    reportingRoute(app, '/sync', {
      selectSubprotocol (offered: string[], request: { headers: Record<string, unknown> }) {
        offers.push(offered)
        return request.headers['x-pick'] as string | undefined
      }
    })
    reportingRoute(app, '/async', {
      async selectSubprotocol (offered: string[]) {
        await sleep(5)
        return offered.find(p => p.startsWith('app.'))
      }
    })
    reportingRoute(app, '/none', { selectSubprotocol: () => false })
  })

  t.test('sync: gets the offers in the client\'s order, its choice is echoed', async (t) => {
    offers.length = 0
    const client = await RawClient.open(server.port, '/sync', { 'sec-websocket-protocol': 'b, a, c', 'x-pick': 'a' })
    t.same(client.handshake, { status: 101, headers: { ...ACCEPTED_HEADERS, 'sec-websocket-protocol': 'a' }, body: '' })
    client.send({ opcode: Opcode.Text, payload: 'which?' })
    t.equal(await firstText(client), 'protocol=a')
    client.destroy()
    t.same(offers, [['b', 'a', 'c']])
    const ws = await connect(server.url('/sync'), { protocols: ['b', 'c'], headers: { 'x-pick': 'c' } })
    t.equal(ws.protocol, 'c')
    ws.send('which?')
    t.same(await messages(ws, 1), ['protocol=c'])
    ws.close()
    await closed(ws)
    t.equal(await whatwgAccepted(t, server.url('/sync'), { protocols: ['b', 'c'], headers: { 'x-pick': 'b' } }), 'b')
  })

  t.test('async', async (t) => {
    const client = await RawClient.open(server.port, '/async', { 'sec-websocket-protocol': 'x, app.v1, app.v2' })
    t.equal(client.handshake?.headers['sec-websocket-protocol'], 'app.v1')
    client.destroy()
    const ws = await connect(server.url('/async'), { protocols: ['app.v2'] })
    t.equal(ws.protocol, 'app.v2')
    ws.close()
    await closed(ws)
    t.equal(await whatwgAccepted(t, server.url('/async'), ['x', 'app.v3']), 'app.v3')
  })

  t.test('choosing none: no header, the connection opens', async (t) => {
    await rawAccepted(t, server.port, '/sync', { 'sec-websocket-protocol': 'a' })
    await rawAccepted(t, server.port, '/sync', { 'sec-websocket-protocol': 'a', 'x-pick': '' })
    await rawAccepted(t, server.port, '/none', { 'sec-websocket-protocol': 'a' })
    await rawAccepted(t, server.port, '/none')
  })

  t.test('choosing one the client did not offer: 500', async (t) => {
    const expected = jsonAnswer(500, {
      statusCode: 500,
      code: 'FST_WS_SUBPROTOCOL_NOT_OFFERED',
      error: 'Internal Server Error',
      message: 'Subprotocol "z" was selected, but the client did not offer it'
    })
    t.same(await rawAnswer(server.port, upgradeRequest('/sync', { 'sec-websocket-protocol': 'a, b', 'x-pick': 'z' })), expected)
    t.same(await rawAnswer(server.port, upgradeRequest('/sync', { 'x-pick': 'z' })), expected, 'nothing offered')
    t.same(await wsAnswer(server.url('/sync'), { protocols: ['a'], headers: { 'x-pick': 'z' } }), expected)
    await t.rejects(connectWhatwg(server.url('/sync'), { protocols: ['a'], headers: { 'x-pick': 'z' } }), WHATWG_REFUSED)
  })
})

// --- headers on the 101, closing after a refusal, routing ----------------------------------

t.test('headers set by hooks with reply.header() are sent on the 101', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      onRequest: async (_request, reply) => { reply.header('x-request-id', 'req-7') },
      preValidation: async (_request, reply) => {
        reply.header('set-cookie', 'a=1')
        reply.header('set-cookie', 'b=2')
        // headers the handshake owns are not taken from hooks
        reply.header('content-type', 'text/html')
        reply.header('sec-websocket-accept', 'forged')
      },
      preHandler: async (_request, reply) => { reply.header('x-served-by', 'node-1') },
      websocket: true
    }, function open () {})
  })

  t.test('raw client', async (t) => {
    await rawAccepted(t, server.port, '/ws', {}, { 'x-request-id': 'req-7', 'set-cookie': 'a=1, b=2', 'x-served-by': 'node-1' })
  })

  t.test('ws client\'s upgrade event', async (t) => {
    let response: IncomingMessage | undefined
    const ws = await connect(server.url('/ws'), { onUpgrade: (res) => { response = res } })
    t.equal(response?.statusCode, 101)
    t.equal(response?.headers['x-request-id'], 'req-7')
    t.equal(response?.headers['x-served-by'], 'node-1')
    t.same(response?.headers['set-cookie'], ['a=1', 'b=2'])
    t.equal(response?.headers['content-type'], undefined)
    ws.close()
    await closed(ws)
  })
})

t.test('after a refusal on an upgrade connection the server closes it', async (t) => {
  const server = await startServer(t, plainRoute)
  // rawHttp resolves only when the server closes the connection
  const res = await rawHttp(server.port, upgradeRequest('/ws', { origin: 'http://evil.test' }), 3000)
  t.equal(res.status, 403)
  t.equal(res.headers.connection, 'close')
  t.ok(res.raw.endsWith(`\r\n\r\n${ORIGIN_BODY}`), 'nothing after the answer')
})

t.test('an upgrade to an unknown path: Fastify\'s 404', async (t) => {
  const server = await startServer(t, plainRoute)
  const expected = jsonAnswer(404, { message: 'Route GET:/nope not found', error: 'Not Found', statusCode: 404 })
  t.same(await rawAnswer(server.port, upgradeRequest('/nope')), expected)
  t.same(await wsAnswer(server.url('/nope')), expected)
  await t.rejects(connectWhatwg(server.url('/nope')), WHATWG_REFUSED)
  t.same(await rawAnswer(server.port, upgradeRequest('/ws').replace(/^GET/, 'POST')),
    jsonAnswer(404, { message: 'Route POST:/ws not found', error: 'Not Found', statusCode: 404 }), 'another method')
})

t.test('an upgrade to a plain route: its normal HTTP answer, then the connection closes', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/plain', async (_request, reply) => reply.header('x-plain', 'yes').send({ hello: 'world' }))
  })
  const expected = jsonAnswer(200, { hello: 'world' }, { 'x-plain': 'yes' })
  t.same(await rawAnswer(server.port, upgradeRequest('/plain')), expected)
  t.same(await wsAnswer(server.url('/plain')), expected)
  await t.rejects(connectWhatwg(server.url('/plain')), WHATWG_REFUSED)
})

t.test('HEAD on a websocket route: 400 without a body', async (t) => {
  const server = await startServer(t, (app) => {
    plainRoute(app)
    app.route({ method: ['GET', 'HEAD'], url: '/both', websocket: true, handler: function open () {} })
  })
  const expected: Answer = { status: 400, headers: { 'content-type': TEXT, 'content-length': '34', connection: 'close' }, body: '' }
  for (const path of ['/ws', '/both']) {
    t.same(await rawAnswer(server.port, `HEAD ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`), expected, `${path}: plain HEAD`)
    t.same(await rawAnswer(server.port, upgradeRequest(path).replace(/^GET/, 'HEAD')), expected, `${path}: HEAD with upgrade headers`)
    await rawAccepted(t, server.port, path)
  }
})

t.test('the websocket option on a route other than GET throws at registration', async (t) => {
  const app = Fastify()
  await app.register(typedWebsocket)
  t.teardown(() => app.close())
  t.throws(() => app.post('/ws', { websocket: true }, function open () {}), {
    code: 'FST_WS_NOT_GET',
    message: 'Route "/ws": the websocket option is only allowed on GET routes, not POST'
  })
  t.throws(() => app.route({ method: ['GET', 'PUT', 'DELETE'] as never, url: '/multi', websocket: true, handler: function open () {} }), {
    code: 'FST_WS_NOT_GET',
    message: 'Route "/multi": the websocket option is only allowed on GET routes, not PUT, DELETE'
  })
  t.throws(() => app.route({ method: 'HEAD' as never, url: '/head', websocket: true, handler: function open () {} }), {
    code: 'FST_WS_NOT_GET',
    message: 'Route "/head": the websocket option is only allowed on GET routes, not HEAD'
  })
})

t.test('app.inject() cannot upgrade: 400 FST_WS_NO_UPGRADE_SOCKET', async (t) => {
  const server = await startServer(t, plainRoute, { listen: false })
  const res = await server.app.inject({
    method: 'GET',
    url: '/ws',
    headers: { upgrade: 'websocket', connection: 'Upgrade', 'sec-websocket-key': GOOD_KEY, 'sec-websocket-version': '13' }
  })
  t.equal(res.statusCode, 400)
  t.equal(res.headers['content-type'], JSON_TYPE)
  t.same(res.json(), {
    statusCode: 400,
    code: 'FST_WS_NO_UPGRADE_SOCKET',
    error: 'Bad Request',
    message: 'A WebSocket upgrade needs a raw connection; use app.injectWS() instead of app.inject()'
  })
  const plain = await server.app.inject({ method: 'GET', url: '/ws' })
  t.equal(plain.statusCode, 400)
  t.equal(plain.body, UPGRADE_BODY)
})

// --- app.injectWS ---------------------------------------------------------------------------

t.test('app.injectWS()', async (t) => {
  const seen: Array<string | undefined> = []
  const server = await startServer(t, (app) => {
    app.get('/room', {
      preValidation: async (request, reply) => {
        seen.push(request.headers.authorization)
        if (request.headers.authorization !== 'Bearer good') return reply.code(401).header('www-authenticate', 'Bearer').send('who are you?')
      },
      websocket: {
        subprotocols: ['chat.v2', 'chat.v1'],
        message (socket, msg) {
          return socket.send(`${socket.protocol}:${String(msg)}`)
        }
      }
    }, function open () {})
    app.get('/hangup', {
      preValidation: async (request, reply) => {
        reply.hijack()
        request.raw.socket.destroy()
      },
      websocket: true
    }, function open () {})
    app.get('/garbage', {
      websocket: {
        message (socket) {
          // a frame with a reserved opcode: the client fails the connection
          const raw = socket.raw as unknown as { _socket: { write (b: Buffer): void } }
          raw._socket.write(Buffer.from([0x83, 0x00]))
        }
      }
    }, function open () {})
  }, { listen: false })

  t.test('resolves to an open client that went through the hooks', async (t) => {
    seen.length = 0
    const ws = await server.app.injectWS('/room', { headers: { authorization: 'Bearer good' }, protocols: ['chat.v1', 'chat.v2'] })
    t.equal(ws.readyState, ws.OPEN)
    t.equal(ws.protocol, 'chat.v2')
    t.same(seen, ['Bearer good'], 'preValidation saw the header')
    const reply = messages(ws, 1)
    ws.send('hello')
    t.same(await reply, ['chat.v2:hello'])
    const gone = closed(ws)
    ws.close(1000, 'bye')
    t.same(await gone, { code: 1000, reason: 'bye' })
  })

  t.test('a reply arrives after ws.send() returns, as over the network', async (t) => {
    const ws = await server.app.injectWS('/room', { headers: { authorization: 'Bearer good' } })
    const got: string[] = []
    ws.on('message', (data) => { got.push(String(data)) })
    ws.send('hello')
    t.same(got, [], 'nothing is delivered inside ws.send()')
    await until(() => got.length === 1, 5000, 'the reply')
    t.same(got, [':hello'])
    const gone = closed(ws)
    ws.close()
    await gone
  })

  t.test('a single protocol as a string', async (t) => {
    const ws = await server.app.injectWS('/room', { headers: { authorization: 'Bearer good' }, protocols: 'chat.v1' })
    t.equal(ws.protocol, 'chat.v1')
    ws.close()
    await closed(ws)
  })

  t.test('rejects with the status, headers and body of a hook\'s refusal', async (t) => {
    const err = await server.app.injectWS('/room').then(() => undefined, (e: Refused & { code: string }) => e)
    t.ok(err, 'rejected')
    t.match(err, {
      code: 'FST_WS_UPGRADE_REFUSED',
      message: 'The WebSocket upgrade was refused with HTTP 401',
      statusCode: 401,
      body: 'who are you?'
    })
    t.same(withoutDate(err?.headers ?? {}), {
      'www-authenticate': 'Bearer', 'content-type': TEXT, 'content-length': '12', connection: 'close'
    })
  })

  t.test('rejects with 403 for a cross origin', async (t) => {
    await t.rejects(server.app.injectWS('/room', { headers: { authorization: 'Bearer good', origin: 'http://evil.test' } }), {
      code: 'FST_WS_UPGRADE_REFUSED',
      statusCode: 403,
      body: ORIGIN_BODY,
      headers: { 'content-type': TEXT, connection: 'close' }
    })
    const ws = await server.app.injectWS('/room', { headers: { authorization: 'Bearer good', origin: 'http://localhost' } })
    t.equal(ws.readyState, ws.OPEN, 'the same host (ws://localhost) passes')
    ws.close()
    await closed(ws)
  })

  t.test('rejects when the server drops the connection without an answer', async (t) => {
    await t.rejects(server.app.injectWS('/hangup'), { message: 'socket hang up' })
  })

  t.test('an error after the handshake shows as the client\'s close', async (t) => {
    const ws = await server.app.injectWS('/garbage')
    const gone = closed(ws)
    ws.send('provoke')
    t.same(await gone, { code: 1006, reason: '' })
  })

  t.test('works on a listening server too', async (t) => {
    const listening = await startServer(t, plainRoute)
    const ws = await listening.app.injectWS('/ws')
    t.equal(ws.readyState, ws.OPEN)
    ws.close()
    await closed(ws)
  })
})

// --- where routes live ----------------------------------------------------------------------

t.test('routes under a prefix, in an encapsulated plugin, and through app.route()', async (t) => {
  const server: TestServer = await startServer(t, async (app) => {
    await app.register(async function v1 (child) {
      child.addHook('onRequest', async (request, reply) => {
        if (request.headers['x-api-key'] !== 'k') return reply.code(401).send('api key needed')
      })
      child.get('/chat', { websocket: { message: (socket) => socket.send(`v1 chat at ${socket.request.url}`) } }, function open () {})
    }, { prefix: '/v1' })
    app.get('/chat', { websocket: { message: (socket) => socket.send('root chat') } }, function open () {})
    app.route({
      method: 'GET',
      url: '/routed/:id',
      websocket: {
        message (socket, msg) {
          return socket.send(`routed ${(socket.request.params as { id: string }).id}: ${String(msg)}`)
        }
      },
      handler: function open (socket) {
        // sent at once: only the raw client, which records every frame, can be sure to see it
        return socket.send('opened')
      }
    })
  })

  t.test('the prefix applies, and the hook inside the plugin runs', async (t) => {
    t.same(await rawAnswer(server.port, upgradeRequest('/v1/chat')), textAnswer(401, 'api key needed'))
    t.same(await wsAnswer(server.url('/v1/chat')), textAnswer(401, 'api key needed'))
    await t.rejects(connectWhatwg(server.url('/v1/chat')), WHATWG_REFUSED)
    const ws = await connect(server.url('/v1/chat'), { headers: { 'x-api-key': 'k' } })
    ws.send('hi')
    t.same(await messages(ws, 1), ['v1 chat at /v1/chat'])
    ws.close()
    await closed(ws)
    t.equal(await whatwgAccepted(t, server.url('/v1/chat'), { headers: { 'x-api-key': 'k' } }), '')
  })

  t.test('the hook does not apply outside the plugin', async (t) => {
    const ws = await connect(server.url('/chat'))
    ws.send('hi')
    t.same(await messages(ws, 1), ['root chat'])
    ws.close()
    await closed(ws)
    await rawAccepted(t, server.port, '/chat')
    await whatwgAccepted(t, server.url('/chat'))
  })

  t.test('app.route({ method: \'GET\', url, websocket, handler })', async (t) => {
    const client = await RawClient.open(server.port, '/routed/1')
    t.equal(await firstText(client), 'opened')
    client.destroy()
    const ws = await connect(server.url('/routed/42'))
    const got: string[] = []
    ws.on('message', (data) => { got.push(String(data)) })
    ws.send('hi')
    await until(() => got.includes('routed 42: hi'), 5000, 'the reply')
    ws.close()
    await closed(ws)
    const whatwg = await connectWhatwg(server.url('/routed/7'))
    const reply = new Promise<string>(resolve => whatwg.addEventListener('message', (e) => {
      if (e.data !== 'opened') resolve(String(e.data))
    }))
    whatwg.send('yo')
    t.equal(await reply, 'routed 7: yo')
    const gone = whatwgClosed(whatwg)
    whatwg.close()
    await gone
  })
})

t.test('a client that resets its connection while a hook runs does not break the server', async (t) => {
  const release = deferred()
  let held = false
  const server = await startServer(t, (app) => {
    app.get('/slow', {
      preValidation: async () => {
        held = true
        await release.promise
      },
      websocket: true
    }, function open () {})
    plainRoute(app)
  })
  const client = await RawClient.connectOnly(server.port)
  client.socket.write(upgradeRequest('/slow'))
  await until(() => held, 5000, 'the upgrade held in preValidation')
  client.socket.resetAndDestroy()
  await sleep(50)
  release.resolve()
  await sleep(50)
  await rawAccepted(t, server.port, '/ws')
  t.same(await rawAnswer(server.port, upgradeRequest('/ws', { origin: 'http://evil.test' })), textAnswer(403, ORIGIN_BODY))
})
