// The client's calls (fastify-typed-websocket/client, the built package) against a route with
// requests, on `ws` and on undici's WebSocket: results, app errors, timeouts and aborts with
// their cancellation, the offline queue, at most once across reconnects, and client.handle().
import t from 'tap'
import { Type } from '@sinclair/typebox'
import type { TypedWebSocket } from 'fastify-typed-websocket'
import {
  AbortError, ConnectionClosedError, RemoteError, TimeoutError, connect, type WebSocketConstructor
} from 'fastify-typed-websocket/client'
import { deferred, sleep, startServer, until, type TestServer } from './helpers/server'
import { implementations, waitState } from './helpers/client'

const chat = {
  requests: {
    join: {
      params: Type.Object({ room: Type.String() }),
      result: Type.Object({ members: Type.Array(Type.String()) }),
      errors: { room_full: Type.Object({ capacity: Type.Integer() }) }
    },
    wait: { params: Type.Object({ ms: Type.Integer() }), result: Type.String() },
    count: { result: Type.Integer() }
  },
  clientRequests: {
    confirm: { params: Type.Object({ question: Type.String() }), result: Type.Boolean() },
    slow: { result: Type.String() },
    missing: {}
  }
}

interface Route {
  server: TestServer
  /** Calls of each method that reached a handler, and the ids they came with. */
  calls: Record<string, number>
  ids: Array<string | number>
  aborts: string[]
  sockets: Array<TypedWebSocket<unknown, unknown, { confirm: { params: { question: string }, result: boolean }, slow: { result: string }, missing: Record<never, never> }>>
}

async function startRoute (t: tap.Test): Promise<Route> {
  const route = { calls: {}, ids: [], aborts: [], sockets: [] } as unknown as Route
  route.server = await startServer(t, (app) => {
    app.get('/chat', {
      websocket: {
        ...chat,
        handlers: {
          join (socket, { room }, { id }) {
            route.calls.join = (route.calls.join ?? 0) + 1
            route.ids.push(id)
            if (room === 'full') throw socket.requestError('room_full', { capacity: 10 }, 'the room is full')
            return { members: ['ann', room] }
          },
          async wait (_socket, { ms }, { signal }) {
            route.calls.wait = (route.calls.wait ?? 0) + 1
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, ms)
              signal.addEventListener('abort', () => {
                clearTimeout(timer)
                route.aborts.push((signal.reason as Error).message)
                resolve()
              })
            })
            return 'waited'
          },
          count () { return route.sockets.length }
        }
      }
    }, (socket) => { route.sockets.push(socket as never) })
  })
  return route
}

for (const [name, WebSocket] of implementations) {
  t.test(`on ${name}`, async (t) => {
    t.test('call() resolves with the result; an app error is a RemoteError narrowed by name', async (t) => {
      const route = await startRoute(t)
      const client = connect(chat, route.server.url('/chat'), { WebSocket: WebSocket as WebSocketConstructor })
      t.teardown(() => client.close())
      t.same(await client.call('join', { room: 'lobby' }), { members: ['ann', 'lobby'] })
      const err = await client.call('join', { room: 'full' }).catch((e: unknown) => e)
      t.ok(err instanceof RemoteError, 'a RemoteError')
      if (client.isRemoteError(err, 'join') && err.name === 'room_full') {
        t.same([err.code, err.message, err.data.capacity], [1, 'the room is full', 10], 'its code, message and typed data')
      } else {
        t.fail('not narrowed to room_full')
      }
      const invalid = await client.call('join', { room: 5 } as never).catch((e: unknown) => e) as RemoteError
      t.match(invalid, { name: 'RemoteError', code: -32602, message: /\/room/ }, 'a standard error is a RemoteError too')
      t.equal(client.state, 'open', 'still open')
    })

    t.test('a timeout and an abort reject and send the cancellation to the handler', async (t) => {
      const route = await startRoute(t)
      const client = connect(chat, route.server.url('/chat'), { WebSocket: WebSocket as WebSocketConstructor })
      t.teardown(() => client.close())
      await waitState(client, 'open')
      await t.rejects(client.call('wait', { ms: 5000 }, { timeout: 50 }), TimeoutError)
      await until(() => route.aborts.length === 1, 2000, 'the cancellation')
      const controller = new AbortController()
      const aborted = client.call('wait', { ms: 5000 }, { signal: controller.signal })
      await until(() => route.calls.wait === 2, 2000, 'the second call')
      controller.abort()
      await t.rejects(aborted, AbortError)
      await until(() => route.aborts.length === 2, 2000, 'the second cancellation')
      t.same(route.aborts, ['Request cancelled', 'Request cancelled'], 'both reached the handler\'s signal')
      await t.rejects(client.call('wait', { ms: 1 }, { signal: controller.signal }), AbortError, 'an aborted signal rejects at once')
      t.same(await client.call('wait', { ms: 1 }), 'waited', 'the connection goes on')
    })

    t.test('a call made while reconnecting waits in the queue; one in flight when the link drops is never sent again', async (t) => {
      const route = await startRoute(t)
      const client = connect(chat, route.server.url('/chat'), {
        WebSocket: WebSocket as WebSocketConstructor, reconnect: { initialDelay: 50, maxDelay: 50 }
      })
      t.teardown(() => client.close())
      await waitState(client, 'open')
      const inFlight = client.call('wait', { ms: 5000 })
      await until(() => route.calls.wait === 1, 2000, 'the handler')
      route.sockets[0].raw.terminate()
      await t.rejects(inFlight, ConnectionClosedError, 'lost with its connection')
      t.equal(client.state, 'reconnecting')
      const queued = client.call('join', { room: 'later' })
      // A queued call that gives up before the link is back is never sent.
      await t.rejects(client.call('join', { room: 'never' }, { timeout: 1 }), TimeoutError)
      t.same(await queued, { members: ['ann', 'later'] }, 'sent once reconnected')
      await sleep(100)
      t.equal(route.calls.wait, 1, 'the lost call ran once and was not sent again')
      t.equal(route.calls.join, 1, 'the queued call that timed out never went out')
    })

    t.test('client.handle() answers socket.call(); no handler is -32601; a throw is -32603; a RemoteError keeps its code', async (t) => {
      const route = await startRoute(t)
      const client = connect(chat, route.server.url('/chat'), { WebSocket: WebSocket as WebSocketConstructor })
      t.teardown(() => client.close())
      const signals: AbortSignal[] = []
      client.handle('confirm', async ({ question }) => {
        if (question === 'boom') throw new Error('client secret')
        if (question === 'no') throw new RemoteError(7, 'declined', { why: 'no' })
        return question === 'yes'
      })
      const off = client.handle('slow', (_params, { signal }) => {
        signals.push(signal)
        return new Promise<string>((resolve) => signal.addEventListener('abort', () => resolve('aborted')))
      })
      await waitState(client, 'open')
      const socket = route.sockets[0]
      t.equal(await socket.call('confirm', { question: 'yes' }), true)
      t.equal(await socket.call('confirm', { question: 'maybe' }), false)
      await t.rejects(socket.call('confirm', { question: 'boom' }), { name: 'RemoteError', code: -32603, message: 'Internal error' }, 'nothing of the throw leaks')
      await t.rejects(socket.call('confirm', { question: 'no' }), { code: 7, message: 'declined', data: { why: 'no' } })
      await t.rejects(socket.call('missing', undefined as never), { name: 'RemoteError', code: -32601 }, 'a method the client does not handle')
      await t.rejects(socket.call('slow', undefined as never, { timeout: 50 }), { code: 'FST_WS_REQUEST_TIMEOUT' })
      await until(() => signals[0]?.aborted === true, 2000, 'the server\'s cancellation')
      t.equal((signals[0].reason as Error).message, 'Request cancelled')
      off()
      await t.rejects(socket.call('slow', undefined as never), { code: -32601 }, 'a removed handler')
      client.handle('slow', (_params, { signal }) => {
        signals.push(signal)
        return new Promise<string>(() => {})
      })
      const lost = socket.call('slow', undefined as never)
      await until(() => signals.length === 2, 2000, 'the second call')
      socket.raw.terminate()
      await t.rejects(lost, { code: 'FST_WS_CLOSED' })
      await until(() => signals[1].aborted, 2000, 'the client\'s abort')
      t.equal((signals[1].reason as Error).message, 'The connection closed', 'a lost connection aborts what the client was handling')
    })

    t.test('ids differ between two clients of one process', async (t) => {
      const route = await startRoute(t)
      const a = connect(chat, route.server.url('/chat'), { WebSocket: WebSocket as WebSocketConstructor })
      const b = connect(chat, route.server.url('/chat'), { WebSocket: WebSocket as WebSocketConstructor })
      t.teardown(() => { a.close(); b.close() })
      for (let i = 0; i < 3; i++) {
        await a.call('join', { room: 'a' })
        await b.call('join', { room: 'b' })
      }
      t.equal(new Set(route.ids).size, 6, `six calls, six ids (${route.ids.join(', ')})`)
    })

    t.test('a closed client rejects a call with ConnectionClosedError', async (t) => {
      const route = await startRoute(t)
      const client = connect(chat, route.server.url('/chat'), { WebSocket: WebSocket as WebSocketConstructor })
      await waitState(client, 'open')
      const pending = client.call('wait', { ms: 5000 })
      client.close()
      await t.rejects(pending, ConnectionClosedError)
      await t.rejects(client.call('count', undefined), ConnectionClosedError)
    })
  })
}

t.test('the server cancels a call the client answers late: the late answer is dropped', async (t) => {
  const route = await startRoute(t)
  const client = connect(chat, route.server.url('/chat'), { WebSocket: implementations[0][1] })
  t.teardown(() => client.close())
  const answered = deferred<() => void>()
  client.handle('confirm', () => new Promise<boolean>((resolve) => answered.resolve(() => resolve(true))))
  await waitState(client, 'open')
  await t.rejects(route.sockets[0].call('confirm', { question: 'q' }, { timeout: 30 }), { code: 'FST_WS_REQUEST_TIMEOUT' })
  ;(await answered.promise)()
  await sleep(50)
  t.equal(await client.call('count', undefined), 1, 'the connection goes on')
  t.equal(route.server.logs.filter(line => line.msg === 'websocket answer to no pending call ignored').length, 1, 'the late answer was ignored')
})

t.test('validate: true checks call results and the params of the server\'s requests', async (t) => {
  const contract = {
    requests: { n: { result: Type.Integer() }, ok: { result: Type.Integer() } },
    clientRequests: { add: { params: Type.Object({ a: Type.Integer() }), result: Type.Integer() } }
  }
  const sockets: TypedWebSocket[] = []
  const server = await startServer(t, (app) => {
    // The server's side of the contract is looser: what it sends is only checked by the client.
    app.get('/loose', {
      websocket: {
        requests: { n: {}, ok: {} },
        clientRequests: { add: {} },
        handlers: { n: () => 'not an integer', ok: () => 1 }
      }
    }, (socket) => { sockets.push(socket) })
  })
  const client = connect(contract, server.url('/loose'), { WebSocket: implementations[0][1], validate: true })
  t.teardown(() => client.close())
  client.handle('add', ({ a }) => a + 1)
  t.equal(await client.call('ok'), 1)
  await t.rejects(client.call('n'), { name: 'InvalidServerMessageError', message: /the result of n does not match its schema/ })
  const call = (sockets[0].call as (method: string, params: unknown) => Promise<unknown>).bind(sockets[0])
  t.equal(await call('add', { a: 1 }), 2)
  await t.rejects(call('add', { a: 'one' }), { name: 'RemoteError', code: -32602, message: /Invalid params: \/a/ })
})
