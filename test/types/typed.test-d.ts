// Type-level tests of typed routes: this file must compile (tsc), and every
// expected-error directive below must match an error. Nothing here runs.
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { ErrorObject } from 'ajv'
import typedWebsocket, {
  fastifyTypedWebsocket, CloseCode, WebSocketClosedError,
  type InvalidMessageError, type TypedWebSocket, type WebSocketRouteOptions, type FastifyTypedWebsocketOptions
} from 'fastify-typed-websocket'

declare function expectType<T> (value: T): void
/** True only when A and B are the same type (not merely assignable, and not any). */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
declare function expectExact<A, B> (proof: Equals<A, B>): void

const Move = Type.Object({ type: Type.Literal('move'), x: Type.Integer(), y: Type.Integer() })
const Chat = Type.Object({ type: Type.Literal('chat'), text: Type.String() })
const ClientMsg = Type.Union([Move, Chat, Type.Object({ type: Type.Literal('leave') })])
const ServerMsg = Type.Union([
  Type.Object({ type: Type.Literal('moved'), x: Type.Integer(), y: Type.Integer() }),
  Type.Object({ type: Type.Literal('error'), reason: Type.String() })
])
type ClientMessage = Static<typeof ClientMsg>
type ServerMessage = Static<typeof ServerMsg>

async function typedRoutes (): Promise<void> {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
  await app.register(typedWebsocket, { pingInterval: 10_000, validateOutbound: true })

  app.get('/games/:game', {
    schema: {
      params: Type.Object({ game: Type.String() }),
      querystring: Type.Object({ seat: Type.Integer() })
    },
    websocket: {
      inbound: ClientMsg,
      outbound: ServerMsg,
      checkOrigin (origin, request) {
        expectType<string>(origin)
        expectType<string>(request.params.game)
        expectType<number>(request.query.seat)
        // @ts-expect-error the params schema has no "room"
        expectType<string>(request.params.room)
        return origin.endsWith('.example')
      },
      selectSubprotocol (offered, request) {
        expectExact<typeof offered, string[]>(true)
        expectType<string>(request.params.game)
        return offered[0]
      },
      async message (socket, msg) {
        expectExact<typeof msg, ClientMessage>(true)
        expectExact<typeof this, FastifyInstance>(true)
        expectType<ReadonlySet<TypedWebSocket>>(this.websocketClients)
        // @ts-expect-error not narrowed yet: 'leave' and 'chat' have no x
        expectType<number>(msg.x)
        switch (msg.type) {
          case 'move':
            expectExact<typeof msg, Static<typeof Move>>(true)
            await socket.send({ type: 'moved', x: msg.x, y: msg.y })
            break
          case 'chat':
            expectType<string>(msg.text)
            // @ts-expect-error a chat message has no x
            expectType<number>(msg.x)
            break
          default:
            expectExact<typeof msg, { type: 'leave' }>(true)
        }
        // @ts-expect-error no server message has the tag 'mov'
        await socket.send({ type: 'mov', x: 1, y: 2 })
        // @ts-expect-error 'moved' needs y
        await socket.send({ type: 'moved', x: 1 })
        // @ts-expect-error x is an integer (number), not a string
        await socket.send({ type: 'moved', x: '1', y: 2 })
        await socket.send({ type: 'error', reason: 'bad move' })
        await socket.send('text frame')
        await socket.send(Buffer.from('binary frame'))
        await socket.send(new Uint8Array(2))
        await socket.send('as binary', { binary: true })
        expectType<string>(socket.request.params.game)
        // @ts-expect-error the params schema has no "room"
        expectType<string>(socket.request.params.room)
      },
      invalidMessage (socket, err, raw) {
        expectExact<typeof this, FastifyInstance>(true)
        expectExact<typeof err, InvalidMessageError>(true)
        expectExact<typeof err.code, 'FST_WS_INVALID_MESSAGE'>(true)
        expectExact<typeof err.validation, ErrorObject[] | null>(true)
        expectExact<typeof raw, string>(true)
        return socket.send({ type: 'error', reason: err.message })
      },
      close (socket, code, reason) {
        expectExact<typeof this, FastifyInstance>(true)
        expectExact<typeof code, number>(true)
        expectExact<typeof reason, string>(true)
        expectType<number | undefined>(socket.closeCode)
      },
      ping (_socket, data) { expectExact<typeof data, Buffer>(true) },
      pong (_socket, data) { expectExact<typeof data, Buffer>(true) },
      error (socket, err) {
        expectExact<typeof err, unknown>(true)
        socket.close(CloseCode.InternalError, 'boom')
      }
    }
  }, async function open (socket, request) {
    expectExact<typeof this, FastifyInstance>(true)
    expectType<string>(request.params.game)
    expectType<number>(request.query.seat)
    // @ts-expect-error the params schema has no "gmae"
    expectType<string>(request.params.gmae)
    expectExact<typeof socket.request, typeof request>(true)
    expectType<string>(socket.protocol)
    expectType<boolean>(socket.isOpen)
    expectType<number>(socket.bufferedAmount)
    socket.ping('keepalive')
    const first: ServerMessage = { type: 'moved', x: 0, y: 0 }
    await socket.send(first)
    // @ts-expect-error only the outbound schema's objects can be sent
    await socket.send({ hello: 'world' })
  })

  // No inbound: a string for text, a Buffer for binary; not any.
  app.get('/raw', {
    websocket: {
      message (socket, msg) {
        expectExact<typeof msg, string | Buffer>(true)
        // @ts-expect-error msg is string | Buffer, not any
        const n: number = msg
        expectType<number>(n)
        if (typeof msg === 'string') expectType<string>(msg.toUpperCase())
        else expectType<Buffer>(msg)
        // no outbound: any JSON value goes
        return socket.send({ anything: [1, 'two', null] })
      }
    }
  }, function open () {})

  // binary: true adds Buffer to the inbound type.
  app.get('/binary', {
    websocket: {
      inbound: Move,
      binary: true,
      message (_socket, msg) {
        expectExact<typeof msg, Static<typeof Move> | Buffer>(true)
        // @ts-expect-error a Buffer has no x
        expectType<number>(msg.x)
        if (Buffer.isBuffer(msg)) expectType<Buffer>(msg)
        else expectType<number>(msg.x)
      }
    }
  }, function open () {})

  // Without binary, the inbound type has no Buffer.
  app.get('/text-only', {
    websocket: {
      inbound: Move,
      message (_socket, msg) {
        expectExact<typeof msg, Static<typeof Move>>(true)
        expectType<number>(msg.x)
      }
    }
  }, function open () {})

  // websocket: true (push-only): send takes anything.
  app.get('/push', { websocket: true }, async function open (socket, request) {
    expectExact<typeof this, FastifyInstance>(true)
    expectType<FastifyRequest>(request)
    await socket.send({ any: 'object' })
    await socket.send(42)
    await socket.send([1, 2, 3])
    await socket.send(null)
    try {
      await socket.send('x')
    } catch (err) {
      if (err instanceof WebSocketClosedError) expectType<string>(err.code)
    }
  })

  // app.route with websocket
  app.route({
    method: 'GET',
    url: '/route/:id',
    schema: { params: Type.Object({ id: Type.Integer() }) },
    websocket: {
      inbound: ClientMsg,
      outbound: ServerMsg,
      message (socket, msg) {
        expectExact<typeof this, FastifyInstance>(true)
        expectType<number>(socket.request.params.id)
        if (msg.type === 'chat') return socket.send({ type: 'error', reason: msg.text })
        // @ts-expect-error wrong tag sent
        return socket.send({ type: 'chat', text: 'not a server message' })
      }
    },
    handler (socket, request) {
      expectExact<typeof this, FastifyInstance>(true)
      expectType<number>(request.params.id)
      expectType<boolean>(socket.isOpen)
    }
  })

  app.route({
    method: ['GET', 'HEAD'],
    url: '/route-true',
    websocket: true,
    handler (socket) { return socket.send({ free: 'form' }) }
  })

  // @ts-expect-error a websocket route must be a GET route
  app.route({ method: 'POST', url: '/post', websocket: true, handler (socket: TypedWebSocket) { socket.close() } })

  // Plugin and route options are checked.
  // @ts-expect-error maxMessageSize is a number
  await app.register(typedWebsocket, { maxMessageSize: '10mb' })
  // @ts-expect-error checkOrigin false is not an option (leave it out for the same-host rule)
  await app.register(fastifyTypedWebsocket, { checkOrigin: false })
  await app.register(fastifyTypedWebsocket, { checkOrigin: ['https://a.example', /\.b\.example$/], compression: { threshold: 1024 } })
  const pluginOptions: FastifyTypedWebsocketOptions = { pingInterval: 0, subprotocols: ['v2', 'v1'] }
  expectType<FastifyTypedWebsocketOptions>(pluginOptions)

  // @ts-expect-error message receives (socket, msg), and msg is not a string here
  app.get('/bad-hook', {
    websocket: {
      inbound: Move,
      message (_socket, msg: string) { expectType<string>(msg) }
    }
  }, function open () {})

  // @ts-expect-error a route's websocket option has no "maxMesageSize"
  app.get('/typo', { websocket: { maxMesageSize: 10 } }, function open () {})

  const routeOptions: WebSocketRouteOptions<typeof Move> = {
    inbound: Move,
    message (_socket, msg) { expectType<number>(msg.y) }
  }
  expectType<WebSocketRouteOptions<typeof Move>>(routeOptions)
}
export { typedRoutes }
