// Type-level tests of requests: this file must compile, and each @ts-expect-error must be an error.
import Fastify from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import typedWebsocket, { RemoteError, type RemoteErrorOf } from 'fastify-typed-websocket'
import { connect, RemoteError as ClientRemoteError } from 'fastify-typed-websocket/client'

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
declare function expectExact<A, B> (proof: Equals<A, B>): void
declare function expectType<T> (value: T): void

const Said = Type.Object({ type: Type.Literal('said'), text: Type.String() })
const chat = {
  outbound: Said,
  requests: {
    history: {
      params: Type.Object({ room: Type.String(), before: Type.Optional(Type.Integer()) }),
      result: Type.Array(Said)
    },
    join: {
      params: Type.Object({ room: Type.String() }),
      result: Type.Object({ members: Type.Array(Type.String()) }),
      errors: { room_full: Type.Object({ capacity: Type.Integer() }) }
    }
  },
  clientRequests: {
    confirm: { params: Type.Object({ question: Type.String() }), result: Type.Boolean() }
  }
}

async function server (): Promise<void> {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
  await app.register(typedWebsocket, { maxConcurrentRequests: 16, requestTimeout: 5000 })

  app.get('/chat', {
    websocket: {
      ...chat,
      handlers: {
        async history (socket, params, { signal }) {
          expectExact<typeof params, { room: string, before?: number }>(true)
          expectExact<typeof signal, AbortSignal>(true)
          // @ts-expect-error history declares no app errors
          throw socket.requestError('room_full', { capacity: 1 })
        },
        async join (socket, params) {
          expectExact<typeof params.room, string>(true)
          if (params.room === 'full') throw socket.requestError('room_full', { capacity: 10 }, 'the room is full')
          // @ts-expect-error the data of room_full is { capacity: number }
          if (params.room === 'x') throw socket.requestError('room_full', { capacity: 'ten' })
          // @ts-expect-error no such app error
          if (params.room === 'y') throw socket.requestError('room_closed', {})
          const ok = await socket.call('confirm', { question: 'join?' }, { timeout: 1000 })
          expectType<boolean>(ok)
          return { members: ['ann'] }
        }
      }
    }
  }, async function open (socket) {
    const ok = await socket.call('confirm', { question: 'Delete the room?' })
    expectType<boolean>(ok)
    // @ts-expect-error not one of clientRequests
    await socket.call('confrim', { question: 'x' })
    // @ts-expect-error wrong params
    await socket.call('confirm', { question: 1 })
    try {
      await socket.call('confirm', { question: 'x' })
    } catch (err) {
      if (err instanceof RemoteError) expectExact<typeof err.code, number>(true)
    }
  })

  // Overloads report these at the call: each route below is wrong in one way only.
  // @ts-expect-error join returns members that are not strings
  app.get('/wrong-result', { websocket: { requests: chat.requests, handlers: { history: () => [], join: async () => ({ members: [1] }) } } }, () => {})
  // @ts-expect-error history's params have no `rooms`
  app.get('/wrong-params', { websocket: { requests: chat.requests, handlers: { history: (_s, p: { rooms: string }) => [{ type: 'said' as const, text: p.rooms }], join: () => ({ members: [] }) } } }, () => {})
  // @ts-expect-error no handler for join
  app.get('/missing-handler', { websocket: { requests: chat.requests, handlers: { history: () => [] } } }, () => {})
  // @ts-expect-error a handler for a method that is not declared
  app.get('/extra-handler', { websocket: { requests: chat.requests, handlers: { history: () => [], join: () => ({ members: [] }), leave: () => null } } }, () => {})
  // @ts-expect-error requests without handlers
  app.get('/no-handlers', { websocket: { requests: chat.requests } }, () => {})
  app.route({
    method: 'GET',
    url: '/route',
    websocket: { ...chat, handlers: { history: () => [], join: (_socket, { room }) => ({ members: [room] }) } },
    handler: async (socket) => { expectType<boolean>(await socket.call('confirm', { question: 'x' })) }
  })
  // @ts-expect-error app.route() checks the handlers too
  app.route({ method: 'GET', url: '/route-bad', websocket: { ...chat, handlers: { history: () => [] } }, handler: () => {} })
  // The same routes, right, compile.
  app.get('/right', { websocket: { requests: chat.requests, handlers: { history: () => [], join: async () => ({ members: ['ann'] }) } } }, () => {})

  app.get('/plain', { websocket: { outbound: Said } }, async (socket) => {
    // @ts-expect-error the route has no clientRequests
    await socket.call('confirm', { question: 'x' })
    await socket.send({ type: 'said', text: 'hi' })
  })
}

function narrowing (err: RemoteErrorOf<typeof chat.requests.join>): void {
  // @ts-expect-error data is unknown until narrowed on name
  expectExact<number, number>(err.data.capacity)
  if (err.name === 'room_full') expectExact<typeof err.data, Static<typeof chat.requests.join.errors.room_full>>(true)
}

async function client (): Promise<void> {
  const client = connect(chat, 'ws://127.0.0.1/chat')
  expectExact<Awaited<ReturnType<typeof client.call<'history'>>>, Array<Static<typeof Said>>>(true)
  expectType<Array<Static<typeof Said>>>(await client.call('history', { room: 'lobby' }, { timeout: 5000, signal: AbortSignal.timeout(100) }))
  expectExact<Awaited<ReturnType<typeof client.call<'join'>>>, { members: string[] }>(true)
  // @ts-expect-error no such method
  await client.call('leave', { room: 'lobby' })
  // @ts-expect-error wrong params
  await client.call('join', { rooms: 'lobby' })
  // @ts-expect-error the result is not a string
  const wrong: string = await client.call('join', { room: 'lobby' })
  expectType<unknown>(wrong)
  try {
    await client.call('join', { room: 'lobby' })
  } catch (err) {
    if (client.isRemoteError(err, 'join')) {
      expectExact<typeof err.code, number>(true)
      // @ts-expect-error data is unknown until narrowed on name
      expectType<number>(err.data.capacity)
      if (err.name === 'room_full') expectExact<typeof err.data.capacity, number>(true)
    }
    if (err instanceof ClientRemoteError) {
      // @ts-expect-error a bare RemoteError's data is unknown
      expectType<number>(err.data.capacity)
    }
  }
  client.handle('confirm', async ({ question }) => question.length > 0)
  client.handle('confirm', (params, { signal, id }) => {
    expectExact<typeof params, { question: string }>(true)
    expectExact<typeof id, string | number>(true)
    return !signal.aborted
  })
  // @ts-expect-error the server does not call this
  client.handle('history', () => [])
  // @ts-expect-error confirm answers a boolean
  client.handle('confirm', () => 'yes')
  // A method without params: they may be left out, but not given.
  expectType<unknown>(await connect({ requests: { count: { result: Type.Integer() } } }, 'ws://x').call('count'))
  // @ts-expect-error count takes no params
  await connect({ requests: { count: { result: Type.Integer() } } }, 'ws://x').call('count', { n: 1 })
  // A contract without requests: nothing to call.
  const plain = connect({ outbound: Said }, 'ws://127.0.0.1/plain')
  // @ts-expect-error no requests
  await plain.call('history', { room: 'lobby' })
}

export { server, narrowing, client }
