// A plain JSON-RPC 2.0 client, hand-written envelopes over a raw `ws`, against a route with
// `requests`: every standard code, an app error, a batch, a duplicate id, a cancellation.
// Every error is an answer; the connection stays open to the end.
import t from 'tap'
import { Type } from '@sinclair/typebox'
import { startServer, connect, closed, deferred, sleep } from './helpers/server'
import { RawPeer } from './helpers/jsonrpc'

const Said = Type.Object({ type: Type.Literal('said'), text: Type.String() })
const contract = {
  inbound: Type.Object({ type: Type.Literal('say'), text: Type.String() }),
  outbound: Said,
  requests: {
    echo: { params: Type.Object({ text: Type.String() }), result: Type.Object({ text: Type.String() }) },
    join: {
      params: Type.Object({ room: Type.String({ minLength: 1 }) }),
      result: Type.Object({ members: Type.Array(Type.String()) }),
      errors: { room_full: Type.Object({ capacity: Type.Integer() }), banned: Type.Object({ until: Type.String() }) }
    },
    fail: {},
    wrong: { result: Type.Object({ n: Type.Integer() }) },
    wait: { params: Type.Object({ tag: Type.String() }) }
  }
}

t.test('a JSON-RPC 2.0 client that knows nothing of this package', async (t) => {
  const aborted: Array<{ tag: string, reason: string }> = []
  const waiting = deferred()
  const release = deferred()
  const said: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        ...contract,
        async message (socket, msg) {
          said.push(msg.text)
          await socket.send({ type: 'said', text: msg.text })
        },
        handlers: {
          echo: (_socket, params) => ({ text: params.text }),
          join (socket, params) {
            if (params.room === 'full') throw socket.requestError('room_full', { capacity: 10 }, 'the room is full')
            return { members: ['ann', params.room] }
          },
          async fail () { throw new Error('secret detail: db password is hunter2') },
          wrong: () => ({ n: 'not a number' }) as unknown as { n: number },
          async wait (_socket, params, { signal }) {
            waiting.resolve()
            await new Promise<void>((resolve) => {
              signal.addEventListener('abort', () => {
                aborted.push({ tag: params.tag, reason: String((signal.reason as Error).message) })
                resolve()
              })
              release.promise.then(resolve, resolve)
            })
            return null
          }
        }
      }
    }, () => {})
  })
  const ws = await connect(server.url('/rpc'))
  const peer = new RawPeer(ws)

  t.same(await peer.ask(1, 'echo', { text: 'hi' }), { jsonrpc: '2.0', id: 1, result: { text: 'hi' } }, 'a result, the numeric id echoed')
  t.same(await peer.ask('a-1', 'echo', { text: 'hé' }), { jsonrpc: '2.0', id: 'a-1', result: { text: 'hé' } }, 'a string id echoed')
  const long = 'é'.repeat(1000)
  t.same(await peer.ask(1.5, 'echo', { text: long }), { jsonrpc: '2.0', id: 1.5, result: { text: long } }, 'a longer answer (a 16-bit length), a fractional id')

  peer.send('{"jsonrpc": "2.0", "method": "echo", "params": {"text": ')
  const parse = await peer.answer(null)
  t.equal((parse.error as { code: number }).code, -32700, 'text that is not JSON: -32700, id null')

  peer.send({ jsonrpc: '1.0', id: 2, method: 'echo', params: { text: 'x' } })
  t.match(await peer.answer(2), { jsonrpc: '2.0', id: 2, error: { code: -32600 } }, 'a wrong version: -32600')
  peer.send({ jsonrpc: '2.0', id: 3, method: 7 })
  t.match(await peer.answer(3), { error: { code: -32600, message: /method/ } }, 'a method that is not a string: -32600')
  peer.send({ jsonrpc: '2.0', id: 4, method: 'echo', params: 'bar' })
  t.match(await peer.answer(4), { error: { code: -32600, message: /params/ } }, 'params that are not structured: -32600')
  peer.send({ jsonrpc: '2.0', id: { not: 'an id' }, method: 'echo', params: { text: 'x' } })
  t.match(await peer.answer(null), { error: { code: -32600, message: /id/ } }, 'an id that is neither a string nor a number: -32600, id null')
  peer.send([{ jsonrpc: '2.0', id: 5, method: 'echo', params: { text: 'a' } }, { jsonrpc: '2.0', id: 6, method: 'echo', params: { text: 'b' } }])
  t.match(await peer.answer(null), { error: { code: -32600, message: /batch/ } }, 'a batch: one -32600, id null')

  t.match(await peer.ask(7, 'nope', {}), { jsonrpc: '2.0', id: 7, error: { code: -32601, message: /nope/ } }, 'an unknown method: -32601')

  const invalid = await peer.ask(8, 'join', { room: 42 })
  t.match(invalid, { jsonrpc: '2.0', id: 8, error: { code: -32602 } }, 'invalid params: -32602')
  t.match((invalid.error as { message: string }).message, /\/room/, 'the message names the failing path')
  t.match(await peer.ask(9, 'join', {}), { error: { code: -32602, message: /\/room is required/ } })
  t.match(await peer.ask(10, 'echo'), { error: { code: -32602 } }, 'params left out are checked too')

  const failed = await peer.ask(11, 'fail')
  t.same(failed, { jsonrpc: '2.0', id: 11, error: { code: -32603, message: 'Internal error' } }, 'a handler that throws: -32603, no detail')
  t.notMatch(JSON.stringify(failed), /hunter2|secret|stack/, 'nothing of the error leaks')
  const logged = server.logs.find(line => line.msg === 'websocket request failed')
  t.match(logged, { level: 50, method: 'fail', id: 11, err: { message: /hunter2/ } }, 'it is logged with the method and id')

  t.same(await peer.ask(12, 'wrong'), { jsonrpc: '2.0', id: 12, error: { code: -32603, message: 'Internal error' } }, 'an invalid result: -32603')
  t.match(server.logs.find(line => line.id === 12 && line.level === 50), { method: 'wrong', err: { code: 'FST_WS_INVALID_OUTBOUND', message: /\/n/ } },
    'logged as FST_WS_INVALID_OUTBOUND naming the path')

  t.same(await peer.ask(13, 'join', { room: 'full' }), {
    jsonrpc: '2.0', id: 13, error: { code: 1, message: 'the room is full', data: { capacity: 10 }, name: 'room_full' }
  }, 'an app error: its code, message, data and name')

  // A duplicate id while the first request with it is pending; then a cancellation.
  peer.send({ jsonrpc: '2.0', id: 'w', method: 'wait', params: { tag: 'first' } })
  await waiting.promise
  peer.send({ jsonrpc: '2.0', id: 'w', method: 'wait', params: { tag: 'second' } })
  t.match(await peer.answer('w'), { error: { code: -32600, message: /still pending/ } }, 'a duplicate pending id: -32600')
  peer.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 'w' } })
  t.same(await peer.answer('w'), { jsonrpc: '2.0', id: 'w', error: { code: -32800, message: 'Request cancelled' } }, 'cancelled: -32800')
  t.same(aborted, [{ tag: 'first', reason: 'Request cancelled' }], 'the cancellation reached the handler\'s signal')
  release.resolve()
  await sleep(50)
  t.equal(peer.received.filter(msg => msg.id === 'w').length, 0, 'the cancelled request is not answered twice')

  // A notification (no id) is never answered; inbound messages still reach `message`.
  peer.send({ jsonrpc: '2.0', method: 'echo', params: { text: 'notified' } })
  peer.send({ type: 'say', text: 'plain message' })
  t.same(await peer.wait(msg => msg.type === 'said'), { type: 'said', text: 'plain message' }, 'an inbound message is handled as before')
  t.same(await peer.ask(14, 'echo', { text: 'after' }), { jsonrpc: '2.0', id: 14, result: { text: 'after' } })
  t.same(said, ['plain message'])
  t.same(peer.received, [], 'nothing else was sent: no answer to the notification')

  t.equal(ws.readyState, ws.OPEN, 'the connection stayed open through every error')
  ws.close(1000, 'done')
  t.same(await closed(ws), { code: 1000, reason: 'done' })
})

t.test('a route with requests and no message hook takes every text message as JSON-RPC', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/only', { websocket: { requests: { ping: { result: Type.Literal('pong') } }, handlers: { ping: () => 'pong' as const } } }, () => {})
  })
  const ws = await connect(server.url('/only'))
  const peer = new RawPeer(ws)
  peer.send('not json')
  t.match(await peer.answer(null), { error: { code: -32700 } })
  peer.send({ hello: 'there' })
  t.match(await peer.answer(null), { error: { code: -32600, message: /not a JSON-RPC 2.0 object/ } })
  peer.send('[1, 2]')
  t.match(await peer.answer(null), { error: { code: -32600, message: /batch/ } })
  peer.send({ jsonrpc: '2.0', id: 1 })
  t.match(await peer.answer(1), { error: { code: -32600, message: /no method/ } })
  t.same(await peer.ask(2, 'ping'), { jsonrpc: '2.0', id: 2, result: 'pong' })
  // A cancellation sent as a request is answered; one for an unknown id changes nothing.
  t.same(await peer.ask(3, '$/cancelRequest', { id: 99 }), { jsonrpc: '2.0', id: 3, result: null })
  peer.send({ jsonrpc: '2.0', id: 4, result: true })
  peer.send({ jsonrpc: '2.0', id: 'x', error: { code: 1, message: 'no' } })
  t.same(await peer.ask(5, 'ping'), { jsonrpc: '2.0', id: 5, result: 'pong' }, 'an answer nobody asked for is ignored')
  t.equal(ws.readyState, ws.OPEN)
  ws.close()
  await closed(ws)
})

t.test('on a route with a message hook, JSON that only mentions "jsonrpc" goes to inbound', async (t) => {
  const got: unknown[] = []
  const server = await startServer(t, (app) => {
    app.get('/mixed', {
      websocket: {
        requests: { ping: {} },
        handlers: { ping: () => 'pong' },
        message (socket, msg) { got.push(msg); socket.send(JSON.stringify({ echoed: msg })).catch(() => {}) }
      }
    }, () => {})
  })
  const ws = await connect(server.url('/mixed'))
  const peer = new RawPeer(ws)
  peer.send({ meta: { jsonrpc: '2.0' } })
  peer.send(['"jsonrpc"'])
  peer.send('"jsonrpc"')
  peer.send([{ meta: { jsonrpc: '2.0' } }])
  peer.send('plain text')
  await peer.wait(msg => msg.echoed === 'plain text')
  t.same(got, ['{"meta":{"jsonrpc":"2.0"}}', '["\\"jsonrpc\\""]', '"jsonrpc"', '[{"meta":{"jsonrpc":"2.0"}}]', 'plain text'], 'each reached the message hook, in order')
  peer.send([{ jsonrpc: '2.0', id: 1, method: 'ping' }])
  t.match(await peer.answer(null), { error: { code: -32600, message: /batch/ } }, 'a batch of requests is still a batch')
  ws.close()
  await closed(ws)
})
