// maxConnections: a cap per route and in all, answered with 503 and Retry-After after the
// hooks and before any 101; the count stays exact under churn.
import t from 'tap'
import type WebSocket from 'ws'
import { startServer, connect, closed, until, type Refused } from './helpers/server'

// Cycles of the churn test; OPS_CHURN_CYCLES=50000 npx tap -t 300 test/max-connections.test.ts for the full run.
const CHURN_CYCLES = Number(process.env.OPS_CHURN_CYCLES ?? 2000)
const CHURN_PARALLEL = 50

async function refusal (url: string): Promise<Refused> {
  try {
    const ws = await connect(url)
    ws.terminate()
  } catch (err) {
    return err as Refused
  }
  throw new Error('the upgrade was accepted')
}

async function closeAll (clients: WebSocket[]): Promise<void> {
  await Promise.all(clients.map(async (ws) => {
    const done = closed(ws)
    ws.close()
    await done
  }))
}

t.test('a route over its cap answers 503 with Retry-After, after the hooks', async (t) => {
  let hookRuns = 0
  const server = await startServer(t, (app) => {
    app.get('/capped', {
      onRequest: async () => { hookRuns++ },
      websocket: { maxConnections: 3 }
    }, function open () {})
    app.get('/free', { websocket: true }, function open () {})
  })
  const clients = await Promise.all([1, 2, 3].map(() => connect(server.url('/capped'))))
  t.equal(server.app.websocketClients.size, 3)
  const err = await refusal(server.url('/capped'))
  t.equal(err.statusCode, 503)
  t.equal(err.headers['retry-after'], '5')
  t.same(JSON.parse(err.body), { error: 'Service Unavailable', message: 'Too many connections', statusCode: 503 })
  t.equal(hookRuns, 4, 'the hooks ran for the refused upgrade too')
  const other = await connect(server.url('/free'))
  t.pass('another route without a cap still accepts')

  const first = clients.shift() as WebSocket
  const gone = closed(first)
  first.close()
  await gone
  await until(() => server.app.websocketClients.size === 3, 5000, 'the server to see the close')
  clients.push(await connect(server.url('/capped')))
  t.pass('a freed slot is taken again')
  await closeAll([...clients, other])
})

t.test('a hook that refuses still answers first', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      preValidation: async (request, reply) => { if (request.query !== null && (request.query as Record<string, string>).token !== 'ok') return reply.code(401).send('no token') },
      websocket: { maxConnections: 1 }
    }, function open () {})
  })
  const ws = await connect(server.url('/ws?token=ok'))
  const err = await refusal(server.url('/ws'))
  t.equal(err.statusCode, 401, 'the hook answers before the cap is looked at')
  t.equal(err.body, 'no token')
  t.equal((await refusal(server.url('/ws?token=ok'))).statusCode, 503)
  await closeAll([ws])
})

t.test('the plugin cap counts every route', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/a', { websocket: true }, function open () {})
    app.get('/b', { websocket: { maxConnections: 10 } }, function open () {})
  }, { plugin: { maxConnections: 2 } })
  const a = await connect(server.url('/a'))
  const b = await connect(server.url('/b'))
  const err = await refusal(server.url('/b'))
  t.equal(err.statusCode, 503, 'a route with a higher cap of its own is still capped in all')
  t.equal(err.headers['retry-after'], '5')
  t.equal((await refusal(server.url('/a'))).statusCode, 503)
  await closeAll([a, b])
  await until(() => server.app.websocketClients.size === 0, 5000, 'all closed')
  await closeAll([await connect(server.url('/a')), await connect(server.url('/a'))])
})

t.test('many upgrades from one address against a cap: exactly the cap is accepted', async (t) => {
  const CAP = 100
  const ATTEMPTS = 600
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { maxConnections: CAP } }, function open () {})
  }, { fastify: { logger: false } })
  const open: WebSocket[] = []
  const statuses = new Map<number, number>()
  for (let i = 0; i < ATTEMPTS; i += 100) {
    await Promise.all(Array.from({ length: 100 }, async () => {
      try {
        open.push(await connect(server.url('/ws')))
      } catch (err) {
        const status = (err as Refused).statusCode
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
      }
    }))
  }
  t.equal(open.length, CAP)
  t.same([...statuses], [[503, ATTEMPTS - CAP]])
  t.equal(server.app.websocketClients.size, CAP)
  await closeAll(open)
})

t.test(`the count is exact after ${CHURN_CYCLES} connect/close cycles, ${CHURN_PARALLEL} in parallel`, async (t) => {
  const CAP = CHURN_PARALLEL + 10
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { maxConnections: CAP, pingInterval: 0 } }, function open () {})
  }, { fastify: { logger: false } })
  let started = 0
  let refused = 0
  const deadline = Date.now() + 90_000
  async function worker (): Promise<void> {
    while (started < CHURN_CYCLES && Date.now() < deadline) {
      const n = started++
      let ws: WebSocket
      try {
        ws = await connect(server.url('/ws'))
      } catch (err) {
        if ((err as Refused).statusCode !== 503) throw err
        refused++
        continue
      }
      const gone = closed(ws)
      // Every third client drops the link instead of closing cleanly.
      if (n % 3 === 0) ws.terminate()
      else ws.close()
      await gone
    }
  }
  await Promise.all(Array.from({ length: CHURN_PARALLEL }, worker))
  t.equal(started, CHURN_CYCLES, 'every cycle ran within the time bound')
  t.ok(refused < CHURN_CYCLES / 100, `few cycles found the cap full (${refused})`)
  await until(() => server.app.websocketClients.size === 0, 10_000, 'every connection to be gone')
  const clients = await Promise.all(Array.from({ length: CAP }, () => connect(server.url('/ws'))))
  t.equal(clients.length, CAP, 'the whole cap is free again')
  t.equal((await refusal(server.url('/ws'))).statusCode, 503, 'and not one more')
  await closeAll(clients)
})
