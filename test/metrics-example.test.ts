// examples/metrics: the chat example run with the metrics preload, scraped while clients talk.
import t from 'tap'
import { request } from 'undici'
import { createMetrics } from '../examples/metrics/metrics'
import { buildChatServer } from '../examples/chat/server'
import { startServer, connect, closed, addSlowReaderRoute } from './helpers/server'

/** The samples of a Prometheus text exposition, by name and labels. */
function parse (text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const at = line.lastIndexOf(' ')
    samples.set(line.slice(0, at), Number(line.slice(at + 1)))
  }
  return samples
}

async function scrape (url: string): Promise<Map<string, number>> {
  const response = await request(url)
  if (response.statusCode !== 200) throw new Error(`scrape answered ${response.statusCode}`)
  t.match(response.headers['content-type'], /^text\/plain/)
  return parse(await response.body.text())
}

t.test('the chat example with the example metrics, scraped while two clients talk', async (t) => {
  const metrics = createMetrics()
  t.teardown(() => metrics.close())
  const app = await buildChatServer()
  app.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.scrape()))
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  const base = `http://127.0.0.1:${port}`
  const metricsUrl = `${base}/metrics`
  const before = await scrape(metricsUrl)
  t.equal(before.get('websocket_connections'), 0, 'nothing open yet')

  const tokens = await Promise.all(['ann', 'bob'].map(async (name) => {
    const response = await request(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) })
    return ((await response.body.json()) as { token: string }).token
  }))
  const [ann, bob] = await Promise.all(tokens.map(token => connect(`ws://127.0.0.1:${port}/chat/lobby?token=${token}`)))
  bob.send(JSON.stringify({ type: 'typing' }))
  ann.send(JSON.stringify({ type: 'say', text: 'hi bob' }))
  ann.send('not json')
  let during = await scrape(metricsUrl)
  const deadline = Date.now() + 5000
  while ((during.get('websocket_messages_total{direction="in"}') ?? 0) < 3 && Date.now() < deadline) during = await scrape(metricsUrl)
  t.equal(during.get('websocket_connections'), 2, 'two open')
  t.equal(during.get('websocket_connections_opened_total'), 2)
  t.equal(during.get('websocket_messages_total{direction="in"}'), 3)
  t.ok((during.get('websocket_messages_total{direction="out"}') ?? 0) >= 3, 'presence, typing, said and the error went out')
  t.ok((during.get('websocket_message_bytes_total{direction="in"}') ?? 0) > 40)
  t.equal(during.get('websocket_invalid_messages_total'), 1)

  for (const ws of [ann, bob]) {
    const gone = closed(ws)
    ws.close(1000, 'bye')
    await gone
  }
  let after = await scrape(metricsUrl)
  const end = Date.now() + 5000
  while (after.get('websocket_connections') !== 0 && Date.now() < end) after = await scrape(metricsUrl)
  t.equal(after.get('websocket_connections'), 0, 'none open after the clients left')
  t.equal(after.get('websocket_closes_total{code="1000",closed_by="client"}'), 2)
  t.equal(after.get('websocket_connection_duration_seconds_count'), 2)
})

t.test('rate-limit hits and send-buffer drops are counted', async (t) => {
  const metrics = createMetrics()
  t.teardown(() => metrics.close())
  const server = await startServer(t, (app) => {
    app.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.scrape()))
    app.get('/limited', { websocket: { rateLimit: { messages: 1, interval: 60_000, action: 'close' }, message () {} } }, function open () {})
    addSlowReaderRoute(app, '/slow')
  })
  const limited = await connect(server.url('/limited'))
  const gone = closed(limited)
  limited.send('1')
  limited.send('2')
  t.same(await gone, { code: 1008, reason: 'rate limit exceeded' })
  const slow = await connect(server.url('/slow'))
  slow.pause()
  slow.send('go')
  const scrapeUrl = `http://127.0.0.1:${server.port}/metrics`
  let samples = await scrape(scrapeUrl)
  const deadline = Date.now() + 10_000
  while ((samples.get('websocket_send_buffer_drops_total') ?? 0) === 0 && Date.now() < deadline) samples = await scrape(scrapeUrl)
  slow.terminate()
  t.equal(samples.get('websocket_rate_limit_hits_total{action="close"}'), 1)
  t.equal(samples.get('websocket_send_buffer_drops_total'), 1)
  t.equal(samples.get('websocket_closes_total{code="1008",closed_by="server"}'), 1)
})
