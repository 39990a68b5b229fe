// socket.request late in a connection's life: everything reachable from it
// reads as it did during the handshake, after messages and keepalive pings.
import t from 'tap'
import { startServer, connect, closed, until } from './helpers/server'

interface Seen {
  params: unknown
  query: unknown
  headers: Record<string, unknown>
  rawHeaders: string[]
  rawHeadersObject: Record<string, unknown>
  url: string
  method: string
  httpVersion: string
  trailers: unknown[]
  decorated: unknown
  hookValue: unknown
  id: string
  signalAborted: boolean
  signalIsSignal: boolean
  logIsChild: boolean
  logLevel: string
  sameRequest: boolean
  closeState: unknown[]
}

t.test('socket.request read from a message hook after messages and keepalive pings', async (t) => {
  const seen: Seen[] = []
  let pings = 0
  const openRequestIds: Record<string, string> = {}
  const server = await startServer(t, (app) => {
    app.decorateRequest('tenant', '')
    app.addHook('onRequest', async (request) => {
      (request as unknown as { tenant: string }).tenant = `tenant-${(request.query as { room: string }).room}`
    })
    app.get<{ Params: { room: string }, Querystring: { room: string, n: string } }>('/rooms/:room', {
      websocket: {
        pingInterval: 40,
        pingTimeout: 2000,
        message (socket, msg) {
          if (msg !== 'report') return
          const request = socket.request
          const raw = request.raw
          seen.push({
            params: { ...request.params as object },
            query: { ...request.query as object },
            headers: { ...request.headers },
            rawHeaders: [...raw.rawHeaders],
            rawHeadersObject: { ...raw.headers },
            url: raw.url as string,
            method: raw.method as string,
            httpVersion: raw.httpVersion,
            trailers: [raw.rawTrailers.length, Object.keys(raw.trailers).length, raw.complete],
            decorated: (request as unknown as { tenant: string }).tenant,
            hookValue: (request as unknown as { tenant: string }).tenant,
            id: request.id,
            signalAborted: request.signal.aborted,
            signalIsSignal: request.signal instanceof AbortSignal,
            logIsChild: request.log === socket.log && typeof request.log.info === 'function',
            logLevel: request.log.level,
            sameRequest: socket.request === request,
            closeState: [socket.closeCode, socket.closeReason, socket.closedBy, socket.serverCloseCode, socket.serverCloseReason, socket.isOpen]
          })
          request.log.info({ tenant: (request as unknown as { tenant: string }).tenant }, 'late log line')
          socket.send('reported')
        }
      }
    }, function open (_socket, request) {
      openRequestIds[request.params.room] = request.id
    })
  })

  const ws = await connect(server.url('/rooms/blue?room=blue&n=7'), {
    headers: { 'x-custom': 'one', 'user-agent': 'late-test/1.0', cookie: 'session=abc' }
  })
  ws.on('ping', () => { pings++ })
  // Several messages, then a wait that spans several keepalive pings.
  for (let i = 0; i < 5; i++) ws.send(`message ${i}`)
  await until(() => pings >= 3, 5000, 'three keepalive pings')
  const reported = new Promise<void>(resolve => ws.once('message', () => resolve()))
  ws.send('report')
  await reported
  // A second connection in between, with other values: nothing is shared that should not be.
  const other = await connect(server.url('/rooms/red?room=red&n=8'), { headers: { 'x-custom': 'two', cookie: 'session=xyz' } })
  const otherReported = new Promise<void>(resolve => other.once('message', () => resolve()))
  other.send('report')
  await otherReported

  t.equal(seen.length, 2)
  const [late, second] = seen
  t.same(late.params, { room: 'blue' }, 'params')
  t.same(late.query, { room: 'blue', n: '7' }, 'query')
  t.equal(late.headers['x-custom'], 'one')
  t.equal(late.headers['user-agent'], 'late-test/1.0')
  t.equal(late.headers.cookie, 'session=abc')
  t.equal(late.headers.upgrade, 'websocket')
  t.equal(late.headers.connection, 'Upgrade')
  t.equal(late.headers.host, `127.0.0.1:${server.port}`)
  t.equal(late.headers['sec-websocket-version'], '13')
  t.match(late.headers['sec-websocket-key'], /^[A-Za-z0-9+/]{22}==$/)
  t.same(late.rawHeadersObject, late.headers, 'request.raw.headers are request.headers')
  const pairs: Record<string, string> = {}
  for (let i = 0; i < late.rawHeaders.length; i += 2) pairs[late.rawHeaders[i].toLowerCase()] = late.rawHeaders[i + 1]
  t.same(pairs, late.headers, 'rawHeaders hold the same names and values')
  t.ok(late.rawHeaders.includes('Sec-WebSocket-Version') && late.rawHeaders.includes('X-Custom') === false && late.rawHeaders.includes('x-custom'),
    'rawHeaders keep the names as sent')
  t.equal(late.url, '/rooms/blue?room=blue&n=7')
  t.equal(late.method, 'GET')
  t.equal(late.httpVersion, '1.1')
  t.same(late.trailers, [0, 0, true], 'no trailers; the request is complete')
  t.equal(late.decorated, 'tenant-blue', 'a request decoration set by a hook')
  t.equal(late.id, openRequestIds.blue, 'the id the open handler saw')
  t.equal(late.signalIsSignal, true)
  t.equal(late.signalAborted, false, 'request.signal is not aborted while the connection is open')
  t.equal(late.logIsChild, true, 'request.log is socket.log')
  t.equal(late.logLevel, 'debug')
  t.equal(late.sameRequest, true)
  t.same(late.closeState, [undefined, undefined, undefined, undefined, undefined, true], 'no close details while open')
  const line = server.logs.find(l => l.msg === 'late log line' && l.tenant === 'tenant-blue')
  t.ok(line, 'request.log still writes')
  t.equal(line?.reqId, openRequestIds.blue, 'with the request id')

  t.same(second.params, { room: 'red' })
  t.same(second.query, { room: 'red', n: '8' })
  t.equal(second.headers['x-custom'], 'two')
  t.equal(second.headers.cookie, 'session=xyz')
  t.equal(second.decorated, 'tenant-red')
  t.equal(second.id, openRequestIds.red)
  t.not(second.id, late.id)
  t.not(second.headers['sec-websocket-key'], late.headers['sec-websocket-key'])

  other.close()
  ws.close()
  await Promise.all([closed(ws), closed(other)])
})
