import t from 'tap'
import Fastify from 'fastify'
import { Type } from '@sinclair/typebox'
import WebSocket from 'ws'
import typedWebsocket from './helpers/plugin'
import { MemoryBroker } from '../plugin/memory-broker'
import type { BrokerEntry, BrokerMessage, BrokerTopic } from '../plugin/broker'
import { startServer, messages, closed, sleep } from './helpers/server'

const Note = Type.Object({ text: Type.String() })
const Id = Type.Object({ id: Type.Integer() })

/** The in-memory broker, with a history that fails and one delivery sent twice before subscribe resolves. */
class EagerBroker extends MemoryBroker {
  historyFails = false
  override async subscribe (topic: BrokerTopic, key: string): Promise<number> {
    const offset = await super.subscribe(topic, key)
    await super.publish(topic, key, { head: undefined, body: '{"text":"early"}' })
    return offset
  }

  override async history (topic: BrokerTopic, key: string, options: { since?: number, limit?: number }): Promise<BrokerEntry[]> {
    if (this.historyFails) throw new Error('history down')
    return super.history(topic, key, options)
  }

  override publish (topic: BrokerTopic, key: string, message: BrokerMessage): Promise<number> {
    if (message.body.includes('reject')) return Promise.reject(new Error('refused'))
    return super.publish(topic, key, message)
  }
}

t.test('bad options, keys and brokers get coded errors', async (t) => {
  const app = Fastify()
  app.register(typedWebsocket, { broker: {} as never })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_WS_INVALID_OPTION', message: /broker must implement start/ })
  const ok = Fastify()
  await ok.register(typedWebsocket)
  t.throws(() => ok.websocketTopic('', { message: Note }), { code: 'FST_WS_INVALID_OPTION' })
  t.throws(() => ok.websocketTopic('x', null as never), { code: 'FST_WS_INVALID_OPTION' })
  t.throws(() => ok.websocketTopic('x', { message: 1 as never }), { code: 'FST_WS_INVALID_OPTION' })
  t.throws(() => ok.websocketTopic('x', { message: Note, history: -1 }), { code: 'FST_WS_INVALID_OPTION', message: /history/ })
  t.throws(() => ok.websocketTopic('x', { message: Note, presence: 1 as never }), { code: 'FST_WS_INVALID_OPTION', message: /presence/ })
  t.throws(() => ok.websocketTopic('x', { message: { type: 'nope' } }), { code: 'FST_WS_INVALID_OPTION', message: /compile/ })
  const notes = ok.websocketTopic('notes', { message: Note })
  await ok.ready()
  await t.rejects(notes.history(3 as never), { code: 'FST_WS_INVALID_OPTION' })
  await t.rejects(notes.presence(''), { code: 'FST_WS_INVALID_OPTION' })
  await t.rejects(notes.subscribe({} as never, ''), { code: 'FST_WS_INVALID_OPTION' })
  t.equal(notes.subscribers('none').size, 0)
  await notes.unsubscribe({} as never, 'none')
  const empty = ok.websocketTopic('ids', { message: Id, offsetField: 'id', history: 2 })
  t.same(await empty.publish('k', {}), { offset: 1 })
  t.same(await empty.history('k'), [{ offset: 1, message: { id: 1 } }])
  await ok.close()
})

t.test('a topic used before the app is ready, or after it closed, says so and names the topic and the call', async (t) => {
  const app = Fastify()
  await app.register(typedWebsocket)
  const notes = app.websocketTopic('notes', { message: Note })
  const early = /^Topic "notes": (publish|history|presence)\(\) was called before the app was ready: topics work once "await app\.ready\(\)"/
  await t.rejects(notes.publish('k', { text: 'x' }), { code: 'FST_WS_TOPIC_NOT_READY', message: /publish\(\)/ })
  await t.rejects(notes.publish('k', { text: 'x' }), { message: early })
  await t.rejects(notes.history('k'), { code: 'FST_WS_TOPIC_NOT_READY', message: /history\(\) was called before/ })
  await t.rejects(notes.presence('k'), { code: 'FST_WS_TOPIC_NOT_READY', message: /presence\(\) was called before/ })
  await app.ready()
  t.same(await notes.publish('k', { text: 'x' }), { offset: 1 })
  await app.close()
  await t.rejects(notes.publish('k', { text: 'y' }), { code: 'FST_WS_TOPIC_NOT_READY', message: 'Topic "notes": publish() was called after the app was closed' })
})

t.test('subscribe: options checked, twice is once, early deliveries filtered, failing history, rejected publish', async (t) => {
  const broker = new EagerBroker()
  let notes = null as unknown as ReturnType<typeof declare>
  function declare (app: Parameters<Parameters<typeof startServer>[1]>[0]) {
    return app.websocketTopic('notes', { message: Note, history: 10 })
  }
  const server = await startServer(t, (app) => {
    notes = declare(app)
    app.get('/n', { websocket: true }, async (socket, request) => {
      const since = (request.query as { since?: string }).since
      await t.rejects(notes.subscribe(socket, 'k', { since: -1 }), { code: 'FST_WS_INVALID_OPTION' })
      await t.rejects(notes.subscribe(socket, 'k', { presence: {} as never }), { code: 'FST_WS_INVALID_PRESENCE' })
      const first = notes.subscribe(socket, 'k', { since: since === undefined ? undefined : Number(since) })
      const again = await notes.subscribe(socket, 'k')
      const result = await first
      await socket.send(JSON.stringify({ again, result }))
    })
  }, { plugin: { broker } })
  const a = new WebSocket(server.url('/n'))
  const [hello] = (await messages(a, 1)).map(m => JSON.parse(m as string))
  // The delivery that arrived before the broker's subscribe resolved counts in the offset.
  t.same(hello, { again: { offset: 1, recovered: false }, result: { offset: 1, recovered: false } })
  broker.historyFails = true
  await notes.publish('k', { text: 'one' })
  const b = new WebSocket(server.url('/n?since=0'))
  const [reply] = (await messages(b, 1)).map(m => JSON.parse(m as string))
  t.same(reply.result, { offset: 2, recovered: false })
  await t.rejects(notes.publish('k', { text: 'reject' }, { except: [...notes.subscribers('k')][0] }), /refused/)
  // lost: every subscriber is told to resynchronise.
  const gone = closed(a)
  await notes.unsubscribe([...notes.subscribers('k')][1], 'k')
  a.close()
  await gone
  b.close()
  await sleep(20)
  t.equal(notes.subscribers('k').size, 0)
})

t.test('a closed socket cannot subscribe; lost() closes subscribers with 1012', async (t) => {
  const broker = new MemoryBroker()
  let sink: { lost (topic: string, key: string, offset: number): void } | undefined
  const start = broker.start.bind(broker)
  broker.start = async (s) => { sink = s; return start(s) }
  let notes = null as unknown as { subscribe (s: unknown, k: string): Promise<unknown> }
  const server = await startServer(t, (app) => {
    notes = app.websocketTopic('notes', { message: Note }) as never
    app.get('/n', { websocket: true }, async (socket) => {
      await notes.subscribe(socket, 'k')
      await socket.send('in')
      socket.raw.once('close', () => {
        notes.subscribe(socket, 'k').then(() => t.fail('subscribed'), (err: { code: string }) => t.equal(err.code, 'FST_WS_CLOSED'))
      })
    })
  }, { plugin: { broker } })
  const a = new WebSocket(server.url('/n'))
  await messages(a, 1)
  const c = closed(a)
  sink?.lost('notes', 'k', 5)
  sink?.lost('notes', 'other', 5)
  sink?.lost('none', 'k', 5)
  t.same(await c, { code: 1012, reason: 'missed messages' })
  await sleep(30)
})

t.test('subscribe refuses a socket whose route cannot send the topic\'s messages, naming the topic and the route', async (t) => {
  const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), text: Type.String() })
  const Notice = Type.Object({ type: Type.Literal('notice'), text: Type.String() })
  const Odd = Type.Object({ at: Type.String({ format: 'date-time' }) })
  const answers: string[] = []
  const server = await startServer(t, (app) => {
    const rooms = app.websocketTopic('rooms', { message: Said, offsetField: 'id' })
    const odd = app.websocketTopic('odd', { message: Odd })
    const subscribe = async (socket: Parameters<typeof rooms.subscribe>[0], topic: { subscribe (s: never, k: string): Promise<unknown> }): Promise<void> => {
      try {
        await topic.subscribe(socket as never, 'lobby')
        answers.push('subscribed')
      } catch (err) {
        answers.push(`${(err as { code: string }).code}: ${(err as Error).message}`)
      }
      await socket.send('done')
    }
    // The mistake under test, hidden from TypeScript as a JavaScript user would make it.
    app.get('/notices', { websocket: { outbound: Notice } }, (socket) => subscribe(socket as never, rooms as never))
    app.get('/both', { websocket: { outbound: Type.Union([Said, Notice]) } }, (socket) => subscribe(socket as never, rooms as never))
    app.get('/any', { websocket: true }, (socket) => subscribe(socket as never, rooms as never))
    app.get('/unchecked', { websocket: { outbound: Notice, validateOutbound: false } }, (socket) => subscribe(socket as never, odd as never))
  })
  for (const path of ['/notices', '/notices', '/both', '/any', '/unchecked']) {
    const ws = new WebSocket(server.url(path))
    await messages(ws, 1)
    ws.close()
  }
  t.equal(answers.length, 5, answers.join(' | '))
  t.equal(answers[0], 'FST_WS_OUTBOUND_CANNOT_HOLD: Topic "rooms": the outbound schema of route "/notices" cannot hold the topic\'s messages ' +
    '(a message of the topic fails it: /type must be equal to constant); ' +
    'add the topic\'s message schema to the route\'s outbound, e.g. in a Type.Union')
  t.equal(answers[1], answers[0], 'the second socket of the route too')
  t.strictSame(answers.slice(2), ['subscribed', 'subscribed', 'subscribed'], 'a union that holds it, no outbound, and a topic without an example to check')
})
