// @fastify/rate-limit on a websocket route: the upgrade is counted like any request and
// answered with 429 before any 101.
import t from 'tap'
import rateLimit from '@fastify/rate-limit'
import { startServer, connect, closed, type Refused } from './helpers/server'

t.test('per address: the upgrade past the limit gets 429 before the 101', async (t) => {
  let opened = 0
  const server = await startServer(t, async (app) => {
    await app.register(rateLimit, { max: 2, timeWindow: 60_000 })
    app.get('/ws', { websocket: true }, function open () { opened++ })
  })
  const clients = [await connect(server.url('/ws')), await connect(server.url('/ws'))]
  const err = await connect(server.url('/ws')).then((ws) => { ws.terminate(); throw new Error('accepted') }, (e: Refused) => e)
  t.equal(err.statusCode, 429)
  t.equal(err.headers['retry-after'], '60')
  t.equal(err.headers['x-ratelimit-limit'], '2')
  t.match(JSON.parse(err.body), { statusCode: 429, error: 'Too Many Requests' })
  t.equal(opened, 2, 'the refused upgrade never opened')
  for (const ws of clients) {
    const gone = closed(ws)
    ws.close()
    await gone
  }
})

t.test('per user: a key from the authenticated request', async (t) => {
  const server = await startServer(t, async (app) => {
    await app.register(rateLimit, { global: false })
    app.decorateRequest('user', '')
    app.get('/ws', {
      preHandler: [
        async (request, reply) => {
          const user = (request.query as Record<string, string | undefined>).user
          if (user === undefined) return reply.code(401).send('who are you?')
          ;(request as typeof request & { user: string }).user = user
        },
        app.rateLimit({ max: 1, timeWindow: 60_000, keyGenerator: (request) => (request as typeof request & { user: string }).user })
      ],
      websocket: true
    }, function open () {})
  })
  const ann = await connect(server.url('/ws?user=ann'))
  const bob = await connect(server.url('/ws?user=bob'))
  const again = await connect(server.url('/ws?user=ann')).then((ws) => { ws.terminate(); throw new Error('accepted') }, (e: Refused) => e)
  t.equal(again.statusCode, 429, 'ann is over her limit')
  const anonymous = await connect(server.url('/ws')).then((ws) => { ws.terminate(); throw new Error('accepted') }, (e: Refused) => e)
  t.equal(anonymous.statusCode, 401, 'the auth hook answers first')
  for (const ws of [ann, bob]) {
    const gone = closed(ws)
    ws.close()
    await gone
  }
})
