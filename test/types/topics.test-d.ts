// Type-level tests of topics: this file must compile, and every expected-error directive must match an error.
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import typedWebsocket from 'fastify-typed-websocket'

declare function expectType<T> (value: T): void

const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), text: Type.String() })
const Other = Type.Object({ type: Type.Literal('other') })

export async function topics (): Promise<void> {
  const app = Fastify()
  await app.register(typedWebsocket)
  const rooms = app.websocketTopic('rooms', { message: Said, offsetField: 'id', presence: Type.Object({ name: Type.String() }) })
  await rooms.publish('k', { type: 'said', text: 'hi' })
  // @ts-expect-error the offset field is set by the topic
  await rooms.publish('k', { type: 'said', text: 'hi', id: 1, extra: true })
  // @ts-expect-error text must be a string
  await rooms.publish('k', { type: 'said', text: 1 })
  const entries = await rooms.history('k')
  expectType<number>(entries[0].message.id)
  const members = await rooms.presence('k')
  expectType<string>(members[0].name)

  app.get('/ok', { websocket: { outbound: Type.Union([Said, Other]) } }, async (socket) => {
    await rooms.subscribe(socket, 'k', { since: 1, presence: { name: 'ann' } })
  })
  app.get('/untyped', { websocket: true }, async (socket) => {
    await rooms.subscribe(socket, 'k')
  })
  app.get('/wrong', { websocket: { outbound: Other } }, async (socket) => {
    // @ts-expect-error this socket cannot send the topic's messages
    await rooms.subscribe(socket, 'k')
  })
}
