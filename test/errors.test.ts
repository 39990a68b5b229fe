// plugin/errors.ts: the catalogue of errors. Each class is exported from the entry point
// that throws it, errors thrown for real are instances of it, and the error table of
// docs/reference.md lists every code once.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import Fastify from 'fastify'
import WebSocket from 'ws'
import * as errors from '../plugin/errors'
import typedWebsocket from './helpers/plugin'
import * as client from 'fastify-typed-websocket/client'

const server = typedWebsocket as unknown as Record<string, unknown>
const redis = require('../plugin/redis') as Record<string, unknown>
const asyncapi = require('../plugin/asyncapi/index') as Record<string, unknown>

type ErrorClass = new (...args: unknown[]) => Error & { code: string }
const serverErrors = Object.entries(errors as unknown as Record<string, ErrorClass>)
// The export names of the error classes the client throws or rejects with.
const clientErrors = ['ClientQueueFullError', 'TimeoutError', 'ConnectionClosedError', 'AbortError', 'InvalidServerMessageError'] as const

function codeOf (E: ErrorClass): string {
  return new E('a', 'b', 'c').code
}

t.test('every error class of the plugin is exported by the package, under its code', async (t) => {
  t.ok(serverErrors.length >= 19, `${serverErrors.length} classes`)
  for (const [name, E] of serverErrors) {
    const code = codeOf(E)
    if (name === 'WebSocketClosedError') {
      t.equal(code, 'FST_WS_CLOSED')
      t.equal(server.WebSocketClosedError, E, 'WebSocketClosedError')
      continue
    }
    t.equal(code, name, `${name} makes errors of its own code`)
    t.equal(server[name], E, `fastify-typed-websocket exports ${name}`)
  }
  t.equal(redis.FST_WS_BROKER_UNAVAILABLE, errors.FST_WS_BROKER_UNAVAILABLE, 'fastify-typed-websocket/redis exports the error it rejects with')
  t.equal(asyncapi.FST_WS_ASYNCAPI_SCHEMA, errors.FST_WS_ASYNCAPI_SCHEMA, 'fastify-typed-websocket/asyncapi exports the error it throws')
})

t.test('errors thrown for real are instances of the exported classes', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(typedWebsocket)
  let thrown: unknown
  try {
    app.post('/ws', { websocket: true } as never, function open () {})
  } catch (err) {
    thrown = err
  }
  t.ok(thrown instanceof (server.FST_WS_NOT_GET as ErrorClass), 'a websocket POST route: instanceof FST_WS_NOT_GET')
  const bad = Fastify()
  t.teardown(() => bad.close())
  await bad.register(typedWebsocket, { pingInterval: -1 }).ready().then(() => t.fail('should not start'), (err: unknown) => {
    t.ok(err instanceof (server.FST_WS_INVALID_OPTION as ErrorClass), 'instanceof FST_WS_INVALID_OPTION')
    t.ok(err instanceof TypeError, 'and of TypeError, its base')
  })
  const closed = new client.Client({}, 'ws://127.0.0.1:1/', { WebSocket: WebSocket as unknown as client.WebSocketConstructor, reconnect: false })
  closed.close()
  await closed.request('anything' as never).then(() => t.fail('should reject'), (err: unknown) => {
    t.ok(err instanceof client.ConnectionClosedError, 'instanceof ConnectionClosedError')
    t.ok(err instanceof client.ClientError, 'and of the exported base class ClientError')
    t.equal((err as { code: string }).code, 'FST_WS_CLIENT_CLOSED')
  })
})

t.test('every client error extends the exported ClientError and has an FST_WS_CLIENT_ code', async (t) => {
  for (const name of clientErrors) {
    const E = client[name] as unknown as ErrorClass
    const err = new E('message', 'data')
    t.ok(err instanceof client.ClientError, `${name} extends ClientError`)
    t.match(err.code, /^FST_WS_CLIENT_/, `${name}: ${err.code}`)
    t.equal(err.name, name)
  }
})

t.test('the reference\'s error table lists every code once, with the class to catch', async (t) => {
  const lines = readFileSync(join(__dirname, '..', 'docs', 'reference.md'), 'utf8').split('\n')
  const start = lines.indexOf('| code | class | when | what to do |')
  t.not(start, -1, 'docs/reference.md has the error table')
  const rows = new Map<string, string>()
  for (let i = start + 2; i < lines.length && (lines[i] as string).startsWith('|'); i++) {
    const cells = (lines[i] as string).split(' | ')
    const code = /^\| `(FST_WS_\w+)`$/.exec(cells[0] as string)?.[1]
    const klass = /^`(\w+)`$/.exec(cells[1] as string)?.[1]
    t.ok(code !== undefined && klass !== undefined, `a row of code, class, when, what to do: ${lines[i] as string}`)
    t.equal(cells.length, 4, `four cells: ${code}`)
    t.notOk(rows.has(code as string), `${code} once`)
    rows.set(code as string, klass as string)
  }
  const expected = new Map<string, string>()
  for (const [name, E] of serverErrors) expected.set(codeOf(E), name)
  for (const name of clientErrors) expected.set(new (client[name] as unknown as ErrorClass)('m', 'd').code, name)
  t.strictSame([...rows.keys()].sort(), [...expected.keys()].sort(), 'the same codes')
  for (const [code, name] of expected) t.equal(rows.get(code), name, `${code}: catch ${name}`)
})
