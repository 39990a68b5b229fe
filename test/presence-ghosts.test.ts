// plugin/topics.ts: a socket that unsubscribes or closes while its subscribe with `presence`
// waits on the broker leaves no member behind, in memory and on a real redis-server.
import t, { type Test } from 'tap'
import Redis from 'ioredis'
import { Type } from '@sinclair/typebox'
import type { FastifyInstance } from 'fastify'
import type { Broker, Topic } from 'fastify-typed-websocket'
import { redisBroker } from '../plugin/redis'
import { startRedis } from './helpers/redis'
import { startServer, connect, sleep, until } from './helpers/server'

const Said = Type.Object({ type: Type.Literal('said'), text: Type.String() })
const Member = Type.Object({ name: Type.String() })
type Rooms = Topic<{ type: 'said', text: string }, never, { name: string }>

async function ghostServer (t: Test, broker: Broker | undefined) {
  const setup = { rooms: undefined as unknown as Rooms, settled: 0 }
  const server = await startServer(t, (app: FastifyInstance) => {
    setup.rooms = app.websocketTopic('rooms', { message: Said, presence: Member, presenceTtl: 1000 })
    app.get('/room', { websocket: { outbound: Said } }, async (socket, request) => {
      const { room, name, then } = request.query as { room: string, name: string, then: 'unsubscribe' | 'close' | 'stay' }
      const subscribing = setup.rooms.subscribe(socket, room, { presence: { name } }).catch(() => {})
      if (then === 'unsubscribe') await setup.rooms.unsubscribe(socket, room)
      else if (then === 'close') socket.raw.terminate()
      await subscribing
      setup.settled++
    })
  }, broker === undefined ? {} : { plugin: { broker } })
  return { ...server, setup }
}

for (const kind of ['memory', 'redis'] as const) {
  t.test(`${kind}: a socket that unsubscribes or closes while its presence subscribe is under way leaves no ghost member`, async (t) => {
    let broker: Broker | undefined
    if (kind === 'redis') {
      const redis = await startRedis(t)
      const client = new Redis(redis.port, '127.0.0.1')
      client.on('error', () => {})
      t.teardown(() => client.disconnect())
      broker = redisBroker({ client })
    }
    const server = await ghostServer(t, broker)
    const { rooms } = server.setup
    await connect(server.url('/room?room=lobby&name=stays&then=stay'))
    await until(() => server.setup.settled === 1, 3000, 'the first subscribe')
    for (let i = 0; i < 5; i++) {
      await connect(server.url(`/room?room=lobby&name=flip${i}&then=unsubscribe`))
      await connect(server.url(`/room?room=lobby&name=gone${i}&then=close`)).catch(() => {})
      // A first subscribe of a key of its own: the broker is still subscribing it.
      await connect(server.url(`/room?room=fresh${i}&name=first${i}&then=close`)).catch(() => {})
    }
    await until(() => server.setup.settled === 16, 5000, 'every subscribe to settle')
    // Past presenceTtl: a ghost would still be listed; a lease that was never taken back expires only then.
    await sleep(kind === 'redis' ? 1500 : 50)
    t.same((await rooms.presence('lobby')).map(m => m.name), ['stays'], 'only the member still subscribed')
    for (let i = 0; i < 5; i++) t.same(await rooms.presence(`fresh${i}`), [], `fresh${i}: nobody`)
  })
}
