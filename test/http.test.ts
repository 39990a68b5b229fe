// The `http` route option: a plain GET or HEAD on a websocket URL, answered by the route
// after the same hooks, while upgrades on the same URL still open a WebSocket.
import t from 'tap'
import { request } from 'undici'
import { Type } from '@sinclair/typebox'
import { startServer, connect, nextJson } from './helpers/server'
import { rawHttp } from './helpers/raw'

const base = (port: number): string => `http://127.0.0.1:${port}`

t.test('a plain GET runs the hooks, then http; an upgrade on the same URL still opens', async (t) => {
  const seen: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/rooms/:room', {
      schema: { params: Type.Object({ room: Type.String({ maxLength: 8 }) }) },
      onRequest: async (request) => { seen.push(`onRequest ${request.method}`) },
      preHandler: async (request, reply) => {
        if (request.headers.authorization !== 'Bearer ok') return reply.code(401).send({ error: 'who are you?' })
      },
      websocket: {
        outbound: Type.Object({ room: Type.String() }),
        async message (socket) { await socket.send({ room: (socket.request.params as { room: string }).room }) },
        http (request, reply) {
          const params = request.params as { room: string }
          seen.push(`http ${request.method} ${params.room}`)
          reply.header('x-room', params.room).type('text/html; charset=utf-8').send(`<h1>${params.room}</h1>`)
        }
      }
    }, () => {})
  })
  const auth = { authorization: 'Bearer ok' }

  const get = await request(`${base(server.port)}/rooms/lobby`, { headers: auth })
  t.equal(get.statusCode, 200)
  t.equal(get.headers['x-room'], 'lobby')
  t.match(get.headers['content-type'], /^text\/html/)
  t.equal(await get.body.text(), '<h1>lobby</h1>')

  const head = await request(`${base(server.port)}/rooms/lobby`, { method: 'HEAD', headers: auth })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['x-room'], 'lobby')
  t.equal(await head.body.text(), '')

  const refused = await request(`${base(server.port)}/rooms/lobby`)
  t.equal(refused.statusCode, 401, 'a hook that replies answers a plain GET too')
  t.same(await refused.body.json(), { error: 'who are you?' })

  const invalid = await request(`${base(server.port)}/rooms/much-too-long`, { headers: auth })
  t.equal(invalid.statusCode, 400, 'the params schema is checked before http')
  await invalid.body.dump()

  const ws = await connect(server.url('/rooms/lobby'), { headers: auth })
  ws.send('hello')
  t.same(await nextJson(ws), { room: 'lobby' }, 'an upgrade on the same URL opens the WebSocket')
  ws.close()

  t.same(seen, ['onRequest GET', 'http GET lobby', 'onRequest HEAD', 'http HEAD lobby', 'onRequest GET', 'onRequest GET', 'onRequest GET'])
})

t.test('an async http handler\'s return value is the body; a throw gets the error handler', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/status', { websocket: { http: async () => ({ clients: app.websocketClients.size }) } }, () => {})
    app.get('/broken', { websocket: { http: async () => { throw new Error('no page today') } } }, () => {})
  })
  const status = await request(`${base(server.port)}/status`)
  t.equal(status.statusCode, 200)
  t.same(await status.body.json(), { clients: 0 })
  const broken = await request(`${base(server.port)}/broken`)
  t.equal(broken.statusCode, 500)
  t.match(await broken.body.json(), { message: 'no page today' })
})

t.test('without http a plain GET or HEAD still gets the 400; an Upgrade other than websocket too', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/plain', { websocket: true }, () => {})
    app.get('/page', { websocket: { http: (_request, reply) => { reply.send('page') } } }, () => {})
  })
  for (const method of ['GET', 'HEAD'] as const) {
    const answer = await request(`${base(server.port)}/plain`, { method })
    t.equal(answer.statusCode, 400, method)
    const body = await answer.body.text()
    t.equal(body, method === 'GET' ? 'Can "Upgrade" only to "WebSocket".' : '', method)
  }
  for (const method of ['GET', 'HEAD'] as const) {
    const h2c = await rawHttp(server.port, `${method} /page HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c\r\nConnection: upgrade, close\r\n\r\n`)
    t.equal(h2c.status, 400, `${method} with Upgrade: h2c is not a plain request`)
  }
})

t.test('http must be a function', async (t) => {
  await t.rejects(startServer(t, (app) => {
    app.route({ method: 'GET', url: '/bad', websocket: { http: '<h1>hi</h1>' }, handler: () => {} } as never)
  }, { listen: false }), { code: 'FST_WS_INVALID_OPTION', message: 'Route "/bad": http must be a function' })
})
