// Type-level tests: this file must compile (tsc), and each @ts-expect-error must be an error.
import Fastify, { type FastifyRequest } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import typedWebsocket, { CloseCode, WebSocketClosedError, type TypedWebSocket } from 'fastify-typed-websocket'

const ClientMsg = Type.Union([
  Type.Object({ type: Type.Literal('say'), text: Type.String({ maxLength: 500 }) }),
  Type.Object({ type: Type.Literal('typing') })
])
const ServerMsg = Type.Object({ type: Type.Literal('said'), from: Type.String(), text: Type.String() })

declare function expectType<T> (value: T): void

async function main (): Promise<void> {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
  await app.register(typedWebsocket, { pingInterval: 30_000 })

  app.get('/rooms/:room', {
    schema: { params: Type.Object({ room: Type.String() }) },
    websocket: {
      inbound: ClientMsg,
      outbound: ServerMsg,
      async message (socket, msg) {
        expectType<Static<typeof ClientMsg>>(msg)
        expectType<string>(socket.request.params.room)
        // @ts-expect-error not narrowed yet: 'typing' has no text
        expectType<string>(msg.text)
        if (msg.type === 'say') {
          expectType<string>(msg.text)
          await socket.send({ type: 'said', from: socket.request.params.room, text: msg.text })
          // @ts-expect-error wrong tag
          await socket.send({ type: 'sad', from: 'a', text: msg.text })
        }
        await socket.send('raw text')
        await socket.send(Buffer.from('bytes'))
      },
      close (socket, code, reason) {
        expectType<number>(code)
        expectType<string>(reason)
        expectType<string>(socket.request.params.room)
      }
    }
  }, async function open (socket, request) {
    expectType<string>(request.params.room)
    // @ts-expect-error no such param
    expectType<string>(request.params.rom)
    expectType<typeof app | object>(this)
    socket.close(CloseCode.Normal, 'bye')
  })

  app.get('/raw', { websocket: { message (_socket, msg) { expectType<string | Buffer>(msg) } } }, function open (socket) {
    expectType<TypedWebSocket<unknown, FastifyRequest>>(socket as TypedWebSocket)
  })

  app.get('/push', { websocket: true }, function open (socket) {
    socket.send({ anything: true }).catch((err: unknown) => {
      if (err instanceof WebSocketClosedError) expectType<string>(err.code)
    })
  })

  app.route({
    method: 'GET',
    url: '/r',
    websocket: { inbound: ServerMsg, message (_socket, msg) { expectType<'said'>(msg.type) } },
    handler (socket) { expectType<boolean>(socket.isOpen) }
  })

  expectType<number>(app.websocketClients.size)
  const client = await app.injectWS('/push', { headers: { origin: 'http://x' } })
  client.close()
}
export { main }

// Operating options, and who closed.
{
  const app = Fastify()
  app.register(typedWebsocket, { maxConnections: 10_000, rateLimit: { messages: 20, interval: 1000, action: 'close' } })
  app.get('/ops', {
    websocket: {
      maxConnections: 100,
      rateLimit: { messages: 10, bytes: 4096, interval: 1000, action: 'pause' },
      close (socket, code, reason, details) {
        expectType<number>(code)
        expectType<string>(reason)
        expectType<'server' | 'client' | 'network'>(details.closedBy)
        expectType<number | undefined>(details.serverCode)
        expectType<number>(details.bytesIn + details.messagesOut + details.durationMs)
        expectType<'server' | 'client' | 'network' | undefined>(socket.closedBy)
        expectType<string | undefined>(socket.serverCloseReason)
      }
    }
  }, function open () {})
  // @ts-expect-error action is 'pause' or 'close'
  app.get('/bad', { websocket: { rateLimit: { messages: 1, interval: 1, action: 'drop' } } }, function open () {})
}
