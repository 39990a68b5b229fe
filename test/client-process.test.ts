// The client against servers in other processes: one stopped with SIGSTOP (its sockets stay
// open, nothing answers), one killed mid-stream and started again (the client resumes its
// topic with `since`), and Node programs that must exit by themselves once closed.
import t from 'tap'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import WsWebSocket from 'ws'
import Fastify from 'fastify'
import Redis from 'ioredis'
import { Type } from '@sinclair/typebox'
import { fastifyTypedWebsocket } from 'fastify-typed-websocket'
import { redisBroker } from 'fastify-typed-websocket/redis'
import { connect, type WebSocketConstructor } from 'fastify-typed-websocket/client'
import { sleep, startServer, until } from './helpers/server'
import { implementations, waitState } from './helpers/client'
import { startRedis } from './helpers/redis'
import { childEnv } from './helpers/child'

const FIXTURES = join(__dirname, 'fixtures', 'client')

/** Starts a fixture server; resolves with the port it printed. */
async function startChild (t: tap.Test, file: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess, port: number }> {
  const child = spawn(process.execPath, [join(FIXTURES, file)], { env: { ...childEnv(), ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} did not start within 20 s`)), 20_000)
    child.stdout?.once('data', (data: Buffer) => {
      clearTimeout(timer)
      resolve(Number(data.toString().trim()))
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`${file} exited with ${String(code)}`)) })
  })
  child.stdout?.resume()
  return { child, port }
}

const Tick = Type.Object({ type: Type.Literal('tick'), id: Type.Integer() })
const Feed = {
  inbound: Type.Object({ type: Type.Literal('noop') }),
  outbound: Type.Union([Tick, Type.Object({ type: Type.Literal('hello'), offset: Type.Integer(), recovered: Type.Boolean() })])
}

for (const [name, WebSocket] of implementations) {
  t.test(`${name}: a topic resumes with since after its server is killed mid-stream and restarted, nothing lost or twice`, async (t) => {
    const redis = await startRedis(t)
    // The publisher: another node of the same app, on the same Redis, that keeps publishing.
    const redisClient = new Redis(redis.url)
    const publisher = Fastify()
    await publisher.register(fastifyTypedWebsocket, { broker: redisBroker({ client: redisClient }) })
    const feed = publisher.websocketTopic('feed', { message: Tick, history: 1000, offsetField: 'id' })
    await publisher.ready()
    t.teardown(async () => {
      await publisher.close()
      redisClient.disconnect()
    })

    let server = await startChild(t, 'feed-server.js', { REDIS_URL: redis.url })
    const port = server.port
    const client = connect(Feed, `ws://127.0.0.1:${port}/feed/ticks`, {
      WebSocket,
      reconnect: { initialDelay: 20, maxDelay: 100 },
      offsetField: 'id',
      // the highest id seen so far, on every attempt
      query: (c) => ({ since: c.offsets.get('') })
    })
    t.teardown(() => client.close())
    const got: number[] = []
    const hellos: Array<{ offset: number, recovered: boolean }> = []
    client.on('tick', (msg) => { got.push(msg.id) })
    client.on('hello', (msg) => { hellos.push({ offset: msg.offset, recovered: msg.recovered }) })
    await until(() => hellos.length === 1, 10_000, 'the first subscription')
    t.same(hellos[0], { offset: 0, recovered: false }, 'a first subscription, without since')

    const TOTAL = 300
    let published = 0
    const publishing = (async () => {
      for (; published < TOTAL; published++) {
        await feed.publish('ticks', { type: 'tick' })
        await sleep(2)
      }
    })()
    t.teardown(() => { published = TOTAL })
    await until(() => got.length >= 50, 10_000, 'the stream to start')
    // killed: no close frame, no shutdown; the client sees its link drop
    server.child.kill('SIGKILL')
    await waitState(client, 'reconnecting')
    const missedFrom = got.length
    await until(() => published >= missedFrom + 50, 10_000, 'messages published while the server is down')
    const publishedWhileDown = published - missedFrom
    server = await startChild(t, 'feed-server.js', { REDIS_URL: redis.url, PORT: String(port) })
    await publishing
    await until(() => got.length >= TOTAL, 15_000, 'every message')
    await sleep(50) // a duplicate would arrive by now
    t.ok(hellos.length >= 2, 'the client subscribed again')
    t.match(hellos.at(-1), { recovered: true }, 'the restarted server recovered the gap from the history')
    t.ok(hellos.slice(1).every((h) => h.recovered), 'every resubscription recovered')
    t.ok(publishedWhileDown >= 50, `${publishedWhileDown} messages after id ${missedFrom} were published while the server was down`)
    t.strictSame(got, Array.from({ length: TOTAL }, (_, i) => i + 1), 'every message once, in order')
    t.equal(client.offsets.get(''), TOTAL, 'the client keeps the highest id')
  })
}

t.test('a stopped server is detected within interval + timeout, then the client reconnects', async (t) => {
  const child = spawn(process.execPath, [join(FIXTURES, 'heartbeat-server.js')], { env: childEnv(), stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => {
    child.kill('SIGCONT')
    child.kill('SIGKILL')
  })
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server did not start within 20 s')), 20_000)
    child.stdout.once('data', (data: Buffer) => {
      clearTimeout(timer)
      resolve(Number(data.toString().trim()))
    })
  })
  const interval = 200
  const timeout = 300
  const client = connect({}, `ws://127.0.0.1:${port}/hb`, {
    WebSocket: WsWebSocket as unknown as WebSocketConstructor,
    heartbeat: { interval, timeout },
    reconnect: { initialDelay: 50, maxDelay: 200 }
  })
  t.teardown(() => client.close())
  await waitState(client, 'open')
  await until(() => client.rtt !== undefined, 5000, 'a first heartbeat answer')
  child.kill('SIGSTOP')
  const stoppedAt = Date.now()
  await waitState(client, 'reconnecting', 10_000)
  const detected = Date.now() - stoppedAt
  // the bound plus scheduling slack on a busy machine
  t.ok(detected <= interval + timeout + 1000, `detected after ${detected} ms (interval + timeout = ${interval + timeout} ms)`)
  t.equal(client.closeReason, 'heartbeat timed out')
  child.kill('SIGCONT')
  await waitState(client, 'open', 10_000)
  t.pass('reconnected once the server runs again')
})

function runClient (scenario: string, url: string): Promise<{ code: number | null, stdout: string, ms: number, killed: boolean }> {
  const started = Date.now()
  return new Promise((resolve) => {
    execFile(process.execPath, [join(FIXTURES, 'exits.js'), scenario, url], { env: childEnv(), timeout: 20_000 }, (err, stdout) => {
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : null), stdout, ms: Date.now() - started, killed: err?.killed === true })
    })
  })
}

t.test('a Node process with a closed client exits by itself', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/echo', { websocket: { heartbeat: true, message () {} } }, () => {})
    app.get('/refused', { preValidation: async (_request, reply) => reply.code(401).send('no'), websocket: true }, () => {})
  })
  const open = await runClient('open', server.url('/echo'))
  t.notOk(open.killed, `exited after close() (${open.ms} ms)`)
  t.equal(open.code, 0)
  t.strictSame(open.stdout.trim().split('\n'), ['connecting', 'open', 'closed'])
  const down = await runClient('reconnecting', 'ws://127.0.0.1:9/nothing')
  t.notOk(down.killed, `exited while reconnecting (${down.ms} ms)`)
  t.equal(down.stdout.trim().split('\n').at(-1), 'closed')
  const refused = await runClient('refused', server.url('/refused'))
  t.notOk(refused.killed, 'exited once refused, without close()')
  t.strictSame(refused.stdout.trim().split('\n'), ['connecting', 'refused'])
})
