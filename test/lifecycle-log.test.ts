// The `websocket opened` / `websocket closed` log lines, read from pino's output, and who
// closed with what, as the close hook and the socket show it.
import t from 'tap'
import type { CloseDetails, TypedWebSocket } from 'fastify-typed-websocket'
import type { FastifyServerOptions } from 'fastify'
import { LogController } from 'fastify'
import { logsLifecycle } from '../plugin/lifecycle-log'
import { startServer, connect, closed, messages, until, sleep, deferred, connectWhatwg, whatwgClosed } from './helpers/server'

type Log = Record<string, unknown>
const lines = (logs: Log[], msg: string): Log[] => logs.filter(l => l.msg === msg)

t.test('opened and closed at info through the request logger, with counts each way', async (t) => {
  const details = deferred<CloseDetails>()
  const server = await startServer(t, (app) => {
    app.get('/echo', {
      websocket: {
        async message (socket, msg) { await socket.send(msg as string) },
        close (_socket, _code, _reason, d) { details.resolve(d) }
      }
    }, function open () {})
  })
  const ws = await connect(server.url('/echo'))
  await until(() => lines(server.logs, 'websocket opened').length === 1, 5000, 'the opened line')
  for (const text of ['one', 'two', 'three']) ws.send(text)
  t.same(await messages(ws, 3), ['one', 'two', 'three'])
  await sleep(50)
  const gone = closed(ws)
  ws.close(4000, 'bye')
  await gone
  const d = await details.promise

  const [incoming] = lines(server.logs, 'incoming request')
  const [opened] = lines(server.logs, 'websocket opened')
  const [closedLine] = lines(server.logs, 'websocket closed')
  t.equal(opened.level, 30, 'info')
  t.equal(opened.reqId, incoming.reqId, 'the request logger')
  t.equal(closedLine.level, 30)
  t.equal(closedLine.reqId, incoming.reqId)
  t.match(closedLine, { code: 4000, reason: 'bye', closedBy: 'client', peerCode: 4000, peerReason: 'bye', messagesIn: 3, messagesOut: 3 })
  t.equal(closedLine.serverCode, undefined, 'the server sent no close frame of its own')
  t.ok((closedLine.durationMs as number) >= 50, `durationMs ${String(closedLine.durationMs)}`)
  // Three masked 3-5 byte frames and a close frame in; three unmasked frames and the echoed close out.
  t.ok((closedLine.bytesIn as number) >= 3 * 9 + 11 && (closedLine.bytesIn as number) < 100, `bytesIn ${String(closedLine.bytesIn)}`)
  t.ok((closedLine.bytesOut as number) >= 3 * 5 && (closedLine.bytesOut as number) < 60, `bytesOut ${String(closedLine.bytesOut)}`)
  const { level: _level, time: _time, pid: _pid, hostname: _hostname, reqId: _reqId, msg: _msg, ...fields } = closedLine
  t.same({ ...d, durationMs: 0 }, { ...fields, durationMs: 0 }, 'the close hook gets what the log line says')
  t.equal(lines(server.logs, 'request completed').length, 0, 'an upgraded request never completes as HTTP')
})

t.test('a close the server started: its code and reason, even when the client echoes none', async (t) => {
  const seen = deferred<{ code: number, reason: string, details: CloseDetails, socket: TypedWebSocket }>()
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        message (socket) { socket.close(4001, 'token expired') },
        close (socket, code, reason, details) { seen.resolve({ code, reason, details, socket }) }
      }
    }, function open () {})
  })
  const ws = await connectWhatwg(server.url('/ws'))
  const gone = whatwgClosed(ws)
  ws.send('hi')
  t.match(await gone, { code: 4001, reason: 'token expired' })
  const { code, details, socket } = await seen.promise
  t.equal(code, 4001, 'the peer echoed the code')
  t.match(details, { closedBy: 'server', code: 4001, reason: 'token expired', serverCode: 4001, serverReason: 'token expired', peerCode: 4001 })
  t.equal(socket.closedBy, 'server')
  t.equal(socket.serverCloseCode, 4001)
  t.equal(socket.serverCloseReason, 'token expired')
  t.equal(socket.closeCode, 4001)
  const [line] = lines(server.logs, 'websocket closed')
  t.match(line, { closedBy: 'server', code: 4001, reason: 'token expired', messagesIn: 1, messagesOut: 0 })
})

t.test('a close without a code, and a dead link', async (t) => {
  const closes: CloseDetails[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        message (socket) { socket.close() },
        close (_socket, _code, _reason, details) { closes.push(details) }
      }
    }, function open () {})
  })
  const a = await connect(server.url('/ws'))
  const aGone = closed(a)
  a.send('close me')
  t.same(await aGone, { code: 1005, reason: '' })
  const b = await connect(server.url('/ws'))
  b.terminate()
  await until(() => closes.length === 2, 5000, 'both close hooks')
  t.match(closes[0], { closedBy: 'server', serverCode: 1005, serverReason: '', code: 1005 })
  t.match(closes[1], { closedBy: 'network', code: 1006, peerCode: 1006, serverCode: undefined })
  t.same(lines(server.logs, 'websocket closed').map(l => l.closedBy), ['server', 'network'])
})

t.test("the route's logLevel and disableRequestLogging are honoured", async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/quiet', { logLevel: 'warn', websocket: true }, function open () {})
    app.get('/loud', { websocket: true }, function open () {})
  })
  for (const path of ['/quiet', '/loud']) {
    const ws = await connect(server.url(path))
    const gone = closed(ws)
    ws.close()
    await gone
  }
  await until(() => lines(server.logs, 'websocket closed').length === 1, 5000, 'the close line of /loud')
  t.equal(lines(server.logs, 'websocket opened').length, 1, 'only /loud logged its open')

  for (const disableRequestLogging of [true, (request: { url?: string }) => request.url === '/quiet']) {
    const muted = await startServer(t, (app) => {
      app.get('/quiet', { websocket: true }, function open () {})
      app.get('/loud', { websocket: true }, function open () {})
    }, { fastify: { disableRequestLogging } })
    for (const path of ['/quiet', '/loud']) {
      const ws = await connect(muted.url(path))
      const gone = closed(ws)
      ws.close()
      await gone
    }
    await sleep(100)
    const expected = disableRequestLogging === true ? 0 : 1
    t.equal(lines(muted.logs, 'websocket opened').length, expected, `opened lines with ${typeof disableRequestLogging}`)
    t.equal(lines(muted.logs, 'websocket closed').length, expected, `closed lines with ${typeof disableRequestLogging}`)
  }
})

t.test("a logController's isLogDisabled() is honoured", async (t) => {
  class Quiet extends LogController {
    override isLogDisabled (request: { url?: string }): boolean { return request.url === '/quiet' }
  }
  const server = await startServer(t, (app) => {
    app.get('/quiet', { websocket: true }, function open () {})
    app.get('/loud', { websocket: true }, function open () {})
  }, { fastify: { logController: new Quiet() } as FastifyServerOptions })
  for (const path of ['/quiet', '/loud', '/loud']) {
    const ws = await connect(server.url(path))
    const gone = closed(ws)
    ws.close()
    await gone
  }
  // With internals off the controller cannot be read: disableRequestLogging (unset) decides, and all three are logged.
  const expected = process.env.FASTIFY_TYPED_WEBSOCKET_INTERNALS === 'off' ? 3 : 2
  await until(() => lines(server.logs, 'websocket closed').length === expected, 5000, 'the close lines')
  await sleep(50)
  t.equal(lines(server.logs, 'websocket opened').length, expected)
  t.equal(lines(server.logs, 'websocket closed').length, expected)
})

t.test('before the log controller, Fastify\'s initialConfig decides', async (t) => {
  const on = { server: { initialConfig: { disableRequestLogging: false } } }
  const off = { server: { initialConfig: { disableRequestLogging: true } } }
  const byUrl = { url: '/x', server: { initialConfig: { disableRequestLogging: (r: { url: string }) => r.url === '/x' } } }
  t.equal(logsLifecycle(on as never), true)
  t.equal(logsLifecycle(off as never), false)
  t.equal(logsLifecycle(byUrl as never), false)
})

t.test('app.injectWS() connections are logged too', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: true }, function open () {})
  }, { listen: false })
  const ws = await server.app.injectWS('/ws')
  const gone = closed(ws)
  ws.close(1000)
  await gone
  await until(() => lines(server.logs, 'websocket closed').length === 1, 5000, 'the close line')
  t.match(lines(server.logs, 'websocket closed')[0], { closedBy: 'client', code: 1000 })
})
