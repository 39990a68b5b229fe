// Type-level test: the example of DESIGN.md Part 3, as a user writes it, compiles.
import Fastify, { type FastifyRequest } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import typedWebsocket, { type TypedWebSocket } from 'fastify-typed-websocket'
import { connect, type CallError } from 'fastify-typed-websocket/client'

declare function expectType<T> (value: T): void
declare const db: { history (room: string, before: number | undefined, options: { signal: AbortSignal }): Promise<Array<Static<typeof Said>>> }
declare function full (room: string): boolean
declare function members (room: string): Promise<string[]>
declare const signal: AbortSignal
declare const window: { confirm (question: string): boolean }

const ClientMsg = Type.Union([
  Type.Object({ type: Type.Literal('say'), text: Type.String({ maxLength: 500 }) }),
  Type.Object({ type: Type.Literal('typing') })
])
const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), from: Type.String(), text: Type.String() })
const ServerMsg = Type.Union([Said, Type.Object({ type: Type.Literal('typing'), from: Type.String() })])

export const chat = {
  inbound: ClientMsg,
  outbound: ServerMsg,
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

async function open (socket: TypedWebSocket<Static<typeof ServerMsg>, FastifyRequest, typeof chat.clientRequests>): Promise<void> {
  const ok = await socket.call('confirm', { question: 'Delete the room?' }, { timeout: 30_000 })
  expectType<boolean>(ok)
}

export async function server (): Promise<void> {
  const app = Fastify()
  await app.register(typedWebsocket)
  app.get('/chat', {
    websocket: {
      ...chat,
      handlers: {
        async history (_socket, params, { signal }) { return db.history(params.room, params.before, { signal }) },
        async join (socket, params) {
          if (full(params.room)) throw socket.requestError('room_full', { capacity: 10 }, 'the room is full')
          return { members: await members(params.room) }
        }
      }
    }
  }, open)
}

export async function client (): Promise<void> {
  const client = connect(chat, 'wss://example.com/chat')
  const said = await client.call('history', { room: 'lobby' }, { timeout: 5_000, signal })
  expectType<Array<Static<typeof Said>>>(said)
  client.handle('confirm', async ({ question }) => window.confirm(question))
  try {
    await client.call('join', { room: 'lobby' })
  } catch (err) {
    const e = err as CallError<typeof chat, 'join'>
    // @ts-expect-error not narrowed on name yet
    expectType<number>(e.data.capacity)
    if (e.name === 'room_full') expectType<number>(e.data.capacity)
  }
}
