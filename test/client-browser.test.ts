// The client's ES module in headless Chromium, imported without a bundler from a test
// server: messages, a refusal, a restart of the server, and a proxy that stops forwarding.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { createServer, Socket } from 'node:net'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { chromium, type Browser, type Page } from 'playwright-core'
import { startServer, until, type TestServer } from './helpers/server'
import { echo } from './helpers/client'

const CHROMIUM = '/usr/bin/chromium'
const MODULE = join(__dirname, '..', 'dist', 'client', 'index.mjs')

let browser: Browser | undefined

interface Counts { upgrades: number, plainGets: number, received: string[] }

function routes (counts: Counts) {
  return (app: FastifyInstance): void => {
    const module = readFileSync(MODULE)
    app.addHook('onRequest', async (request) => {
      if (request.url.startsWith('/echo') || request.url.startsWith('/refused')) {
        if (request.headers.upgrade === undefined) counts.plainGets++
        else counts.upgrades++
      }
    })
    app.get('/client.mjs', (_request, reply) => reply.type('text/javascript').send(module))
    app.get('/', (_request, reply) => reply.type('text/html').send('<!doctype html><title>client</title><p>client test</p>'))
    app.get('/echo', {
      websocket: {
        ...echo,
        heartbeat: true,
        checkOrigin: true, // the page may come through the proxy, on another port
        async message (socket, msg) {
          if (msg.type === 'say') {
            counts.received.push(msg.text)
            await socket.send({ type: 'said', text: msg.text })
          } else if (msg.type === 'ask') {
            await socket.send({ type: 'answer', id: msg.id, delay: msg.delay })
          }
        }
      }
    }, () => {})
    // the default origin check: a page on another origin gets 403, which the browser hides
    app.get('/same-host', { websocket: true }, () => {})
    app.get('/refused', {
      preValidation: async (_request, reply) => reply.code(401).send({ error: 'Unauthorized', message: 'log in first' }),
      websocket: true
    }, () => {})
  }
}

async function start (t: tap.Test, counts: Counts, port = 0): Promise<TestServer> {
  const server = await startServer(t, routes(counts), { listen: false, fastify: { forceCloseConnections: true } })
  await server.app.listen({ host: '127.0.0.1', port })
  server.port = (server.app.server.address() as { port: number }).port
  return server
}

async function openPage (t: tap.Test, url: string): Promise<Page> {
  if (browser === undefined) throw new Error('browser did not start')
  const context = await browser.newContext()
  t.teardown(() => context.close())
  context.setDefaultTimeout(10_000)
  const page = await context.newPage()
  await page.goto(url)
  // the page keeps the client and what it saw in window.__t
  await page.evaluate(`(async () => {
    const { connect } = await import('/client.mjs')
    window.__t = { connect, states: [], said: [] }
  })()`)
  return page
}

const read = <T>(page: Page, expression: string): Promise<T> => page.evaluate(expression) as Promise<T>

async function waitFor (page: Page, expression: string, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await read<boolean>(page, expression))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

function defineTests (): void {
  t.test('typed messages and a request, from a relative URL', async (t) => {
    const counts: Counts = { upgrades: 0, plainGets: 0, received: [] }
    const server = await start(t, counts)
    const page = await openPage(t, `http://127.0.0.1:${server.port}/`)
    await page.evaluate(`(() => {
      const c = window.__t.client = window.__t.connect({}, '/echo')
      c.on('state', (s) => window.__t.states.push(s))
      c.on('said', (m) => window.__t.said.push(m.text))
      c.send({ type: 'say', text: 'queued before open' })
    })()`)
    await waitFor(page, 'window.__t.said.length === 1', 'said')
    const answer = await read<{ type: string, id: string }>(page, 'window.__t.client.request({ type: "ask", delay: 0 })')
    t.equal(answer.type, 'answer')
    t.match(answer.id, /^[0-9a-z]{8}-\d+$/)
    t.strictSame(await read(page, 'window.__t.said'), ['queued before open'])
    await page.evaluate('window.__t.client.close()')
    t.strictSame(await read(page, 'window.__t.states'), ['connecting', 'open', 'closed'])
  })

  t.test('a 401 is reported as refused with status and body, and not retried', async (t) => {
    const counts: Counts = { upgrades: 0, plainGets: 0, received: [] }
    const server = await start(t, counts)
    const page = await openPage(t, `http://127.0.0.1:${server.port}/`)
    await page.evaluate(`(() => {
      const c = window.__t.client = window.__t.connect({}, '/refused', { reconnect: { initialDelay: 10, maxDelay: 20 } })
      c.on('state', (s) => window.__t.states.push(s))
    })()`)
    await waitFor(page, 'window.__t.client.state === "refused"', 'refused')
    const refusal = await read<{ status: number, body: string }>(page, 'window.__t.client.refusal')
    t.equal(refusal.status, 401)
    t.strictSame(JSON.parse(refusal.body), { error: 'Unauthorized', message: 'log in first' })
    await new Promise(resolve => setTimeout(resolve, 300))
    t.strictSame(counts, { upgrades: 1, plainGets: 1, received: [] }, 'one upgrade, one plain GET, nothing after')
    t.strictSame(await read(page, 'window.__t.states'), ['connecting', 'refused'])
  })

  t.test('a page on another origin that the origin check refuses ends in refused, with a reason naming its origin', async (t) => {
    const counts: Counts = { upgrades: 0, plainGets: 0, received: [] }
    const server = await start(t, counts)
    const page = await openPage(t, `http://127.0.0.1:${server.port}/`)
    await page.evaluate(`(() => {
      const c = window.__t.client = window.__t.connect({}, 'ws://localhost:${server.port}/same-host', { reconnect: { initialDelay: 10, maxDelay: 20 } })
      c.on('state', (s) => window.__t.states.push(s))
    })()`)
    await waitFor(page, 'window.__t.client.state === "refused"', 'refused')
    const refusal = await read<{ status: number, body: string, reason: string }>(page, 'window.__t.client.refusal')
    t.equal(refusal.status, 0, 'the browser hid the status')
    t.match(refusal.reason, `this page's origin (http://127.0.0.1:${server.port}) is most likely not allowed by the route's checkOrigin`)
    t.equal(await read(page, 'window.__t.client.closeReason'), refusal.reason)
    t.strictSame(await read(page, 'window.__t.states'), ['connecting', 'reconnecting', 'refused'])
  })

  t.test('the same route from its own origin opens; headers are refused in a browser with a pointer to what works', async (t) => {
    const counts: Counts = { upgrades: 0, plainGets: 0, received: [] }
    const server = await start(t, counts)
    const page = await openPage(t, `http://127.0.0.1:${server.port}/`)
    await page.evaluate('(() => { window.__t.client = window.__t.connect({}, \'/same-host\') })()')
    await waitFor(page, 'window.__t.client.state === "open"', 'open')
    await page.evaluate('window.__t.client.close()')
    const message = await read<string>(page, `(() => {
      try { window.__t.connect({}, '/same-host', { headers: { authorization: 'Bearer t' } }); return 'no error' } catch (err) { return err.message }
    })()`)
    t.equal(message, 'headers: a browser\'s WebSocket cannot send headers; pass the token in query, a cookie, or protocols')
  })

  t.test('reconnects after a server restart, queued sends first and in order', async (t) => {
    const counts: Counts = { upgrades: 0, plainGets: 0, received: [] }
    const first = await start(t, counts)
    const page = await openPage(t, `http://127.0.0.1:${first.port}/`)
    await page.evaluate(`(() => {
      const c = window.__t.client = window.__t.connect({}, '/echo', { reconnect: { initialDelay: 20, maxDelay: 100 } })
      c.on('state', (s) => {
        window.__t.states.push(s)
        if (s === 'open' && window.__t.states.length > 2) c.send({ type: 'say', text: 'after' })
      })
    })()`)
    await waitFor(page, 'window.__t.client.state === "open"', 'open')
    await first.app.close()
    await waitFor(page, 'window.__t.client.state === "reconnecting"', 'reconnecting')
    await page.evaluate('for (const text of ["q1", "q2", "q3"]) window.__t.client.send({ type: "say", text })')
    await start(t, counts, first.port)
    await until(() => counts.received.length === 4, 10_000, 'four messages')
    t.strictSame(counts.received, ['q1', 'q2', 'q3', 'after'])
    t.strictSame(await read(page, 'window.__t.states'), ['connecting', 'open', 'reconnecting', 'open'])
    t.equal(await read(page, 'window.__t.client.closeCode'), 1001)
  })

  t.test('a proxy that stops forwarding is detected by the heartbeat, then the client reconnects', async (t) => {
    const counts: Counts = { upgrades: 0, plainGets: 0, received: [] }
    const server = await start(t, counts)
    // forwards TCP to the server; `stalled` links stay open but forward nothing
    const links: Socket[] = []
    let stall = false
    const proxy = createServer((client) => {
      const upstream = new Socket()
      upstream.connect(server.port, '127.0.0.1')
      links.push(client, upstream)
      const stalled = (): boolean => stall && (client as Socket & { old?: boolean }).old === true
      client.on('data', (d) => { if (!stalled()) upstream.write(d) })
      upstream.on('data', (d) => { if (!stalled()) client.write(d) })
      client.on('error', () => upstream.destroy())
      upstream.on('error', () => client.destroy())
      client.on('close', () => upstream.destroy())
      upstream.on('close', () => client.destroy())
    })
    await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
    t.teardown(() => {
      for (const link of links) link.destroy()
      proxy.close()
    })
    const proxyPort = (proxy.address() as { port: number }).port
    const page = await openPage(t, `http://127.0.0.1:${server.port}/`)
    const interval = 200
    const timeout = 300
    await page.evaluate(`(() => {
      const c = window.__t.client = window.__t.connect({}, 'ws://127.0.0.1:${proxyPort}/echo', {
        heartbeat: { interval: ${interval}, timeout: ${timeout} }, reconnect: { initialDelay: 20, maxDelay: 100 } })
      c.on('state', (s) => window.__t.states.push([s, Date.now()]))
    })()`)
    await waitFor(page, 'window.__t.client.rtt !== undefined', 'a first heartbeat answer')
    for (const link of links) (link as Socket & { old?: boolean }).old = true
    stall = true
    const stalledAt = Date.now()
    await waitFor(page, 'window.__t.states.some(([s]) => s === "reconnecting")', 'reconnecting')
    const [, reconnectingAt] = (await read<Array<[string, number]>>(page, 'window.__t.states')).find(([s]) => s === 'reconnecting') as [string, number]
    const detected = reconnectingAt - stalledAt
    t.ok(detected <= interval + timeout + 1000, `detected after ${detected} ms (interval + timeout = ${interval + timeout} ms)`)
    t.equal(await read(page, 'window.__t.client.closeReason'), 'heartbeat timed out')
    await waitFor(page, 'window.__t.client.state === "open"', 'open again through a new link')
    await page.evaluate('window.__t.client.close()')
  })
}

if (!existsSync(CHROMIUM)) {
  t.fail(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)`)
} else if (!existsSync(MODULE)) {
  t.fail(`${MODULE} is missing: npm run build`)
} else {
  t.before(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 30_000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']
    })
  })
  t.teardown(async () => { await browser?.close() })
  defineTests()
}
