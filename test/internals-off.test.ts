// FASTIFY_TYPED_WEBSOCKET_INTERNALS=off: no private part of ws or Fastify is read. Messages,
// pings, topics, slow readers, protocol errors and lifecycle logging work on the public API.
import t from 'tap'
import './helpers/internals-off'
import { currentLayout, requestLogGateOf } from '../plugin/internals'
import { closed, connect, startServer, until } from './helpers/server'
import { exercise, layoutServer, warnings } from './helpers/internals'

const version = (require('ws/package.json') as { version: string }).version

t.test('every access falls back, with one warning that says so', async (t) => {
  const setup = await layoutServer(t)
  t.same(currentLayout(), { receiver: false, sender: false, socket: false, frame: false })
  t.match(warnings(setup.server), [{
    ws: version,
    fallback: ['receiver', 'sender', 'socket', 'frame'],
    msg: 'FASTIFY_TYPED_WEBSOCKET_INTERNALS=off: ws internals are not used; public ws API only'
  }])
  await exercise(t, setup)
})

t.test('a protocol error closed by ws itself is still the server\'s close in the log', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { maxMessageSize: 10, message () {} } }, () => {})
  })
  const ws = await connect(server.url('/ws'))
  ws.send('x'.repeat(100))
  const { code } = await closed(ws)
  t.equal(code, 1009)
  const line = server.logs.find(l => l.msg === 'websocket closed')
  t.match(line, { code: 1009, closedBy: 'server', serverCode: 1009 })
})

t.test('lifecycle logging follows disableRequestLogging, not Fastify\'s log controller', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: true }, () => {})
  }, { fastify: { disableRequestLogging: true } })
  t.equal(requestLogGateOf(server.app), null)
  const ws = await connect(server.url('/ws'))
  ws.close()
  await closed(ws)
  t.equal(server.logs.filter(l => l.msg === 'websocket opened' || l.msg === 'websocket closed').length, 0)
})

t.test('a pong from the client reaches the pong hook and answers keepalive', async (t) => {
  const pongs: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: { pong (_socket, data) { pongs.push(data.toString()) } } }, () => {})
  })
  const ws = await connect(server.url('/ws'))
  ws.pong('unsolicited')
  await until(() => pongs.length === 1, 5000, 'the pong hook')
  t.same(pongs, ['unsolicited'])
  ws.close()
  await closed(ws)
})
