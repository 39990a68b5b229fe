// Type-level tests of client subscriptions: the contract's `subscriptions` types
// client.subscribe() and its messages; the route's entries take declared topics.
// This file must compile, and every expected-error directive must match.
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import typedWebsocket from 'fastify-typed-websocket'
import { connect, type MessageInfo, type ResetInfo, type SubscribeResult, type Subscription } from 'fastify-typed-websocket/client'

type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
declare function expectExact<A, B> (proof: Equals<A, B>): void
declare function use (...values: unknown[]): void

const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), text: Type.String() })
const Tick = Type.Number()
export const live = { subscriptions: { rooms: Said, prices: Tick } }

async function server (): Promise<void> {
  const app = Fastify()
  await app.register(typedWebsocket)
  const rooms = app.websocketTopic('rooms', { message: Said, offsetField: 'id', presence: Type.Object({ name: Type.String() }) })
  const prices = app.websocketTopic('prices', { message: Tick })
  app.get('/live', {
    websocket: {
      ...live,
      maxSubscriptions: 10,
      subscriptions: {
        rooms: { topic: rooms, authorize: (socket, key) => key !== 'staff' && socket.request.url !== '', presence: () => ({ name: 'ann' }) },
        prices: { topic: prices, authorize: async () => true }
      }
    }
  }, () => {})
  // @ts-expect-error an entry needs a topic
  app.get('/bad', {
    websocket: {
      subscriptions: { rooms: { authorize: () => true } }
    }
  }, () => {})
  // @ts-expect-error authorize answers a boolean
  app.get('/bad-authorize', {
    websocket: {
      subscriptions: { rooms: { topic: rooms, authorize: () => 'yes' } }
    }
  }, () => {})
}
use(server)

async function client (): Promise<void> {
  const c = connect(live, 'ws://localhost/live')
  const sub = c.subscribe('rooms', 'lobby')
  expectExact<typeof sub, Subscription<{ type: 'said', id: number, text: string }>>(true)
  sub.on('message', (msg, info) => {
    expectExact<typeof msg.text, string>(true)
    expectExact<typeof info, MessageInfo>(true)
  })
  sub.on('reset', (info) => { expectExact<typeof info, ResetInfo>(true) })
  expectExact<Awaited<typeof sub.ready>, SubscribeResult>(true)
  for await (const price of c.subscribe('prices', 'AAPL')) {
    expectExact<typeof price, number>(true)
    use(price)
  }
  // @ts-expect-error not a topic of the contract
  c.subscribe('nope', 'x')
  const members: unknown[] = await sub.presence()
  use(members)
  sub.unsubscribe()
}
use(client)
