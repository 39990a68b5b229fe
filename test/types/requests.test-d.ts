// Type-level tests of requests: this file must compile, and each @ts-expect-error must be an error.
import Fastify from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import typedWebsocket, { RemoteError, type RemoteErrorOf } from 'fastify-typed-websocket'

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

export { server, narrowing }
