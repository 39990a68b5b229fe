// node:diagnostics_channel: a subscriber sees every event, under the documented names.
import t from 'tap'
import diagnostics from 'node:diagnostics_channel'
import { Type } from '@sinclair/typebox'
import { startServer, connect, closed, messages, until, sleep, addSlowReaderRoute, MiB } from './helpers/server'
import { publishChannel } from '../plugin/diagnostics'

type Event = Record<string, unknown>
const NAMES = ['open', 'close', 'message', 'publish', 'drop', 'invalid-message', 'rate-limit']

function subscribeAll (t: { teardown (fn: () => void): void }) {
  const events: Array<[string, Event]> = []
  for (const name of NAMES) {
    const fn = (message: unknown): void => { events.push([name, message as Event]) }
    diagnostics.subscribe(`fastify-typed-websocket:${name}`, fn)
    t.teardown(() => diagnostics.unsubscribe(`fastify-typed-websocket:${name}`, fn))
  }
  const hooks: Array<[string, string, Event]> = []
  const tracing = diagnostics.tracingChannel('fastify-typed-websocket:hook')
  const handlers = {
    start: (c: unknown) => { hooks.push(['start', (c as Event).hook as string, c as Event]) },
    end: (c: unknown) => { hooks.push(['end', (c as Event).hook as string, c as Event]) },
    asyncStart: (c: unknown) => { hooks.push(['asyncStart', (c as Event).hook as string, c as Event]) },
    asyncEnd: (c: unknown) => { hooks.push(['asyncEnd', (c as Event).hook as string, c as Event]) },
    error: (c: unknown) => { hooks.push(['error', (c as Event).hook as string, c as Event]) }
  }
  tracing.subscribe(handlers)
  t.teardown(() => tracing.unsubscribe(handlers))
  return { events, hooks }
}

t.test('every hook call is traced, and open, close, messages and invalid messages are published', async (t) => {
  const { events, hooks } = subscribeAll(t)
  const errors: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/all', {
      websocket: {
        inbound: Type.Object({ n: Type.Integer() }),
        message (socket, msg) {
          if (msg.n === 2) throw new Error('sync')
          if (msg.n === 3) return Promise.reject(new Error('async'))
          return socket.send({ echo: msg.n })
        },
        invalidMessage (socket) { socket.send('invalid').catch(() => {}) },
        ping () {},
        pong () {},
        error (_socket, err) { errors.push((err as Error).message) },
        async close () {}
      }
    }, async function open (socket) {
      await new Promise(resolve => setImmediate(resolve))
      socket.ping('p')
    })
  })
  const ws = await connect(server.url('/all'))
  const got = messages(ws, 2)
  ws.send(JSON.stringify({ n: 1 }))
  ws.send('nope')
  await until(() => hooks.some(h => h[1] === 'invalidMessage'), 5000, 'the invalid message')
  t.same(await got, ['{"echo":1}', 'invalid'])
  ws.send(JSON.stringify({ n: 2 }))
  ws.send(JSON.stringify({ n: 3 }))
  await until(() => errors.length === 2, 5000, 'both errors')
  ws.ping('c')
  await until(() => hooks.some(h => h[1] === 'ping'), 5000, 'the ping hook')
  const gone = closed(ws)
  ws.close(4000, 'bye')
  await gone
  await until(() => hooks.some(h => h[0] === 'asyncEnd' && h[1] === 'close'), 5000, 'the close hook')

  t.same(errors, ['sync', 'async'])
  const starts = hooks.filter(h => h[0] === 'start').map(h => h[1])
  t.same(starts.filter(h => h !== 'pong'), ['open', 'message', 'invalidMessage', 'message', 'error', 'message', 'error', 'ping', 'close'])
  t.ok(starts.includes('pong'), 'the pong of the server ping')
  t.equal(hooks.filter(h => h[0] === 'end').length, starts.length, 'every start has its end')
  t.same(hooks.filter(h => h[0] === 'error').map(h => (h[2].error as Error).message), ['sync', 'async'])
  t.same(hooks.filter(h => h[0] === 'asyncEnd').map(h => h[1]), ['open', 'message', 'message', 'close'])
  const [, , openCtx] = hooks.find(h => h[1] === 'open') as [string, string, Event]
  t.equal((openCtx.args as unknown[]).length, 1, 'open gets the request')
  const [, , closeCtx] = hooks.find(h => h[1] === 'close') as [string, string, Event]
  t.match(closeCtx.args, [4000, 'bye', { closedBy: 'client' }])

  const named = (name: string) => events.filter(e => e[0] === name).map(e => e[1])
  t.equal(named('open').length, 1)
  t.ok(named('open')[0].request !== undefined && named('open')[0].socket !== undefined)
  t.same(named('message').map(e => [e.direction, e.bytes, e.binary]), [
    ['in', 7, false], ['out', 10, false], ['in', 4, false], ['out', 7, false], ['in', 7, false], ['in', 7, false]
  ])
  t.match(named('invalid-message').map(e => [e.raw, (e.error as Error).message]), [['nope', /^invalid JSON/]])
  t.match(named('close'), [{ code: 4000, reason: 'bye', closedBy: 'client', messagesIn: 4, messagesOut: 2 }])
})

t.test('rate limits and drops are published', async (t) => {
  const { events } = subscribeAll(t)
  const server = await startServer(t, (app) => {
    app.get('/close', { websocket: { rateLimit: { messages: 1, interval: 10_000, action: 'close' }, message () {} } }, function open () {})
    app.get('/pause', { websocket: { rateLimit: { messages: 1, interval: 200, action: 'pause' }, message () {} } }, function open () {})
    addSlowReaderRoute(app, '/slow')
  })
  const a = await connect(server.url('/close'))
  const aGone = closed(a)
  a.send('1')
  a.send('2')
  t.same(await aGone, { code: 1008, reason: 'rate limit exceeded' })

  const b = await connect(server.url('/pause'))
  b.send('1')
  b.send('2')
  await until(() => events.some(e => e[0] === 'rate-limit' && e[1].action === 'pause'), 5000, 'the pause')
  b.close()

  const c = await connect(server.url('/slow'))
  c.pause()
  c.send('go')
  await until(() => events.some(e => e[0] === 'drop'), 10_000, 'the drop')
  c.terminate()
  await sleep(50)

  const limits = events.filter(e => e[0] === 'rate-limit').map(e => e[1])
  t.match(limits[0], { action: 'close', waitMs: 0 })
  t.ok((limits[1].waitMs as number) > 100 && (limits[1].waitMs as number) <= 200, `pause waits ${String(limits[1].waitMs)} ms`)
  const [drop] = events.filter(e => e[0] === 'drop').map(e => e[1])
  t.ok((drop.bufferedAmount as number) + (drop.messages as number) * 512 > MiB, 'the drop says how much was waiting')
  t.equal(publishChannel.name, 'fastify-typed-websocket:publish', 'the publish channel is there for topics')
})

t.test('a topic publish is published with its topic, key, offset and local subscribers', async (t) => {
  const { events } = subscribeAll(t)
  const Note = Type.Object({ type: Type.Literal('note'), text: Type.String() })
  let notes: { publish (key: string, message: { type: 'note', text: string }): Promise<{ offset: number }>, subscribers (key: string): ReadonlySet<unknown> } | undefined
  const server = await startServer(t, (app) => {
    const topic = app.websocketTopic('notes', { message: Note })
    notes = topic
    app.get('/notes', { websocket: { outbound: Note } }, async (socket) => {
      await topic.subscribe(socket, 'k')
    })
  })
  const ws = await connect(server.url('/notes'))
  const received = messages(ws, 1)
  await until(() => notes?.subscribers('k').size === 1, 5000, 'the subscription')
  t.same(await notes?.publish('k', { type: 'note', text: 'one' }), { offset: 1 })
  t.same(await notes?.publish('nobody', { type: 'note', text: 'two' }), { offset: 1 })
  t.same(await received, ['{"type":"note","text":"one"}'])
  const published = events.filter(([name]) => name === 'publish').map(([, e]) => e)
  t.same(published, [
    { topic: 'notes', key: 'k', offset: 1, subscribers: 1 },
    { topic: 'notes', key: 'nobody', offset: 1, subscribers: 0 }
  ])
  const out = events.filter(([name, e]) => name === 'message' && e.direction === 'out').map(([, e]) => [e.bytes, e.binary])
  t.same(out, [[Buffer.byteLength('{"type":"note","text":"one"}'), false]], 'the delivery is a message out, like a send')
  ws.close()
  await closed(ws)
})
