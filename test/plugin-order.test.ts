// A websocket route the plugin never saw (registered after the route, or without
// await, or not at all) fails app.ready() instead of answering as plain HTTP.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { connect, messages, startServer } from './helpers/server'
import typedWebsocket from './helpers/plugin'

async function readyError (app: FastifyInstance): Promise<Error & { code?: string }> {
  try {
    await app.ready()
  } catch (err) {
    return err as Error & { code?: string }
  } finally {
    await app.close().catch(() => {})
  }
  throw new Error('app.ready() succeeded')
}

function open (): void {}

const fix = /await app\.register\(typedWebsocket\)/

t.test('the plugin registered without await, then the route: app.ready() names the route and the fix', async (t) => {
  const app = Fastify()
  // The mistake under test: the plugin is queued, the route is declared at once.
  app.register(typedWebsocket)
  app.get('/chat/:room', { websocket: true }, open)
  const err = await readyError(app)
  t.equal(err.code, 'FST_WS_PLUGIN_NOT_REGISTERED')
  t.match(err.message, 'Route "GET /chat/:room" has a websocket option')
  t.match(err.message, fix)
})

t.test('the plugin registered after the route', async (t) => {
  const app = Fastify()
  app.get('/late', { websocket: { message () {} } }, open)
  await app.register(typedWebsocket)
  const err = await readyError(app)
  t.equal(err.code, 'FST_WS_PLUGIN_NOT_REGISTERED')
  t.match(err.message, 'Route "GET /late"')
})

t.test('the plugin never registered', async (t) => {
  const app = Fastify()
  app.route({ method: 'GET', url: '/never', websocket: true, handler: open } as never)
  const err = await readyError(app)
  t.equal(err.code, 'FST_WS_PLUGIN_NOT_REGISTERED')
  t.match(err.message, 'Route "GET /never"')
})

t.test('a route in a plugin loaded before fastify-typed-websocket', async (t) => {
  const app = Fastify()
  await app.register(async (child) => {
    child.get('/early', { websocket: true }, open)
  }, { prefix: '/v1' })
  await app.register(typedWebsocket)
  const err = await readyError(app)
  t.match(err.message, 'Route "GET /v1/early"')
})

t.test('a route in a sibling scope of an encapsulated registration', async (t) => {
  const app = Fastify()
  await app.register(async (scope) => { await scope.register(typedWebsocket) })
  app.get('/outside', { websocket: true }, open)
  const err = await readyError(app)
  t.match(err.message, 'Route "GET /outside"')
})

t.test('routes of @fastify/websocket, which reads the same option, are left to it', async (t) => {
  const app = Fastify()
  await app.register(require('@fastify/websocket'))
  app.get('/theirs', { websocket: true }, () => {})
  await app.ready()
  t.pass('app.ready() resolved')
  await app.close()
})

t.test('the right order, and routes with websocket: false, start and serve', async (t) => {
  const server = await startServer(t, async (app) => {
    app.get('/plain', { websocket: false } as never, async () => 'plain')
    await app.register(async (child) => {
      child.get('/echo', { websocket: { message: (socket, msg) => socket.send(msg) } }, open)
    })
  })
  const res = await fetch(`http://127.0.0.1:${server.port}/plain`)
  t.equal(await res.text(), 'plain')
  const ws = await connect(server.url('/echo'))
  const echoed = messages(ws, 1)
  ws.send('hello')
  t.same((await echoed).map(String), ['hello'])
  ws.close()
})
