// Real-browser tests of the chat example (examples/chat): Debian's Chromium driven by
// playwright-core. Each test saves a screenshot under .tap/screenshots/.
import t from 'tap'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { spawn } from 'node:child_process'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { WebSocket as WsClient } from 'ws'
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
const presence = (page: Page) => page.locator('#presence li').evaluateAll(
  (items) => items.map((li) => (li as unknown as { dataset: { name: string } }).dataset.name))
const saidLines = (page: Page) => page.locator('#messages li.said').evaluateAll(
  (items) => items.map((li) => `${(li as unknown as { querySelector (s: string): { textContent: string } }).querySelector('.from').textContent}: ${(li as unknown as { querySelector (s: string): { textContent: string } }).querySelector('.text').textContent}`))

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

/** Status of a Node (non-browser) handshake: 101 when accepted, else the HTTP status. */
function handshakeStatus (url: string, origin?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WsClient(url, { origin, handshakeTimeout: WAIT })
    ws.on('open', () => { ws.close(); resolve(101) })
    ws.on('unexpected-response', (_req, res) => { res.resume(); ws.terminate(); resolve(res.statusCode ?? 0) })
    ws.on('error', reject)
  })
}

/** Says `texts` in `room` as `name` from a Node client, and waits until the room has them all. */
async function sayFromNode (url: string, name: string, room: string, texts: string[]) {
  const login = await fetch(new URL('/login', url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) })
  const { token } = await login.json() as { token: string }
  const ws = new WsClient(`${url.replace('http', 'ws')}chat/${room}?token=${encodeURIComponent(token)}`)
  await new Promise<void>((resolve, reject) => {
    let said = 0
    const timer = setTimeout(() => reject(new Error(`only ${said} of ${texts.length} messages came back`)), WAIT)
    ws.on('message', (data) => {
      if ((JSON.parse(String(data)) as { type: string }).type === 'said' && ++said === texts.length) {
        clearTimeout(timer)
        resolve()
      }
    })
    ws.on('error', reject)
    ws.on('open', () => { for (const text of texts) ws.send(JSON.stringify({ type: 'say', text })) })
  })
  ws.close()
}

// --- tests ----------------------------------------------------------------------------------

function defineTests () {
  t.test('two pages chat in one room: own messages, times, join and leave lines, long words', async (t) => {
    const { app, url } = await startChat(t)
    const { page: alice } = await newPage(t)
    const { page: bob } = await newPage(t)

    await joinRoom(alice, url, 'alice', 'lobby')
    await joinRoom(bob, url, 'bob', 'lobby')
    t.same(await until(() => presence(alice), (p) => p.length === 2), ['alice', 'bob'], 'alice sees both in the room')
    await alice.locator('#messages li.system', { hasText: 'bob joined' }).waitFor()
    t.pass('alice is told that bob joined')
    t.equal(openSockets(app), 2, 'the server holds two open sockets')

    await alice.fill('#text', 'hello')
    await bob.locator('#presence li[data-name="alice"] .typing').waitFor()
    t.pass('bob sees "alice typing…"')
    await alice.click('#say-form button[type=submit]')
    await bob.locator('#messages li.said', { hasText: 'hello' }).waitFor()
    t.equal(await alice.inputValue('#text'), '', 'the input is cleared after sending')
    const long = 'x'.repeat(400)
    await bob.fill('#text', `hi alice ${long}`)
    await bob.press('#text', 'Enter')
    await alice.locator('#messages li.said', { hasText: 'hi alice' }).waitFor()
    const expected = ['alice: hello', `bob: hi alice ${long}`]
    t.same(await until(() => saidLines(alice), (l) => l.length === 2), expected, 'alice sees both messages in order')
    t.same(await until(() => saidLines(bob), (l) => l.length === 2), expected, 'bob sees both messages in order')
    t.equal(await alice.locator('#messages li.said.mine').count(), 1, 'alice\'s own message is marked as hers')
    t.match(await alice.locator('#messages li.said .time').first().textContent(), /\d{1,2}:\d{2}/, 'messages show their time')
    const overflow = await alice.evaluate('(() => { const m = document.getElementById("messages"); return m.scrollWidth - m.clientWidth })()')
    t.equal(overflow, 0, 'a 400-character word wraps inside the message pane')

    await alice.evaluate('document.getElementById("text").removeAttribute("maxlength")')
    await alice.fill('#text', 'y'.repeat(501))
    await alice.click('#say-form button[type=submit]')
    t.match(await alice.locator('#messages li.error').first().textContent(), /^invalid message: /, 'a refused message is answered with an error')
    t.equal(await alice.getAttribute('#status', 'data-state'), 'open', 'alice is still connected')
    t.notOk(await alice.isVisible('#latency') && (await alice.textContent('#latency')) === 'stale', 'latency is only shown while open')
    await screenshot(alice, 'desktop')

    await bob.close()
    t.same(await until(() => presence(alice), (p) => p.length === 1), ['alice'], 'bob left the room')
    await alice.locator('#messages li.system', { hasText: 'bob left' }).waitFor()
    t.pass('alice is told that bob left')
  })

  t.test('"Load older messages" calls `history`: the older messages appear in order above the others', async (t) => {
    const { url } = await startChat(t)
    const texts = Array.from({ length: 70 }, (_, i) => `message ${i + 1}`)
    await sayFromNode(url, 'bob', 'lobby', texts)
    const { page } = await newPage(t)
    await joinRoom(page, url, 'alice', 'lobby')
    const recent = await until(() => saidLines(page), (l) => l.length === 50)
    t.same(recent, texts.slice(20).map((text) => `bob: ${text}`), 'a page that joins gets the last 50')

    await page.click('#load-older')
    const all = await until(() => saidLines(page), (l) => l.length === 70)
    t.same(all, texts.map((text) => `bob: ${text}`), 'the 20 older ones are above the 50, in order')
    t.equal(await page.locator('#messages li').first().textContent(), 'No older messages.', 'fewer than asked for: the start of the room')
    t.notOk(await page.isVisible('#load-older'), 'the button is gone')
    await page.locator('#messages li.said').first().scrollIntoViewIfNeeded()
    await screenshot(page, 'older-history')

    const records = await sockets(page)
    t.equal(records.length, 1, 'one connection')
    const answers = records[0].events.filter((e) => e.type === 'message' && e.data?.includes('"jsonrpc"'))
      .map((e) => JSON.parse(e.data as string) as { result: Array<{ id: number }> })
    t.equal(answers.length, 1, 'one call answered')
    t.same(answers[0].result.map((m) => m.id), Array.from({ length: 20 }, (_, i) => i + 1), 'the answer holds ids 1 to 20')
    t.notOk(records[0].events.some((e) => e.type === 'close'), 'still open')
  })

  t.test('a full room: `join` answers room_full, the page says so and stays connected; a direct login gets 409', async (t) => {
    const { app, url } = await startChat(t, { roomCapacity: 1 })
    const { page: alice } = await newPage(t)
    const { page: bob } = await newPage(t)
    await joinRoom(alice, url, 'alice', 'lobby')
    await joinRoom(bob, url, 'bob', 'kitchen')

    await bob.fill('#other-room', 'lobby')
    await bob.click('#room-form button[type=submit]')
    await bob.locator('#room-error', { hasText: 'full' }).waitFor()
    t.equal(await bob.textContent('#room-error'), 'lobby is full (1 person). You are still in kitchen.', 'a readable message')
    t.equal(await bob.getAttribute('#status', 'data-state'), 'open', 'bob is still connected')
    t.equal(await bob.textContent('#room-name'), 'kitchen')
    const records = await sockets(bob)
    t.equal(records.length, 1, 'no new connection')
    t.notOk(records[0].events.some((e) => e.type === 'close'), 'the connection was not closed')
    const answer = records[0].events.map((e) => e.data ?? '').find((data) => data.includes('"jsonrpc"'))
    t.match(JSON.parse(answer as string), { jsonrpc: '2.0', error: { code: 1, name: 'room_full', data: { capacity: 1 }, message: 'lobby is full' } })
    await screenshot(bob, 'room-full')
    await bob.fill('#text', 'still here')
    await bob.press('#text', 'Enter')
    await bob.locator('#messages li.said', { hasText: 'still here' }).waitFor()
    t.pass('bob can still talk in kitchen')

    await bob.fill('#other-room', 'hall')
    await bob.click('#room-form button[type=submit]')
    await bob.locator('#room-name', { hasText: 'hall' }).waitFor()
    await bob.locator('#status[data-state="open"]').waitFor()
    t.same(await until(() => presence(bob), (p) => p.length === 1), ['bob'], 'a room with space: bob moved there')
    t.equal(await bob.textContent('#room-error'), '')
    t.equal(await until(async () => openSockets(app), (n) => n === 2), 2, 'the kitchen connection was closed')

    const { page: carol } = await newPage(t)
    await carol.goto(url)
    await carol.fill('#name', 'carol')
    await carol.fill('#room', 'lobby')
    await carol.click('#login-form button[type=submit]')
    await carol.locator('#login-error', { hasText: 'lobby is full' }).waitFor()
    t.ok(await carol.isVisible('#login-form'), 'carol is back at the login form')
  })

  t.test('at 375 px the messages get the width of the phone', async (t) => {
    const { url } = await startChat(t)
    if (browser === undefined) throw new Error('browser did not start')
    const context = await browser.newContext({ viewport: { width: 375, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true })
    t.teardown(() => context.close())
    context.setDefaultTimeout(WAIT)
    const page = await context.newPage()
    await joinRoom(page, url, 'alice', 'lobby')
    await page.fill('#text', 'a message on a phone, with a long link https://example.com/' + 'a'.repeat(120))
    await page.press('#text', 'Enter')
    await page.locator('#messages li.said').waitFor()
    const width = await page.locator('#messages').evaluate((el) => (el as unknown as { clientWidth: number }).clientWidth)
    t.ok(width >= 340, `the message pane is ${width} px wide`)
    const overflow = await page.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth')
    t.equal(overflow, 0, 'nothing scrolls sideways')
    await screenshot(page, 'phone-375')
  })

  t.test('at 375 px the header shows the user\'s whole name', async (t) => {
    const { url } = await startChat(t)
    if (browser === undefined) throw new Error('browser did not start')
    const context = await browser.newContext({ viewport: { width: 375, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true })
    t.teardown(() => context.close())
    context.setDefaultTimeout(WAIT)
    const page = await context.newPage()
    const name = 'Alexandra Montgomery-Smythe'
    await joinRoom(page, url, name, 'a-rather-long-room-name')
    const box = await page.evaluate(`(() => {
      const who = document.getElementById('who'), me = document.getElementById('me')
      const r = me.getBoundingClientRect()
      return { text: me.textContent, clipped: who.scrollWidth > who.clientWidth, right: r.right, width: document.documentElement.clientWidth, visible: r.width > 0 }
    })()`) as { text: string, clipped: boolean, right: number, width: number, visible: boolean }
    t.equal(box.text, name)
    t.notOk(box.clipped, 'the line with the name is not cut')
    t.ok(box.visible && box.right <= box.width, `the name ends inside the screen (${box.right} of ${box.width} px)`)
    const pane = await page.locator('#messages').evaluate((el) => (el as unknown as { clientHeight: number }).clientHeight)
    t.ok(pane >= 300, `the messages keep most of the height (${pane} px)`)
    await screenshot(page, 'phone-375-long-name')
  })

  t.test('npm start\'s key outlives a restart: two pages stay logged in, and what was typed meanwhile arrives', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'chat-secret-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const options = { secretFile: join(dir, '.chat-secret') }
    const first = await startChat(t, options)
    t.match(readFileSync(options.secretFile, 'utf8'), /^[\w-]{43}\n$/, 'a random key was written beside the example')
    const { page: alice } = await newPage(t)
    const { page: bob } = await newPage(t)
    await joinRoom(alice, first.url, 'alice', 'lobby')
    await joinRoom(bob, first.url, 'bob', 'lobby')
    await alice.fill('#text', 'before')
    await alice.press('#text', 'Enter')
    await bob.locator('#messages li.said', { hasText: 'before' }).waitFor()

    await first.app.close()
    await alice.locator('#status[data-state="reconnecting"]').waitFor()
    await bob.locator('#status[data-state="reconnecting"]').waitFor()
    await alice.fill('#text', 'typed during the outage')
    await alice.press('#text', 'Enter')
    const pendingLine = alice.locator('#messages li.pending', { hasText: 'typed during the outage' })
    await pendingLine.waitFor()
    t.match(await pendingLine.textContent(), /sending…/, 'shown as pending while the server is away')
    await screenshot(alice, 'pending')

    await startChat(t, options, first.port)
    await alice.locator('#status[data-state="open"]').waitFor({ timeout: 3 * WAIT })
    await bob.locator('#status[data-state="open"]').waitFor({ timeout: 3 * WAIT })
    await bob.locator('#messages li.said', { hasText: 'typed during the outage' }).waitFor()
    t.pass('bob got what alice typed during the outage')
    await until(() => alice.locator('#messages li.pending').count(), (n) => n === 0)
    t.ok((await saidLines(alice)).includes('alice: typed during the outage'), 'alice\'s line is now a sent message')
    t.ok(await alice.isVisible('#chat') && await bob.isVisible('#chat'), 'nobody was logged out')
    t.equal(await alice.isVisible('#login-form'), false)
  })

  t.test('a message typed before a refusal is kept and sent after logging in again', async (t) => {
    const first = await startChat(t, { secret: 'one' })
    const { page } = await newPage(t)
    await joinRoom(page, first.url, 'alice', 'lobby')
    await first.app.close()
    await page.locator('#status[data-state="reconnecting"]').waitFor()
    await page.fill('#text', 'kept for later')
    await page.press('#text', 'Enter')
    await page.locator('#messages li.pending', { hasText: 'kept for later' }).waitFor()
    await startChat(t, { secret: 'another' }, first.port)
    await page.locator('#login-error', { hasText: 'Your unsent message is sent once you are back in lobby.' }).waitFor({ timeout: 3 * WAIT })
    await page.click('#login-form button[type=submit]')
    await page.locator('#messages li.said', { hasText: 'kept for later' }).waitFor()
    t.equal(await page.locator('#messages li.pending').count(), 0, 'sent and confirmed')
  })

  t.test('login errors are sentences, and /favicon.ico exists', async (t) => {
    const { url } = await startChat(t)
    const { page } = await newPage(t)
    await page.goto(url)
    await page.fill('#name', 'ann!')
    await page.click('#login-form button[type=submit]')
    await page.locator('#login-error', { hasText: 'A name is' }).waitFor()
    t.notMatch(await page.textContent('#login-error'), /must match pattern|body\//, 'no validator jargon')
    t.equal((await fetch(new URL('/favicon.ico', url))).status, 200)
    await screenshot(page, 'login-error')
  })

  t.test('an expired token (4001) sends the user back to the login form, without the old chat', async (t) => {
    const tokenTtlMs = 2500
    const { app, url } = await startChat(t, { tokenTtlMs })
    const { page } = await newPage(t)
    await joinRoom(page, url, 'alice', 'lobby')
    await page.locator('#login-error', { hasText: 'expired' }).waitFor({ timeout: tokenTtlMs + WAIT })
    const records = await sockets(page)
    t.same(records[0].events.at(-1), { type: 'close', code: 4001, reason: 'token expired', wasClean: true })
    t.ok(await page.isVisible('#login-form'), 'the login form is shown')
    t.notOk(await page.isVisible('#chat'), 'the old chat is hidden')
    await page.waitForTimeout(800)
    t.equal((await sockets(page)).length, 1, 'no reconnect with a dead token')
    t.equal(await until(async () => openSockets(app), (n) => n === 0), 0)
    await page.click('#login-form button[type=submit]')
    await page.locator('#status[data-state="open"]').waitFor()
    t.pass('logging in again connects')
  })

  t.test('after a restart: same secret resumes without loss; a new secret means log in again (401)', async (t) => {
    const options = { secret: 'kept across restarts' }
    const first = await startChat(t, options)
    const { page } = await newPage(t)
    await joinRoom(page, first.url, 'alice', 'lobby')
    await page.fill('#text', 'before the restart')
    await page.press('#text', 'Enter')
    await page.locator('#messages li.said', { hasText: 'before the restart' }).waitFor()
    await first.app.close()
    await page.locator('#status[data-state="reconnecting"]').waitFor()
    t.match(await page.textContent('#close-info'), /1001 server shutting down/, 'the close is shown')
    t.equal(await page.textContent('#latency'), '', 'no stale latency while disconnected')
    await screenshot(page, 'reconnecting')

    const second = await startChat(t, options, first.port)
    await page.locator('#status[data-state="open"]').waitFor({ timeout: 3 * WAIT })
    t.same(await until(() => presence(page), (p) => p.length === 1), ['alice'], 'alice is back in the room')
    // the new process has an empty room: it cannot replay after the page's last id, and says so
    await page.locator('#messages li.system', { hasText: 'no longer available' }).waitFor()
    t.pass('the page is told that the messages it missed are gone')
    await page.fill('#text', 'after the restart')
    await page.press('#text', 'Enter')
    await page.locator('#messages li.said', { hasText: 'after the restart' }).waitFor()
    t.same(await saidLines(page), ['alice: before the restart', 'alice: after the restart'], 'nothing lost, nothing twice')
    await second.app.close()

    await startChat(t, { secret: 'a new secret' }, first.port)
    await page.locator('#login-error', { hasText: 'Log in again' }).waitFor({ timeout: 3 * WAIT })
    t.ok(await page.isVisible('#login-form'), 'back to the login form')
    const count = (await sockets(page)).length
    await page.waitForTimeout(1000)
    t.equal((await sockets(page)).length, count, 'no further attempts after the 401')
    t.equal(await handshakeStatus((await sockets(page)).at(-1)?.url ?? ''), 401, 'the old token gets 401')
    await screenshot(page, 'session-ended')
  })

  t.test('Ctrl-C on npm start exits promptly with a tab open', async (t) => {
    const probe = createNetServer()
    await new Promise<void>((resolve) => probe.listen(0, HOST, resolve))
    const port = (probe.address() as AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    const keyDir = mkdtempSync(join(tmpdir(), 'chat-secret-'))
    t.teardown(() => rmSync(keyDir, { recursive: true, force: true }))
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), CHAT_SECRET_FILE: join(keyDir, '.chat-secret') }
    delete env.NODE_V8_COVERAGE
    delete env.NODE_OPTIONS
    const child = spawn(process.execPath, [join(__dirname, '..', 'examples', 'chat', 'server.js')], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => { child.kill('SIGKILL') })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the example did not start')), 20_000)
      child.stdout.once('data', () => { clearTimeout(timer); resolve() })
    })
    const { page } = await newPage(t)
    await joinRoom(page, `http://${HOST}:${port}/`, 'alice', 'lobby')
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    const sentAt = Date.now()
    child.kill('SIGINT')
    const code = await Promise.race([exited, new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000))])
    const ms = Date.now() - sentAt
    t.equal(code, 0, `exited with 0 after ${ms} ms`)
    t.ok(ms < 5000, 'within a few seconds')
  })
}
