// Real-browser tests of the chat example (examples/chat): Debian's Chromium driven by
// playwright-core. Each test saves a screenshot under .tap/screenshots/.
import t from 'tap'
import { existsSync, mkdirSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { WebSocket as WsClient, WebSocketServer } from 'ws'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import type { FastifyInstance } from 'fastify'
import { buildChatServer, type ChatServerOptions } from '../examples/chat/server.js'

const CHROMIUM = '/usr/bin/chromium'
const HOST = '127.0.0.1'
const WAIT = 10_000 // upper bound for any single wait in the browser
const SCREENSHOTS = join(__dirname, '..', '.tap', 'screenshots')

/** What the page's WebSockets did, recorded by an init script that wraps `WebSocket`. */
interface SocketEvent { type: 'open' | 'message' | 'error' | 'close', code?: number, reason?: string, wasClean?: boolean, data?: string }
interface SocketRecord { url: string, events: SocketEvent[] }

const RECORDER = `(() => {
  const Native = window.WebSocket
  const records = window.__sockets = []
  window.WebSocket = class extends Native {
    constructor (...args) {
      super(...args)
      const record = { url: this.url, events: [] }
      records.push(record)
      this.addEventListener('open', () => record.events.push({ type: 'open' }))
      this.addEventListener('message', (e) => record.events.push({ type: 'message', data: String(e.data) }))
      this.addEventListener('error', () => record.events.push({ type: 'error' }))
      this.addEventListener('close', (e) => record.events.push({ type: 'close', code: e.code, reason: e.reason, wasClean: e.wasClean }))
    }
  }
})()`

let browser: Browser | undefined

if (!existsSync(CHROMIUM)) {
  // never skip: a missing browser means these tests did not run
  t.fail(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium)`)
} else {
  t.before(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true })
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      timeout: 30_000,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
        '--no-first-run', '--disable-component-update', '--disable-sync']
    })
  })
  t.teardown(async () => { await browser?.close() })
  defineTests()
}

// --- helpers --------------------------------------------------------------------------------

async function startChat (t: tap.Test, options: ChatServerOptions = {}, port = 0) {
  const app = await buildChatServer(options)
  await app.listen({ host: HOST, port })
  t.teardown(() => app.close())
  const address = app.server.address() as AddressInfo
  return { app, port: address.port, url: `http://${HOST}:${address.port}/` }
}

function openSockets (app: FastifyInstance): number {
  return (app as unknown as { websocketClients: ReadonlySet<unknown> }).websocketClients.size
}

async function newPage (t: tap.Test): Promise<{ context: BrowserContext, page: Page }> {
  if (browser === undefined) throw new Error('browser did not start')
  const context = await browser.newContext({ viewport: { width: 1000, height: 640 } })
  t.teardown(() => context.close())
  context.setDefaultTimeout(WAIT)
  await context.addInitScript({ content: RECORDER })
  return { context, page: await context.newPage() }
}

/** Opens the chat page, logs in and waits until the user is in the room. */
async function joinRoom (page: Page, url: string, name: string, room: string) {
  await page.goto(url)
  await page.fill('#name', name)
  await page.fill('#room', room)
  await page.click('#login-form button[type=submit]')
  await page.locator('#status[data-state="open"]').waitFor()
  await page.locator(`#presence li[data-name="${name}"]`).waitFor()
}

const sockets = (page: Page) => page.evaluate('window.__sockets') as Promise<SocketRecord[]>
const closes = async (page: Page) =>
  (await sockets(page)).flatMap((s) => s.events.filter((e) => e.type === 'close'))

const presence = (page: Page) => page.locator('#presence li').evaluateAll(
  (items) => items.map((li) => (li as unknown as { dataset: { name: string } }).dataset.name))
const saidLines = (page: Page) => page.locator('#messages li.said').allTextContents()

/** Polls `read` until `ok` holds; fails with the last value after `timeout` ms. */
async function until<T> (read: () => Promise<T>, ok: (value: T) => boolean, timeout = WAIT): Promise<T> {
  const deadline = Date.now() + timeout
  let value = await read()
  while (!ok(value)) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeout} ms; last value: ${JSON.stringify(value)}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
    value = await read()
  }
  return value
}

async function screenshot (page: Page, name: string) {
  await page.screenshot({ path: join(SCREENSHOTS, `chat-${name}.png`), fullPage: true })
}

async function login (url: string, name: string): Promise<string> {
  const res = await fetch(new URL('/login', url), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
    signal: AbortSignal.timeout(WAIT)
  })
  const body = await res.json() as { token: string }
  return body.token
}

/** Status of a Node (non-browser) handshake: 101 when accepted, else the HTTP status. */
function handshakeStatus (url: string, origin?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WsClient(url, { origin, handshakeTimeout: WAIT })
    ws.on('open', () => { ws.close(); resolve(101) })
    ws.on('unexpected-response', (_req, res) => { res.resume(); ws.terminate(); resolve(res.statusCode ?? 0) })
    ws.on('error', reject)
  })
}

async function listen (t: tap.Test, server: Server, port = 0): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, HOST, () => resolve())
  })
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return (server.address() as AddressInfo).port
}

// --- tests ----------------------------------------------------------------------------------

function defineTests () {
  t.test('two pages chat in one room and see each other', async (t) => {
    const { app, url } = await startChat(t)
    const { page: alice } = await newPage(t)
    const { page: bob } = await newPage(t)

    await joinRoom(alice, url, 'alice', 'lobby')
    await joinRoom(bob, url, 'bob', 'lobby')
    t.same(await until(() => presence(alice), (p) => p.length === 2), ['alice', 'bob'], 'alice sees both in the room')
    t.same(await presence(bob), ['alice', 'bob'], 'bob sees both in the room')
    t.equal(openSockets(app), 2, 'the server holds two open sockets')

    // typing shows up in the other page's presence list
    await alice.fill('#text', 'hello')
    await bob.locator('#presence li[data-name="alice"] .typing').waitFor()
    t.pass('bob sees "alice typing…"')

    await alice.click('#say-form button[type=submit]')
    await bob.locator('#messages li.said', { hasText: 'hello' }).waitFor()
    t.equal(await alice.inputValue('#text'), '', 'the input is cleared after sending')
    await bob.locator('#presence li[data-name="alice"] .typing').waitFor({ state: 'detached' })
    t.pass('the typing indicator goes away once alice has spoken')

    await bob.fill('#text', 'hi alice')
    await bob.press('#text', 'Enter')
    await alice.locator('#messages li.said', { hasText: 'hi alice' }).waitFor()
    const expected = ['alicehello', 'bobhi alice']
    t.same(await until(() => saidLines(alice), (l) => l.length === 2), expected, 'alice sees both messages in order')
    t.same(await until(() => saidLines(bob), (l) => l.length === 2), expected, 'bob sees both messages in order')

    // a message the schema refuses (text longer than 500) is answered with `error`, not a close
    await alice.evaluate('document.getElementById("text").removeAttribute("maxlength")')
    await alice.fill('#text', 'x'.repeat(501))
    await alice.click('#say-form button[type=submit]')
    const error = await alice.locator('#messages li.error').first().textContent()
    t.match(error, /^invalid message: /, 'alice is shown an error message from the server')
    t.equal(await alice.getAttribute('#status', 'data-state'), 'open', 'alice is still connected')
    await alice.fill('#text', 'still here')
    await alice.press('#text', 'Enter')
    await bob.locator('#messages li.said', { hasText: 'still here' }).waitFor()
    t.same(await saidLines(bob), [...expected, 'alicestill here'], 'bob never saw the refused message')
    t.equal(await bob.locator('#messages li.error').count(), 0, 'bob saw no error')
    t.same(await closes(alice), [], 'alice\'s socket was never closed')

    await screenshot(alice, 'two-pages-alice')
    await screenshot(bob, 'two-pages-bob')

    // bob leaves: alice's presence list follows
    await bob.close()
    t.same(await until(() => presence(alice), (p) => p.length === 1), ['alice'], 'bob left the room')
    t.equal(await until(async () => openSockets(app), (n) => n === 1), 1, 'the server holds one open socket')
  })

  t.test('a page from another origin is refused by the origin check', async (t) => {
    const { app, port, url } = await startChat(t)
    const { page: alice } = await newPage(t)
    await joinRoom(alice, url, 'alice', 'lobby')

    // a valid token, so that only the origin is wrong
    const token = await login(url, 'mallory')
    const target = `ws://${HOST}:${port}/chat/lobby?token=${token}`
    const other = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html; charset=utf-8')
      res.end(`<!doctype html><title>elsewhere</title><h1>Another origin</h1><pre id="log"></pre>
<script>
  const log = (line) => { document.getElementById('log').textContent += line + '\\n' }
  log('connecting to ${target.replace(/token=.*/, 'token=…')}')
  const ws = new WebSocket(${JSON.stringify(target)})
  ws.onopen = () => { log('open'); ws.send(JSON.stringify({ type: 'join' })); ws.send(JSON.stringify({ type: 'say', text: 'hi from elsewhere' })) }
  ws.onmessage = (e) => log('message ' + e.data)
  ws.onerror = () => log('error')
  ws.onclose = (e) => log('close ' + e.code)
</script>`)
    })
    const otherPort = await listen(t, other)
    t.not(otherPort, port, 'the page is served from another port, hence another origin')

    const { page: intruder } = await newPage(t)
    const socketErrors: string[] = []
    intruder.on('websocket', (ws) => ws.on('socketerror', (message) => socketErrors.push(message)))
    await intruder.goto(`http://${HOST}:${otherPort}/`)

    const [record] = await until(() => sockets(intruder), (s) => s[0]?.events.some((e) => e.type === 'close'))
    t.equal(record.url, target, 'the page tried the chat server')
    t.same(record.events.map((e) => e.type), ['error', 'close'], 'the socket saw error then close, never open or message')
    t.match(record.events[1], { code: 1006, wasClean: false }, 'close code 1006 (no close frame)')
    await until(async () => socketErrors.length, (n) => n > 0)
    t.match(socketErrors[0], /Unexpected response code: 403/, 'the browser got 403 for the handshake')
    t.match(await intruder.textContent('#log'), /error\nclose 1006\n$/, 'the page shows error and close 1006')

    // the refusal is the origin check: the same token is fine from the chat's own origin
    t.equal(await handshakeStatus(target, `http://${HOST}:${otherPort}`), 403, 'a handshake with that Origin gets 403')
    t.equal(await handshakeStatus(target, `http://${HOST}:${port}`), 101, 'the same token from the chat origin is accepted')

    t.same(await presence(alice), ['alice'], 'nobody joined alice')
    t.same(await saidLines(alice), [], 'alice received no message')
    t.equal(await until(async () => openSockets(app), (n) => n === 1), 1, 'only alice\'s socket is open')
    await screenshot(intruder, 'other-origin')
  })

  t.test('an expired token closes the socket with 4001, shown to the user', async (t) => {
    const tokenTtlMs = 2500
    const { app, url } = await startChat(t, { tokenTtlMs })
    const { page } = await newPage(t)
    const loggedInAt = Date.now()
    await joinRoom(page, url, 'alice', 'lobby')

    await page.locator('#status[data-state="expired"]').waitFor({ timeout: tokenTtlMs + WAIT })
    const elapsed = Date.now() - loggedInAt
    t.ok(elapsed >= tokenTtlMs - 200, `closed when the token expired (after ${elapsed} ms)`)

    const records = await sockets(page)
    t.equal(records.length, 1, 'one socket was opened')
    const close = records[0].events.at(-1)
    t.same(close, { type: 'close', code: 4001, reason: 'token expired', wasClean: true },
      'the CloseEvent has code 4001 and reason "token expired"')
    t.equal(await page.textContent('#close-info'), 'closed: 4001 token expired', 'the close code and reason are shown')
    t.equal(await page.getAttribute('#close-info', 'data-code'), '4001')
    t.ok(await page.isVisible('#login-form'), 'the login form is shown again')
    t.match(await page.textContent('#login-error'), /token expired.*Log in again/, 'the user is told to log in again')
    t.same(await presence(page), [], 'the presence list is emptied while disconnected')
    t.equal(await until(async () => openSockets(app), (n) => n === 0), 0, 'the server closed the socket')
    await screenshot(page, 'token-expired')

    // no reconnect with a dead token
    await page.waitForTimeout(1500)
    t.equal((await sockets(page)).length, 1, 'the page does not reconnect on its own')
    t.equal(await handshakeStatus(records[0].url), 401,
      'the expired token is refused before the upgrade (401)')

    // logging in again gives a fresh token and a working connection
    await page.click('#login-form button[type=submit]')
    await page.locator('#status[data-state="open"]').waitFor()
    t.equal((await sockets(page)).length, 2, 'a new socket after logging in again')
    t.equal(await page.textContent('#close-info'), '', 'the close notice is cleared once connected')
  })

  t.test('the page reconnects when the server comes back on the same port', async (t) => {
    const options = { secret: 'shared across restarts' }
    const first = await startChat(t, options)
    const { page } = await newPage(t)
    await joinRoom(page, first.url, 'alice', 'lobby')
    await page.fill('#text', 'before the restart')
    await page.press('#text', 'Enter')
    await page.locator('#messages li.said', { hasText: 'before the restart' }).waitFor()

    await first.app.close()
    t.pass('server closed')
    const [shutdown] = await until(() => closes(page), (c) => c.length >= 1)
    t.same(shutdown, { type: 'close', code: 1001, reason: 'server shutting down', wasClean: true },
      'the page saw close 1001 "server shutting down"')
    t.match(await page.textContent('#messages'), /closed: 1001 server shutting down/, 'the close is shown')
    t.equal(await page.getAttribute('#status', 'data-state'), 'reconnecting', 'the page is reconnecting')

    // while nothing listens, attempts fail with 1006 and the page keeps trying
    const down = await until(() => closes(page), (c) => c.length >= 3, 3 * WAIT)
    t.same(down.slice(1, 3).map((c) => c.code), [1006, 1006], 'failed attempts close with 1006')
    t.equal(await page.getAttribute('#status', 'data-state'), 'reconnecting', 'still reconnecting')
    t.equal(await page.textContent('#close-info'), 'closed: 1006 connection failed or lost', 'the failure is shown')
    t.same(await presence(page), [], 'the presence list is emptied while disconnected')
    await screenshot(page, 'reconnecting')

    const second = await startChat(t, options, first.port)
    t.equal(second.port, first.port, 'a new server on the same port')
    await page.locator('#status[data-state="open"]').waitFor({ timeout: 3 * WAIT })
    t.same(await until(() => presence(page), (p) => p.length === 1), ['alice'], 'alice is back in the room')
    t.equal(openSockets(second.app), 1, 'the new server holds the page\'s socket')
    t.equal(await page.textContent('#close-info'), '', 'the close notice is cleared')

    await page.fill('#text', 'after the restart')
    await page.press('#text', 'Enter')
    await page.locator('#messages li.said', { hasText: 'after the restart' }).waitFor()
    t.same(await saidLines(page), ['alicebefore the restart', 'aliceafter the restart'], 'chatting works again')
    await screenshot(page, 'reconnected')
  })

  t.test('no pong in time: the page drops the socket and reconnects', async (t) => {
    const options = { secret: 's', heartbeatIntervalMs: 300, heartbeatTimeoutMs: 400 }
    const first = await startChat(t, options)
    const { page } = await newPage(t)
    await joinRoom(page, first.url, 'alice', 'lobby')
    await page.locator('#latency', { hasText: 'ms' }).waitFor()
    t.pass('pings are answered with pong (latency shown)')
    await first.app.close()

    // a server on the same port that accepts the WebSocket but never answers
    const received: string[] = []
    let connections = 0
    const silent = createServer()
    const wss = new WebSocketServer({ server: silent })
    wss.on('connection', (ws) => {
      connections++
      ws.on('message', (data) => received.push(String(data)))
    })
    t.teardown(() => { for (const ws of wss.clients) ws.terminate() })
    await listen(t, silent, first.port)

    await until(async () => connections, (n) => n >= 2, 3 * WAIT)
    t.ok(received.some((m) => JSON.parse(m).type === 'join'), 'the page joined the silent server')
    t.ok(received.some((m) => JSON.parse(m).type === 'ping'), 'the page sent ping')
    t.ok(await page.locator('#messages li.system', { hasText: 'connection lost: no pong' }).count() >= 1,
      'the page says the connection was lost')
    await screenshot(page, 'no-pong')

    for (const ws of wss.clients) ws.terminate()
    await new Promise<void>((resolve) => { silent.closeAllConnections(); silent.close(() => resolve()) })
    const second = await startChat(t, options, first.port)
    await until(async () => openSockets(second.app), (n) => n === 1, 3 * WAIT)
    await page.locator('#status[data-state="open"]').waitFor()
    await page.locator('#presence li[data-name="alice"]').waitFor()
    t.pass('back on a real chat server')
  })
}
