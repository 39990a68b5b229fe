// plugin/inbound.ts: the route option `heartbeat: true`: the client's empty text message is answered with an
// empty text message, before validation and without calling `message`.
import t from 'tap'
import { Type } from '@sinclair/typebox'
import { closed, connect, deferred, messages, startServer } from './helpers/server'
import { frame, Opcode, RawClient } from './helpers/raw'

const Inbound = Type.Object({ type: Type.Literal('echo'), n: Type.Integer() })

t.test('an empty text message is answered with one, and message never sees it', async (t) => {
  const seen: unknown[] = []
  const opening = deferred()
  const server = await startServer(t, (app) => {
    app.get('/hb', {
      websocket: {
        heartbeat: true,
        inbound: Inbound,
        async message (socket, msg) {
          seen.push(msg)
          await socket.send(msg)
        }
      }
    }, async () => { await opening.promise })
  })
  const ws = await connect(server.url('/hb'))
  // answered while open is still running: a heartbeat waits for no hook
  const first = messages(ws, 1)
  ws.send('')
  t.strictSame(await first, [''])
  opening.resolve()
  const rest = messages(ws, 3)
  ws.send(JSON.stringify({ type: 'echo', n: 1 }))
  ws.send('')
  ws.send(JSON.stringify({ type: 'echo', n: 2 }))
  const got = await rest
  t.equal(got.length, 3)
  t.ok(got.includes(''), 'the heartbeat answer')
  t.strictSame(got.filter(m => m !== '').map(m => JSON.parse(m.toString())), [{ type: 'echo', n: 1 }, { type: 'echo', n: 2 }])
  t.strictSame(seen, [{ type: 'echo', n: 1 }, { type: 'echo', n: 2 }], 'message saw only the real messages')
  ws.close()
})

t.test('an empty binary message is not a heartbeat', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/hb', { websocket: { heartbeat: true, inbound: Inbound, message () {} } }, () => {})
  })
  const ws = await connect(server.url('/hb'))
  ws.send(Buffer.alloc(0))
  t.strictSame(await closed(ws), { code: 1003, reason: 'binary messages are not accepted' })
})

t.test('without heartbeat, an empty text message is invalid JSON', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/plain', { websocket: { inbound: Inbound, message () {} } }, () => {})
  })
  const ws = await connect(server.url('/plain'))
  ws.send('')
  t.strictSame(await closed(ws), { code: 1007, reason: 'invalid JSON: an empty message (a client heartbeat? this route has no heartbeat: true)' },
    'the reason says what an empty message usually is')
})

t.test('heartbeat set plugin-wide applies to every route', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/push', { websocket: true }, () => {})
  }, { plugin: { heartbeat: true } })
  const ws = await connect(server.url('/push'))
  const answer = messages(ws, 1)
  ws.send('')
  t.strictSame(await answer, [''], 'even a push-only route answers it')
  ws.close()
})

t.test('a heartbeat that arrives after the server began to close is not answered', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/hb', {
      websocket: { heartbeat: true, inbound: Inbound, message (socket) { socket.close(4000, 'bye') } }
    }, () => {})
  })
  const raw = await RawClient.open(server.port, '/hb')
  // The message that makes the server close, and a heartbeat right behind it, in one write.
  raw.send(Buffer.concat([frame({ opcode: Opcode.Text, payload: JSON.stringify({ type: 'echo', n: 1 }) }), frame({ opcode: Opcode.Text, payload: '' })]))
  await raw.until(() => raw.close !== undefined, 5000, 'the close frame')
  t.strictSame(raw.close, { code: 4000, reason: 'bye' })
  t.equal(raw.frames.filter(f => f.opcode === Opcode.Text).length, 0, 'no answer to the heartbeat')
  raw.socket.destroy()
})
