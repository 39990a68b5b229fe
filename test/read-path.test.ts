// plugin/inbound.ts and requests.ts: while dispatch is held (a hook runs, the connection is at
// maxConcurrentRequests, the rate limit waits), answers to the server's calls, cancellations and
// heartbeats are still read and taken at once; other messages queue up to maxPendingMessages, and
// a paused reader still answers the client's heartbeat.
import t from 'tap'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import type { TypedWebSocket } from 'fastify-typed-websocket'
import { connect as connectClient, type WebSocketConstructor } from 'fastify-typed-websocket/client'
import { startServer, connect, deferred, sleep, until } from './helpers/server'
import { RawPeer, type Envelope } from './helpers/jsonrpc'

const confirm = { params: Type.Object({ question: Type.String() }), result: Type.Boolean() }
const Ask = Type.Object({ type: Type.Literal('ask'), question: Type.String() })
const isCall = (msg: Envelope): boolean => typeof msg.method === 'string' && msg.method !== '$/cancelRequest'

t.test('await socket.call() in open gets the client\'s answer, and messages sent meanwhile wait for open', async (t) => {
  const order: string[] = []
  const contract = { requests: { hello: { result: Type.String() } }, clientRequests: { confirm } }
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        ...contract,
        requestTimeout: 3000,
        handlers: { hello () { order.push('hello'); return 'hi' } }
      }
    }, async (socket) => {
      const yes = await socket.call('confirm', { question: 'ready?' })
      order.push(`open got ${String(yes)}`)
    })
  })
  const client = connectClient(contract, server.url('/rpc'), { WebSocket: WebSocket as unknown as WebSocketConstructor })
  t.teardown(() => client.close())
  client.handle('confirm', ({ question }) => question === 'ready?')
  t.equal(await client.call('hello'), 'hi')
  t.same(order, ['open got true', 'hello'], 'open had its answer first; the request sent meanwhile ran after open')
})

t.test('await socket.call() in an async message hook gets its answer (not queued behind the hook)', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        inbound: Ask,
        outbound: Type.Object({ type: Type.Literal('told'), yes: Type.Boolean() }),
        clientRequests: { confirm },
        requestTimeout: 3000,
        async message (socket, msg) {
          socket.send({ type: 'told', yes: await socket.call('confirm', { question: msg.question }).catch(() => false) })
        }
      }
    }, () => {})
  })
  const peer = new RawPeer(await connect(server.url('/rpc')))
  peer.send({ type: 'ask', question: 'a' })
  peer.send({ type: 'ask', question: 'b' })
  for (const question of ['a', 'b']) {
    const call = await peer.wait(isCall)
    t.same(call.params, { question }, `the hook of "${question}" calls the client, in message order`)
    // "a" is answered with a result, "b" with an error: both reach the waiting hook.
    peer.send(question === 'a' ? { jsonrpc: '2.0', id: call.id, result: true } : { jsonrpc: '2.0', id: call.id, error: { code: 1, message: 'no' } })
    t.same(await peer.wait(msg => msg.type === 'told'), { type: 'told', yes: question === 'a' }, 'the hook had its answer')
  }
})

t.test('await socket.call() in a request handler at maxConcurrentRequests gets its answer', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        maxConcurrentRequests: 1,
        requestTimeout: 3000,
        requests: { ask: { params: Type.Object({ question: Type.String() }), result: Type.Boolean() } },
        clientRequests: { confirm },
        handlers: { async ask (socket, { question }) { return await socket.call('confirm', { question }) } }
      }
    }, () => {})
  })
  const peer = new RawPeer(await connect(server.url('/rpc')))
  peer.send({ jsonrpc: '2.0', id: 'r1', method: 'ask', params: { question: 'one' } })
  peer.send({ jsonrpc: '2.0', id: 'r2', method: 'ask', params: { question: 'two' } })
  for (const [id, question] of [['r1', 'one'], ['r2', 'two']]) {
    const call = await peer.wait(isCall)
    t.same(call.params, { question })
    peer.send({ jsonrpc: '2.0', id: call.id, result: true })
    t.same(await peer.answer(id), { jsonrpc: '2.0', id, result: true }, `${id} answered, not timed out`)
  }
})

t.test('a $/cancelRequest sent while the connection is at maxConcurrentRequests aborts the running handler', async (t) => {
  const aborted: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        maxConcurrentRequests: 1,
        requests: { wait: { params: Type.Object({ name: Type.String() }), result: Type.String() } },
        handlers: {
          wait (_socket, { name }, { signal }) {
            return new Promise<string>((resolve) => signal.addEventListener('abort', () => { aborted.push(name); resolve(name) }))
          }
        }
      }
    }, () => {})
  })
  const peer = new RawPeer(await connect(server.url('/rpc')))
  peer.send({ jsonrpc: '2.0', id: 1, method: 'wait', params: { name: 'first' } })
  peer.send({ jsonrpc: '2.0', id: 2, method: 'wait', params: { name: 'second' } })
  peer.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 1 } })
  t.match(await peer.answer(1), { error: { code: -32800, message: 'Request cancelled' } })
  await until(() => aborted.length === 1, 2000, 'the first handler\'s abort')
  // The second waited for the free slot; it runs now and a cancellation reaches it too.
  peer.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 2 } })
  t.match(await peer.answer(2), { error: { code: -32800 } })
  await until(() => aborted.length === 2, 2000, 'the second handler\'s abort')
  t.same(aborted, ['first', 'second'])
})

t.test('a $/cancelRequest of a request still queued behind a full connection answers it -32800 and it never runs', async (t) => {
  const ran: number[] = []
  const gate = deferred()
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        maxConcurrentRequests: 1,
        requests: { work: { params: Type.Object({ n: Type.Integer() }), result: Type.Integer() } },
        handlers: {
          async work (_socket, { n }, { signal }) {
            ran.push(n)
            if (n === 1) await gate.promise
            else await new Promise((resolve) => signal.addEventListener('abort', resolve))
            return n
          }
        }
      }
    }, () => {})
  })
  const peer = new RawPeer(await connect(server.url('/rpc')))
  peer.send({ jsonrpc: '2.0', id: 1, method: 'work', params: { n: 1 } })
  peer.send({ jsonrpc: '2.0', id: 2, method: 'work', params: { n: 2 } })
  peer.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 2 } })
  await sleep(50)
  gate.resolve()
  t.same(await peer.answer(1), { jsonrpc: '2.0', id: 1, result: 1 })
  t.match(await peer.answer(2), { error: { code: -32800, message: 'Request cancelled' } }, 'cancelled while it waited')
  t.same(ran, [1], 'a request cancelled before its turn never runs')
})

t.test('the client\'s heartbeat is answered while the connection is at maxConcurrentRequests', async (t) => {
  const gate = deferred()
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        heartbeat: true,
        maxConcurrentRequests: 1,
        requests: { stuck: { result: Type.Null() } },
        handlers: { async stuck () { await gate.promise; return null } }
      }
    }, () => {})
  })
  const peer = new RawPeer(await connect(server.url('/rpc')))
  peer.send({ jsonrpc: '2.0', id: 1, method: 'stuck' })
  peer.send({ jsonrpc: '2.0', id: 2, method: 'stuck' })
  peer.send('')
  await until(() => peer.texts.length === 1, 2000, 'the heartbeat answer')
  t.same(peer.texts, [''], 'answered while both requests wait')
  gate.resolve()
  t.match(await peer.answer(2), { result: null })
})

t.test('the client\'s heartbeat is answered during a rateLimit pause', async (t) => {
  const seen: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/rl', {
      websocket: {
        heartbeat: true,
        inbound: Ask,
        rateLimit: { messages: 1, interval: 1000, action: 'pause' },
        message (_socket, msg) { seen.push(msg.question) }
      }
    }, () => {})
  })
  const peer = new RawPeer(await connect(server.url('/rl')))
  peer.send({ type: 'ask', question: 'a' })
  peer.send({ type: 'ask', question: 'b' })
  peer.send('')
  await until(() => peer.texts.length === 1, 500, 'the heartbeat answer, before the rate limit refills')
  t.same(seen, ['a'], 'the second message still waits for the rate limit')
  await until(() => seen.length === 2, 3000, 'the second message')
  t.same(seen, ['a', 'b'])
})

t.test('a client with a heartbeat stays connected while the server holds its reading paused, and loses nothing', async (t) => {
  const seen: number[] = []
  const gate = deferred()
  let socket: TypedWebSocket | undefined
  const Say = Type.Object({ type: Type.Literal('say'), n: Type.Integer() })
  const contract = { inbound: Say, outbound: Type.Object({ type: Type.Literal('done') }) }
  const server = await startServer(t, (app) => {
    app.get('/slow', {
      websocket: {
        ...contract,
        heartbeat: true,
        maxPendingMessages: 2,
        async message (_socket, msg) {
          seen.push(msg.n)
          if (msg.n === 0) await gate.promise
        }
      }
    }, (s) => { socket = s })
  })
  const client = connectClient(contract, server.url('/slow'), {
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    heartbeat: { interval: 100, timeout: 1500 }
  })
  t.teardown(() => client.close())
  await until(() => client.state === 'open', 3000, 'the client to open')
  const states: string[] = []
  client.on('state', (state) => states.push(state))
  for (let n = 0; n < 20; n++) client.send({ type: 'say', n })
  await until(() => socket?.raw.isPaused === true, 3000, 'the server to pause reading')
  // Several client heartbeat periods and more than its timeout.
  await sleep(3500)
  t.equal(client.state, 'open', 'the client did not take the paused server for a dead link')
  t.same(states, [], 'no reconnect')
  t.same(seen, [0], 'the hook still holds the queue')
  gate.resolve()
  await until(() => seen.length === 20, 5000, 'every message')
  t.same(seen, Array.from({ length: 20 }, (_, n) => n), 'every message once, in order')
  t.equal(socket?.raw.isPaused, false, 'reading resumed')
})

t.test('while dispatch is held, every other message waits its turn and gets its usual answer, in order', async (t) => {
  const gate = deferred()
  const server = await startServer(t, (app) => {
    app.get('/rpc', {
      websocket: {
        maxConcurrentRequests: 1,
        requests: { stuck: { result: Type.Null() }, echo: { params: Type.Object({ n: Type.Integer() }), result: Type.Integer() } },
        handlers: { async stuck () { await gate.promise; return null }, echo (_socket, { n }) { return n } }
      }
    }, () => {})
  })
  const peer = new RawPeer(await connect(server.url('/rpc')))
  peer.send({ jsonrpc: '2.0', id: 'hold', method: 'stuck' })
  await sleep(20)
  peer.send('{"jsonrpc": not json')
  peer.send({ jsonrpc: '1.0', id: 'old', method: 'echo' })
  peer.send({ jsonrpc: '2.0', id: 99, result: 'an answer to no call' })
  peer.send({ jsonrpc: '2.0', id: 'x' })
  peer.send({ jsonrpc: '2.0', id: 'c1', method: '$/cancelRequest', params: { id: 'hold' } })
  peer.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 'nobody' } })
  peer.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: null })
  peer.send({ jsonrpc: '2.0', id: 'e1', method: 'echo', params: { n: 1 } })
  await sleep(50)
  t.same(peer.received, [], 'nothing answered while the request holds dispatch: a cancel with an id is a request like any')
  gate.resolve()
  await until(() => peer.received.length === 7, 3000, 'every answer')
  t.same(peer.received.map(msg => [msg.id, (msg.error as { code?: number } | undefined)?.code ?? msg.result]), [
    ['hold', null],
    [null, -32700],
    ['old', -32600],
    ['x', -32600],
    ['c1', null],
    [null, -32600],
    ['e1', 1]
  ], 'each in the order sent, as if nothing had waited')
})

t.test('while the server holds reading paused, a heartbeat route sends an empty message every second, and stops when reading resumes', async (t) => {
  const gates = [deferred(), deferred()]
  let opened = 0
  const sockets: TypedWebSocket[] = []
  const server = await startServer(t, (app) => {
    app.get('/slow', {
      websocket: {
        heartbeat: true,
        inbound: Ask,
        maxPendingMessages: 1,
        async message (socket, msg) { if (msg.question === 'hold') await gates[Number((socket.request.query as { gate: string }).gate)].promise }
      }
    }, (s) => { sockets.push(s); opened++ })
  })
  const peer = new RawPeer(await connect(server.url('/slow?gate=0')))
  for (const question of ['hold', 'a', 'b']) peer.send({ type: 'ask', question })
  await until(() => sockets[0]?.raw.isPaused === true, 2000, 'the pause')
  await until(() => peer.texts.length >= 3, 3500, 'three beats')
  t.ok(peer.texts.every(text => text === ''), 'empty text messages, unasked')
  gates[0].resolve()
  await until(() => sockets[0].raw.isPaused === false, 2000, 'reading to resume')
  const beats = peer.texts.length
  await sleep(1300)
  t.equal(peer.texts.length, beats, 'no beat once reading resumed')

  // A connection that closes while paused is dropped from the beats.
  const ws = await connect(server.url('/slow?gate=1'))
  const second = new RawPeer(ws)
  for (const question of ['hold', 'a', 'b']) second.send({ type: 'ask', question })
  await until(() => second.texts.length >= 1, 2000, 'the first beat of the second connection')
  ws.terminate()
  await sleep(1200)
  gates[1].resolve()
  const third = new RawPeer(await connect(server.url('/slow?gate=0')))
  third.send('')
  await until(() => third.texts.length === 1, 2000, 'the server goes on answering heartbeats')
  t.equal(opened, 3)
})
