// Type-level tests of the client: the contract object shared with the route types both
// directions. This file must compile, and every expected-error directive must match.
import Fastify from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import typedWebsocket from 'fastify-typed-websocket'
import { connect, type ClientState, type StateInfo, type InvalidServerMessageError } from 'fastify-typed-websocket/client'

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
declare function expectExact<A, B> (proof: Equals<A, B>): void
declare function use (...values: unknown[]): void

const ClientMsg = Type.Union([
  Type.Object({ type: Type.Literal('say'), text: Type.String() }),
  Type.Object({ type: Type.Literal('history'), id: Type.String() })
])
const Said = Type.Object({ type: Type.Literal('said'), from: Type.String(), text: Type.String() })
const History = Type.Object({ type: Type.Literal('history'), id: Type.String(), items: Type.Array(Type.String()) })
const ServerMsg = Type.Union([Said, History])
export const chat = { inbound: ClientMsg, outbound: ServerMsg }

async function sharedWithTheRoute (): Promise<void> {
  const app = Fastify().withTypeProvider<TypeBoxTypeProvider>()
  await app.register(typedWebsocket)
  app.get('/chat', {
    websocket: {
      ...chat,
      heartbeat: true,
      async message (socket, msg) {
        if (msg.type === 'say') await socket.send({ type: 'said', from: 'ann', text: msg.text })
      }
    }
  }, () => {})
}

function typedBothWays (): void {
  const client = connect(chat, 'ws://127.0.0.1/chat', { heartbeat: { interval: 10_000, timeout: 5000 } })
  client.send({ type: 'say', text: 'hi' })
  // @ts-expect-error a payload of the wrong shape
  client.send({ type: 'say', text: 1 })
  // @ts-expect-error a tag the inbound union does not have
  client.send({ type: 'sing', text: 'la' })

  client.on('said', (msg) => {
    expectExact<typeof msg, Static<typeof Said>>(true)
    const text: string = msg.text
    use(text)
  })
  // @ts-expect-error no outbound message has this tag
  client.on('sad', () => {})
  client.on('message', (msg) => {
    // @ts-expect-error not narrowed yet: only `said` has `from`
    use(msg.from)
    if (msg.type === 'said') use(msg.from)
  })
  client.on('state', (state, info) => {
    expectExact<typeof state, ClientState>(true)
    expectExact<typeof info, StateInfo>(true)
  })
  client.on('invalidMessage', (err) => { expectExact<typeof err, InvalidServerMessageError>(true) })

  // request() adds the id itself and resolves with an outbound message
  const reply = client.request({ type: 'history' }, { timeout: 5000 })
  expectExact<typeof reply, Promise<Static<typeof ServerMsg>>>(true)
  use(reply)
  // @ts-expect-error the wrong payload for a request
  use(client.request({ type: 'history', since: 1 }))

  const state: ClientState = client.state
  const rtt: number | undefined = client.rtt
  use(state, rtt)
}

function anotherTag (): void {
  const Out = Type.Union([
    Type.Object({ kind: Type.Literal('a'), n: Type.Number() }),
    Type.Object({ kind: Type.Literal('b'), s: Type.String() })
  ])
  const client = connect({ outbound: Out }, 'ws://127.0.0.1/x', { tag: 'kind' })
  client.on('b', (msg) => { expectExact<typeof msg.s, string>(true) })
  // @ts-expect-error `kind` is the tag now, and 'c' is none of its values
  client.on('c', () => {})
  // without inbound, anything JSON may be sent
  client.send({ anything: true })
}

use(sharedWithTheRoute, typedBothWays, anotherTag)
