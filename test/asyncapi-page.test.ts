// The AsyncAPI page in headless Chromium: it renders every channel address and message name
// from the local bundle, with nothing loaded from another origin and no CSP violation.
// Screenshots are saved under .tap/screenshots/.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import { chromium, type Browser } from 'playwright-core'
import typedWebsocket from './helpers/plugin'
import asyncapi from './helpers/asyncapi'

const SCREENSHOTS = join(__dirname, '..', '.tap', 'screenshots')

let browser: Browser | undefined
t.before(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true })
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    timeout: 30_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']
  })
})
t.teardown(async () => { await browser?.close() })

interface Rendered { text: string, problems: string[] }

/** Opens the page, waits (bounded) until `expected` all show, and saves a screenshot. */
async function render (app: FastifyInstance, path: string, expected: string[], name: string): Promise<Rendered> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  const origin = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const page = await (browser as Browser).newPage({ viewport: { width: 1440, height: 1000 } })
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  // (failed loads are reported by URL below, where the favicon can be told apart)
  page.on('console', (msg) => { if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`console: ${msg.text()}`) })
  page.on('request', (request) => { if (!request.url().startsWith(origin)) problems.push(`request to ${request.url()}`) })
  page.on('response', (response) => {
    if (response.status() >= 400 && !response.url().endsWith('/favicon.ico')) problems.push(`${response.status()} for ${response.url()}`)
  })
  try {
    await page.goto(`${origin}${path}`)
    const deadline = Date.now() + 20_000
    let text = ''
    for (let i = 0; i < 200 && Date.now() < deadline; i++) {
      // an operation's reply messages are collapsed under "Expected Reply Message(s)": open each once
      await page.evaluate(`for (const button of document.querySelectorAll('button:not([data-opened])')) {
        if (button.textContent.trim().startsWith('Expected Reply')) { button.dataset.opened = ''; button.click() }
      }`)
      text = await page.innerText('body')
      if (expected.every((s) => text.includes(s))) break
      await page.waitForTimeout(100)
    }
    await page.screenshot({ path: join(SCREENSHOTS, `asyncapi-${name}.png`), fullPage: true })
    return { text, problems }
  } finally {
    await page.close()
  }
}

function expectedOf (document: Record<string, unknown>): string[] {
  const expected: string[] = []
  for (const channel of Object.values(document.channels as Record<string, { address: string | null, messages: Record<string, { name?: string, $ref?: string }> }>)) {
    if (channel.address !== null) expected.push(channel.address)
    for (const message of Object.values(channel.messages)) {
      const resolved = message.$ref === undefined ? message : (document.components as { messages: Record<string, { name: string }> }).messages[message.$ref.split('/').pop() as string]
      expected.push(resolved.name as string)
    }
  }
  return [...new Set(expected)]
}

t.test('the chat example\'s page shows its channel, every message and the replies of its calls', async (t) => {
  const { buildChatServer } = require('../examples/chat/server.js')
  const app: FastifyInstance = await buildChatServer()
  t.teardown(() => app.close())
  await app.ready()
  const expected = expectedOf(app.asyncapi())
  t.ok(expected.includes('/chat/{room}'))
  t.ok(expected.includes('say'))
  t.ok(expected.includes('history.result') && expected.includes('join.error'), 'the calls\' replies are messages of the channel')
  const { text, problems } = await render(app, '/asyncapi', expected, 'chat')
  t.same(problems, [], 'no error, nothing from another origin')
  for (const item of expected) t.ok(text.includes(item), `shows ${item}`)
  t.match(text, /Chat\s+1\.0\.0/)
})

t.test('several routes, heartbeat, close codes and a topic, under a prefix', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(typedWebsocket)
  let documented: FastifyInstance | undefined
  await app.register(async (docs) => {
    documented = docs
    await docs.register(asyncapi, { info: { title: 'Game server', version: '3.2.0' }, routePrefix: '/docs' })
    docs.websocketTopic('scores', { message: Type.Object({ type: Type.Literal('score'), player: Type.String(), points: Type.Integer() }), history: 10 })
    docs.get('/games/:game', {
      schema: { params: Type.Object({ game: Type.String({ description: 'Game id' }) }), querystring: Type.Object({ token: Type.String() }) },
      websocket: {
        inbound: Type.Union([Type.Object({ type: Type.Literal('move'), x: Type.Integer(), y: Type.Integer() }), Type.Object({ type: Type.Literal('resign') })]),
        outbound: Type.Union([Type.Object({ type: Type.Literal('moved'), x: Type.Integer(), y: Type.Integer() }), Type.Object({ type: Type.Literal('over'), winner: Type.String() })]),
        heartbeat: true,
        message () {}
      }
    }, () => {})
    docs.get('/lobby', { websocket: { outbound: Type.Object({ type: Type.Literal('games'), ids: Type.Array(Type.String()) }) } }, () => {})
  }, { prefix: '/api' })
  await app.ready()
  const expected = expectedOf((documented as FastifyInstance).asyncapi())
  t.same(expected, ['/api/games/{game}', 'move', 'resign', 'moved', 'over', 'heartbeat', 'heartbeatReply', '/api/lobby', 'games', 'score'])
  const { text, problems } = await render(app, '/api/docs', expected, 'game')
  t.same(problems, [])
  for (const item of expected) t.ok(text.includes(item), `shows ${item}`)
})
