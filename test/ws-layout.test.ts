// A `ws` whose receiver is not laid out as ws 8's (here: one more listener on it
// than ws adds): the plugin falls back to the WebSocket's own events, and
// messages, pings, pongs and keepalive work as before. Its own process, since
// the plugin reads the layout once.
import t from 'tap'
import { once } from 'node:events'
import WebSocket from 'ws'
import { startServer, connect, closed, messages, until } from './helpers/server'
import { keepaliveNow } from '../plugin/keepalive'

const proto = WebSocket.prototype as unknown as { setSocket (...args: unknown[]): void, _receiver: NodeJS.EventEmitter }
const setSocket = proto.setSocket
proto.setSocket = function (this: typeof proto, ...args: unknown[]) {
  setSocket.apply(this, args)
  this._receiver.on('message', () => {})
}
t.teardown(() => { proto.setSocket = setSocket })

t.test('messages, pings and pongs reach the hooks through the fallback', async (t) => {
  const pings: string[] = []
  const pongs: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        pingInterval: 50,
        pingTimeout: 2000,
        message (socket, msg) { return socket.send(`echo ${msg as string}`) },
        ping (_socket, data) { pings.push(data.toString()) },
        pong (_socket, data) { pongs.push(data.toString()) }
      }
    }, function open () {})
  })
  const ws = await connect(server.url('/ws'))
  const echoes = messages(ws, 3)
  ws.send('a')
  ws.send('b')
  ws.send('c')
  t.same(await echoes, ['echo a', 'echo b', 'echo c'], 'every message answered, in order')

  const answered = once(ws, 'pong', { signal: AbortSignal.timeout(2000) })
  ws.ping('are you there')
  const [data] = await answered
  t.equal((data as Buffer).toString(), 'are you there', 'ws still answers the ping')
  await until(() => pings.length === 1, 2000, 'the ping hook')
  t.same(pings, ['are you there'], 'the ping hook saw it')

  await until(() => pongs.length >= 2, 5000, 'two keepalive pongs')
  t.ok(pongs.length >= 2, 'keepalive pings were answered and the pong hook saw them')
  const ended = closed(ws)
  ws.close(1000, 'done')
  t.same(await ended, { code: 1000, reason: 'done' })
})

t.test('keepalive times stay exact past the small-integer range (24 days of uptime)', async (t) => {
  const realNow = Date.now
  const start = keepaliveNow()
  const base = realNow()
  t.teardown(() => { Date.now = realNow })
  Date.now = () => base + 0x80000000
  const later = keepaliveNow()
  t.ok(later - start >= 0x80000000 && later - start < 0x80000000 + 60_000, 'the clock keeps counting up')
  t.ok(later > 0x7fffffff, 'no wrap into negative numbers')
})
