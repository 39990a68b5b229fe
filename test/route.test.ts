// Registering websocket routes: option and schema errors at app.ready(), GET only,
// prefixes, encapsulation, the route shorthands, and per-route options.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { startServer, connect, closed, messages } from './helpers/server'
import typedWebsocket from './helpers/plugin'

function open (): void {}

function echo (socket: { send (data: unknown): Promise<void> }, msg: unknown): Promise<void> {
  return socket.send(msg)
}

/** The error app.ready() fails with once `routes` are added (and the plugin registered with `plugin`). */
async function readyError (t: { teardown (fn: () => unknown): void }, routes: (app: FastifyInstance) => void, plugin: Record<string, unknown> = {}): Promise<Error & { code?: string }> {
  const app = Fastify()
  t.teardown(() => app.close().catch(() => {}))
  try {
    await app.register(typedWebsocket, plugin)
    routes(app)
    await app.ready()
  } catch (err) {
    return err as Error & { code?: string }
  }
  throw new Error('app.ready() succeeded')
}

t.test('a broken route option fails app.ready() with FST_WS_INVALID_OPTION naming the route', async (t) => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['unknown option', { maxMesageSize: 10 }, /unknown option "maxMesageSize"/],
    ['negative maxMessageSize', { maxMessageSize: -1 }, /maxMessageSize must be an integer >= 1, got -1/],
    ['non-function message', { message: 'echo' }, /message must be a function/],
    ['checkOrigin false', { checkOrigin: false }, /checkOrigin: false is ambiguous/],
    ['subprotocols and selectSubprotocol', { subprotocols: ['v1'], selectSubprotocol: () => 'v1' }, /give either subprotocols or selectSubprotocol, not both/],
    ['pingInterval without pingTimeout', { pingInterval: 1000, pingTimeout: 0 }, /pingTimeout must be > 0 while pingInterval is on/],
    ['websocket: \'yes\'', 'yes', /the websocket option must be true or an object/],
    ['websocket: null', null, /the websocket option must be true or an object/],
    ['websocket: an array', [], /the websocket option must be true or an object/],
    ['inbound not a schema', { inbound: 'ClientMsg' }, /inbound must be a schema object/],
    ['binary not a boolean', { binary: 1 }, /binary must be a boolean/]
  ]
  for (const [what, websocket, message] of cases) {
    const err = await readyError(t, (app) => {
      app.get('/fine', { websocket: true }, open)
      app.route({ method: 'GET', url: '/rooms/:room', websocket, handler: open } as never)
    })
    t.equal(err.code, 'FST_WS_INVALID_OPTION', what)
    t.match(err.message, /^Route "\/rooms\/:room": /, `${what}: names the route`)
    t.match(err.message, message, what)
  }
})

t.test('a route error through the helpers\' startServer', async (t) => {
  await t.rejects(startServer(t, (app) => {
    app.get('/bad', { websocket: { maxMessageSize: 0 } }, open)
  }, { listen: false }), { code: 'FST_WS_INVALID_OPTION', message: 'Route "/bad": maxMessageSize must be an integer >= 1, got 0' })
})

/**
 * Runs the plugin function the way avvio does, on a fresh instance: whether it threw
 * synchronously, and what it passed to `done`.
 */
function runPlugin (options: Record<string, unknown>): { threw: unknown, done: unknown } {
  const app = Fastify()
  let threw: unknown
  let done: unknown = 'not called'
  try {
    (typedWebsocket as unknown as (i: FastifyInstance, o: unknown, d: (err?: Error) => void) => void)(app, options, (err) => { done = err })
  } catch (err) {
    threw = err
  }
  return { threw, done }
}

t.test('broken plugin options fail with FST_WS_INVALID_OPTION', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['maxMessageSize -1', { maxMessageSize: -1 }, /^fastify-typed-websocket options: maxMessageSize must be an integer >= 1, got -1$/],
    ['unknown option', { nope: true }, /^fastify-typed-websocket options: unknown option "nope"$/],
    ['a route-only hook', { message () {} }, /unknown option "message"/],
    ['a route-only schema', { inbound: {} }, /unknown option "inbound"/],
    ['checkOrigin false', { checkOrigin: false }, /checkOrigin: false is ambiguous/],
    ['pingTimeout 0', { pingTimeout: 0 }, /pingTimeout must be > 0 while pingInterval is on/],
    ['compression \'gzip\'', { compression: 'gzip' }, /compression must be a boolean or a permessage-deflate options object/]
  ]
  // A callback plugin that throws synchronously is not caught by avvio: the error
  // becomes an uncaughtException and register() only fails after the plugin timeout.
  // The plugin must hand the error to `done` instead.
  let handedToDone = true
  for (const [what, plugin, message] of cases) {
    const { threw, done } = runPlugin(plugin)
    t.match({ threw: threw === undefined ? 'nothing' : String(threw), done },
      { threw: 'nothing', done: { code: 'FST_WS_INVALID_OPTION', message } },
      `${what}: given to done, not thrown from the plugin function`)
    if (threw !== undefined) handedToDone = false
  }
  t.equal(runPlugin({ maxMessageSize: 5 }).done, undefined, 'valid options: done() without an error')
  // Through register/ready (only once the plugin reports through done: a synchronous
  // throw would crash this test process).
  if (!handedToDone) return
  for (const [what, plugin, message] of cases) {
    const err = await readyError(t, () => {}, plugin)
    t.equal(err.code, 'FST_WS_INVALID_OPTION', what)
    t.match(err.message, message)
  }
  await t.rejects(startServer(t, () => {}, { plugin: { closeTimeout: 0 }, listen: false }),
    { code: 'FST_WS_INVALID_OPTION', message: /closeTimeout must be an integer >= 1, got 0/ })
})

t.test('Fastify\'s own register options are not taken for the plugin\'s', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(typedWebsocket, { prefix: '/ignored', logLevel: 'warn', logSerializers: {}, maxMessageSize: 100 } as never)
  app.get('/ws', { websocket: { message: echo } }, open)
  await app.ready()
  const client = await app.injectWS('/ws')
  // listen first: through injectWS the echo can arrive before send() returns
  const echoed = messages(client, 1)
  client.send('x'.repeat(50))
  t.same(await echoed, ['x'.repeat(50)])
  const done = closed(client)
  client.send('x'.repeat(101))
  t.equal((await done).code, 1009, 'maxMessageSize from the same options object applies')
})

t.test('an uncompilable schema fails app.ready() with FST_WS_INVALID_SCHEMA naming the route', async (t) => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['inbound { type: \'nope\' }', { inbound: { type: 'nope' } }, /^Route "\/schema\/:id": the inbound schema does not compile: /],
    ['outbound { type: \'nope\' }', { outbound: { type: 'nope' } }, /^Route "\/schema\/:id": the outbound schema does not compile: /],
    ['inbound $ref to a missing schema', { inbound: { $ref: 'Missing#' } }, /^Route "\/schema\/:id": the inbound schema does not compile: .*Missing/],
    ['outbound $ref to a missing schema', { outbound: { $ref: 'Missing#' } }, /^Route "\/schema\/:id": the outbound schema does not compile: .*Missing/],
    ['inbound Type.Ref to a missing schema', { inbound: Type.Ref('Missing') }, /the inbound schema does not compile/]
  ]
  for (const [what, websocket, message] of cases) {
    const err = await readyError(t, (app) => {
      app.get('/schema/:id', { websocket: { ...websocket, message: echo } }, open)
    })
    t.equal(err.code, 'FST_WS_INVALID_SCHEMA', what)
    t.match(err.message, message, what)
  }
})

t.test('the route handler (open) must be a function', async (t) => {
  const err = await readyError(t, (app) => {
    app.route({ method: 'GET', url: '/no-open', websocket: true, handler: 'open' } as never)
  })
  t.equal(err.code, 'FST_WS_INVALID_OPTION')
  t.equal(err.message, 'Route "/no-open": the route handler (open) must be a function')
  const shorthand = await readyError(t, (app) => {
    app.get('/no-open', { websocket: { message: echo } }, { not: 'a function' } as never)
  })
  t.equal(shorthand.code, 'FST_WS_INVALID_OPTION')
  t.match(shorthand.message, /^Route "\/no-open": the route handler \(open\) must be a function$/)
})

t.test('websocket on a route that is not GET throws at registration', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(typedWebsocket)
  t.throws(() => app.post('/post', { websocket: true } as never, open), {
    code: 'FST_WS_NOT_GET',
    message: 'Route "/post": the websocket option is only allowed on GET routes, not POST'
  })
  t.throws(() => app.route({ method: ['GET', 'POST'], url: '/both', websocket: true, handler: open } as never), {
    code: 'FST_WS_NOT_GET',
    message: 'Route "/both": the websocket option is only allowed on GET routes, not POST'
  })
  t.throws(() => app.route({ method: ['PUT', 'GET', 'DELETE'], url: '/many', websocket: { message: echo }, handler: open } as never), {
    code: 'FST_WS_NOT_GET',
    message: /not PUT, DELETE$/
  })
  t.throws(() => app.route({ method: 'HEAD', url: '/head', websocket: true, handler: open } as never),
    { code: 'FST_WS_NOT_GET' }, 'a HEAD-only route cannot upgrade either')
})

t.test('websocket: false (or absent) leaves a plain HTTP route', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/plain', { websocket: false } as never, async () => ({ plain: true }))
    app.get('/also-plain', async () => ({ plain: true }))
  }, { listen: false })
  t.same((await server.app.inject('/plain')).json(), { plain: true })
  t.same((await server.app.inject('/also-plain')).json(), { plain: true })
})

t.test('the HEAD route Fastify adds for a websocket GET cannot upgrade', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: true }, open)
  })
  const head = await server.app.inject({ method: 'HEAD', url: '/ws' })
  t.equal(head.statusCode, 400)
  const get = await server.app.inject({ method: 'GET', url: '/ws' })
  t.equal(get.statusCode, 400)
  t.equal(get.body, 'Can "Upgrade" only to "WebSocket".')
})

t.test('shorthand app.get and app.route, with GET and [GET, HEAD]', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/get', { websocket: { message: (socket, msg) => socket.send(`get:${String(msg)}`) } }, open)
    app.route({
      method: 'GET',
      url: '/route',
      websocket: { message: (socket, msg) => socket.send(`route:${String(msg)}`) },
      handler: open
    })
    app.route({
      method: ['GET', 'HEAD'],
      url: '/route-head',
      websocket: { message: (socket, msg) => socket.send(`route-head:${String(msg)}`) },
      handler: open
    })
  })
  for (const path of ['/get', '/route', '/route-head']) {
    const ws = await connect(server.url(path))
    ws.send('hi')
    t.same(await messages(ws, 1), [`${path.slice(1)}:hi`], path)
    ws.close()
    await closed(ws)
  }
})

t.test('routes under a prefix', async (t) => {
  const server = await startServer(t, async (app) => {
    await app.register(async function v1 (child) {
      child.get('/chat', { websocket: { message: (socket, msg) => socket.send(`v1:${String(msg)}`) } }, open)
      child.get('/', { websocket: { message: (socket, msg) => socket.send(`root:${String(msg)}`) } }, open)
    }, { prefix: '/v1' })
  })
  for (const [path, answer] of [['/v1/chat', 'v1:x'], ['/v1', 'root:x'], ['/v1/', 'root:x']]) {
    const ws = await connect(server.url(path))
    ws.send('x')
    t.same(await messages(ws, 1), [answer], path)
    ws.close()
    await closed(ws)
  }
  const unprefixed = await connect(server.url('/chat')).then(() => 'connected', (err: unknown) => err)
  t.match(unprefixed, { statusCode: 404 }, 'not without the prefix')
})

t.test('encapsulation: a child context\'s hooks and decorations reach only its routes', async (t) => {
  const seen: string[] = []
  const thisSeen: Array<[string, unknown]> = []
  const server = await startServer(t, async (app) => {
    app.get('/root', {
      websocket: {
        message (socket) {
          thisSeen.push(['root message', (this as unknown as { secret?: unknown }).secret])
          return socket.send('root')
        }
      }
    }, function (this: FastifyInstance) {
      thisSeen.push(['root open', (this as unknown as { secret?: unknown }).secret])
    })
    await app.register(async function child (child) {
      child.decorate('secret', 'child')
      child.addHook('onRequest', async (request) => { seen.push(`onRequest ${request.url}`) })
      child.addHook('preValidation', async (request, reply) => {
        seen.push(`preValidation ${request.url}`)
        reply.header('x-child', 'yes')
      })
      child.get('/child', {
        websocket: {
          message (socket) {
            thisSeen.push(['child message', (this as unknown as { secret?: unknown }).secret])
            return socket.send('child')
          }
        }
      }, function (this: FastifyInstance) {
        thisSeen.push(['child open', (this as unknown as { secret?: unknown }).secret])
      })
    })
  })
  const headers: Record<string, string | undefined> = {}
  for (const path of ['/root', '/child']) {
    const ws = await connect(server.url(path), { onUpgrade: (res) => { headers[path] = res.headers['x-child'] as string | undefined } })
    ws.send('?')
    t.same(await messages(ws, 1), [path.slice(1)])
    ws.close()
    await closed(ws)
  }
  t.same(seen, ['onRequest /child', 'preValidation /child'], 'the child\'s hooks ran for its route only')
  t.same(headers, { '/root': undefined, '/child': 'yes' }, 'the child\'s hook header is on its 101 only')
  t.same(thisSeen, [
    ['root open', undefined],
    ['root message', undefined],
    ['child open', 'child'],
    ['child message', 'child']
  ], '`this` is the instance the route was declared in')
})

t.test('each route applies its own options', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/small', { websocket: { maxMessageSize: 10, message: echo } }, open)
    app.get('/big', { websocket: { maxMessageSize: 1000, message: echo } }, open)
  })
  const big = await connect(server.url('/big'))
  big.send('x'.repeat(20))
  t.same(await messages(big, 1), ['x'.repeat(20)], '/big takes 20 bytes')
  const small = await connect(server.url('/small'))
  small.send('x'.repeat(10))
  t.same(await messages(small, 1), ['x'.repeat(10)], '/small takes 10 bytes')
  small.send('x'.repeat(20))
  t.equal((await closed(small)).code, 1009, '/small refuses 20 bytes')
  big.send('still open')
  t.same(await messages(big, 1), ['still open'], '/big is unaffected')
  big.close()
  await closed(big)
})

t.test('a route-level option overrides the plugin-level one', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/default', { websocket: { message: echo } }, open)
    app.get('/override', { websocket: { maxMessageSize: 1000, message: echo } }, open)
  }, { plugin: { maxMessageSize: 10 } })
  const override = await connect(server.url('/override'))
  override.send('y'.repeat(100))
  t.same(await messages(override, 1), ['y'.repeat(100)])
  override.close()
  await closed(override)
  const plain = await connect(server.url('/default'))
  plain.send('y'.repeat(100))
  t.equal((await closed(plain)).code, 1009, 'the plugin\'s maxMessageSize applies where the route sets none')
})

t.test('validateOutbound: the route overrides the plugin in both directions', async (t) => {
  const Out = Type.Object({ s: Type.String({ maxLength: 2 }) })
  const results: Record<string, string> = {}
  function tryBad (path: string) {
    return function (socket: { send (data: unknown): Promise<void> }): Promise<void> {
      try {
        socket.send({ s: 'too long' }).catch(() => {})
        results[path] = 'sent'
      } catch (err) {
        results[path] = (err as { code: string }).code
      }
      return socket.send({ s: 'ok' })
    }
  }
  const server = await startServer(t, (app) => {
    app.get('/on', { websocket: { outbound: Out, validateOutbound: true, message: tryBad('/on') } }, open)
    app.get('/inherit', { websocket: { outbound: Out, message: tryBad('/inherit') } }, open)
  })
  const server2 = await startServer(t, (app) => {
    app.get('/off', { websocket: { outbound: Out, validateOutbound: false, message: tryBad('/off') } }, open)
  }, { plugin: { validateOutbound: true } })
  for (const [srv, path] of [[server, '/on'], [server, '/inherit'], [server2, '/off']] as const) {
    const ws = await connect(srv.url(path))
    ws.send('go')
    const checked = path !== '/off'
    t.same(await messages(ws, checked ? 1 : 2), [...(checked ? [] : ['{"s":"too long"}']), '{"s":"ok"}'], path)
    ws.terminate()
  }
  t.equal(results['/on'], 'FST_WS_INVALID_OUTBOUND')
  t.equal(results['/inherit'], 'FST_WS_INVALID_OUTBOUND', 'plugin default (true): checked')
  t.equal(results['/off'], 'sent', 'route false beats plugin true')
})
