// The client against servers in other processes: one stopped with SIGSTOP (its sockets stay
// open, nothing answers), and Node programs that must exit by themselves once closed.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { join } from 'node:path'
import WsWebSocket from 'ws'
import { connect, type WebSocketConstructor } from 'fastify-typed-websocket/client'
import { startServer, until } from './helpers/server'
import { waitState } from './helpers/client'

const FIXTURES = join(__dirname, 'fixtures', 'client')

function childEnv (): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env.NODE_V8_COVERAGE
  delete env.NODE_OPTIONS
  for (const key of Object.keys(env)) if (key.startsWith('_TAPJS_PROCESSINFO_')) delete env[key]
  return env
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
