import t from 'tap'
import { startServer, connect, messages, closed } from './helpers/server'

t.test('echo through a real server', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/echo', { websocket: { message (socket, msg) { return socket.send(msg) } } }, function open () {})
  })
  const ws = await connect(server.url('/echo'))
  ws.send('hello')
  t.same(await messages(ws, 1), ['hello'])
  ws.close(1000, 'done')
  t.same(await closed(ws), { code: 1000, reason: 'done' })
})
