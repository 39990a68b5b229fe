// redisBroker against a real redis-server: two or three brokers (nodes) on one
// Redis, each with a sink that records what the broker hands it.
import t from 'tap'
import { createHash } from 'node:crypto'
import Redis from 'ioredis'
import { redisBroker } from '../plugin/redis'
import { PUBLISH_SCRIPT } from '../plugin/redis-scripts'
import type { Broker, BrokerEntry, BrokerTopic } from '../plugin/broker'
import { startRedis, type RedisServer } from './helpers/redis'

interface Recorded { delivered: Array<{ topic: string, key: string } & BrokerEntry>, lost: Array<{ topic: string, key: string, offset: number }> }

interface Node { broker: Broker, sink: Recorded, client: Redis }

interface Test { teardown (fn: () => unknown): void }

interface NodeOptions { brokerTimeout?: number, prefix?: string, onDeliver?: (broker: Broker, entry: BrokerEntry) => void }

async function node (t: Test, redis: RedisServer, options: NodeOptions = {}): Promise<Node> {
  const client = new Redis(redis.port, '127.0.0.1', { lazyConnect: true })
  client.on('error', () => {})
  const broker = redisBroker({ client, brokerTimeout: options.brokerTimeout, prefix: options.prefix })
  const sink: Recorded = { delivered: [], lost: [] }
  await broker.start({
    deliver: (topic, key, entry) => {
      sink.delivered.push({ topic, key, ...entry })
      options.onDeliver?.(broker, entry)
    },
    lost: (topic, key, offset) => sink.lost.push({ topic, key, offset })
  })
  t.teardown(async () => {
    await broker.close()
    client.disconnect()
  })
  return { broker, sink, client }
}

const rooms: BrokerTopic = { name: 'rooms', history: 100, historyTtl: 60_000, presenceTtl: 600 }
const bare: BrokerTopic = { name: 'bare', history: 0, historyTtl: 60_000, presenceTtl: 600 }

/** Resolves once `check` holds, polling every 10 ms; fails after `ms`. */
async function until (check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met within ' + ms + ' ms')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

const said = (text: string): { head: string, body: string } => ({ head: '{"id":', body: `,"text":"${text}"}` })

t.test('options are checked', async (t) => {
  t.throws(() => redisBroker(undefined as never), { code: 'FST_WS_INVALID_OPTION' })
  t.throws(() => redisBroker({ client: {} as never }), { code: 'FST_WS_INVALID_OPTION', message: /client must be an ioredis client/ })
  const client = new Redis({ lazyConnect: true })
  t.throws(() => redisBroker({ client, prefix: 1 as never }), { code: 'FST_WS_INVALID_OPTION', message: /prefix/ })
  t.throws(() => redisBroker({ client, brokerTimeout: 0 }), { code: 'FST_WS_INVALID_OPTION', message: /brokerTimeout/ })
  t.throws(() => redisBroker({ client, brokerTimeout: 1.5 }), { code: 'FST_WS_INVALID_OPTION' })
  t.throws(() => redisBroker({ client, brokerTimeout: '5' as never }), { code: 'FST_WS_INVALID_OPTION' })
  client.disconnect()
})

t.test('one order per key on every node; only subscribed keys arrive', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis)
  const b = await node(t, redis)
  t.equal(await a.broker.subscribe(rooms, 'lobby'), 0)
  t.equal(await b.broker.subscribe(rooms, 'lobby'), 0)
  const offsets = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).broker.publish(rooms, 'lobby', said(`m${i}`))))
  t.same([...offsets].sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => i + 1))
  await b.broker.publish(rooms, 'other', { head: undefined, body: '{"text":"elsewhere"}' })
  await until(() => a.sink.delivered.length >= 40 && b.sink.delivered.length >= 40)
  for (const n of [a, b]) {
    t.same(n.sink.delivered.map((d) => d.offset), offsets.slice().sort((x, y) => x - y))
    for (const d of n.sink.delivered) t.match(d.data, new RegExp(`^\\{"id":${d.offset},"text":"m\\d+"\\}$`))
  }
  t.same(a.sink.delivered, b.sink.delivered, 'both nodes see the same messages in the same order')
  t.notOk(a.sink.delivered.some((d) => d.key === 'other'), 'a key without local subscribers never reaches the node')

  t.equal(await b.broker.subscribe(rooms, 'other'), 1, 'subscribe resolves with the latest offset')
  await a.broker.unsubscribe(rooms, 'lobby')
  await b.broker.publish(rooms, 'lobby', said('after'))
  await b.broker.publish(rooms, 'other', { head: undefined, body: '{"text":"two"}' })
  await until(() => b.sink.delivered.length === 42)
  t.same(b.sink.delivered.slice(40).map((d) => [d.key, d.offset, d.data]), [['lobby', 41, '{"id":41,"text":"after"}'], ['other', 2, '{"text":"two"}']])
  t.equal(a.sink.delivered.length, 40, 'nothing after unsubscribe')
})

t.test('history: since, limit, newest, bounded, none', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, { prefix: 'app:' })
  const small: BrokerTopic = { ...rooms, history: 5 }
  for (let i = 1; i <= 8; i++) await a.broker.publish(small, 'k', said(`m${i}`))
  await a.broker.publish(bare, 'k', said('x'))
  t.same((await a.broker.history(small, 'k', {})).map((e) => e.offset), [4, 5, 6, 7, 8], 'the last 5 only')
  t.same((await a.broker.history(small, 'k', { limit: 2 })).map((e) => e.offset), [7, 8], 'the newest 2')
  t.same((await a.broker.history(small, 'k', { since: 5 })), [
    { offset: 6, data: '{"id":6,"text":"m6"}' }, { offset: 7, data: '{"id":7,"text":"m7"}' }, { offset: 8, data: '{"id":8,"text":"m8"}' }])
  t.same((await a.broker.history(small, 'k', { since: 5, limit: 1 })).map((e) => e.offset), [6], 'the oldest after since')
  t.same(await a.broker.history(small, 'k', { limit: 0 }), [])
  t.same(await a.broker.history(bare, 'k', {}), [], 'history 0 keeps nothing')
  t.same(await a.broker.history(small, 'nothing', { since: 0 }), [])
  const keys = await a.client.keys('*')
  t.ok(keys.length > 0 && keys.every((k) => k.startsWith('app:')), 'every key carries the prefix')
  await a.client.quit()
})

t.test('presence: every member of every live node; a dead node leaves within presenceTtl', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis)
  const b = await node(t, redis)
  const c = await node(t, redis)
  await a.broker.join(rooms, 'lobby', 'a1', '{"name":"ann"}')
  await b.broker.join(rooms, 'lobby', 'b1', '{"name":"bob"}')
  await b.broker.join(rooms, 'lobby', 'b2', '{"name":"bea"}')
  await c.broker.join(rooms, 'lobby', 'c1', '{"name":"cid"}')
  await c.broker.join(rooms, 'lobby', 'c1', '{"name":"cyd"}')
  t.same((await a.broker.presence(rooms, 'lobby')).sort(), ['{"name":"ann"}', '{"name":"bea"}', '{"name":"bob"}', '{"name":"cyd"}'])
  await b.broker.leave(rooms, 'lobby', 'b2')
  t.same((await c.broker.presence(rooms, 'lobby')).sort(), ['{"name":"ann"}', '{"name":"bob"}', '{"name":"cyd"}'])
  t.same(await a.broker.presence(rooms, 'empty'), [])
  // c stops refreshing its lease without leaving, as a node that died would.
  await c.broker.close()
  const died = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 900 - (Date.now() - died)))
  t.same((await a.broker.presence(rooms, 'lobby')).sort(), ['{"name":"ann"}', '{"name":"bob"}'], 'the dead node\'s member is gone')
  t.same(Object.keys(await a.client.hgetall('fastify-typed-websocket:5:rooms:lobby:p')).sort(), ['a1', 'b1'], 'and removed from Redis')
  t.ok(await a.client.exists('fastify-typed-websocket:5:rooms:lobby:p'), 'live leases were refreshed meanwhile')
})

t.test('Redis killed and restarted empty', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, { brokerTimeout: 500 })
  const b = await node(t, redis, { brokerTimeout: 500 })
  await a.broker.subscribe(rooms, 'lobby')
  await b.broker.join(rooms, 'lobby', 'b1', '"bob"')
  await b.broker.join(rooms, 'hall', 'b1', '"bob in the hall"')
  for (let i = 0; i < 3; i++) await b.broker.publish(rooms, 'lobby', said(`m${i}`))
  await until(() => a.sink.delivered.length === 3)
  await redis.kill()

  const started = Date.now()
  await t.rejects(b.broker.publish(rooms, 'lobby', said('lost')), { code: 'FST_WS_BROKER_UNAVAILABLE', statusCode: 503 })
  t.ok(Date.now() - started < 900, 'the publish rejected within brokerTimeout')
  await t.rejects(a.broker.subscribe(rooms, 'down'), { code: 'FST_WS_BROKER_UNAVAILABLE' })
  await t.rejects(a.broker.history(rooms, 'lobby', {}), { code: 'FST_WS_BROKER_UNAVAILABLE' })
  await t.resolves(a.broker.unsubscribe(rooms, 'never'), 'unsubscribe never fails')
  // Once b knows Redis is gone, its commands wait for the connection to come back (bounded)...
  let waited = ''
  for (let attempt = 0; attempt < 40 && !/no answer/.test(waited); attempt++) {
    waited = await b.broker.history(rooms, 'lobby', {}).then(() => 'answered', (err: Error) => err.message)
    if (!/no answer/.test(waited)) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.match(waited, /no answer from Redis within 500 ms/)
  // ...and many of them waiting at once is what an outage looks like: no leak warning for it.
  const warnings: string[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning.name) }
  process.on('warning', onWarning)
  const waiting = await Promise.allSettled(Array.from({ length: 20 }, () => b.broker.publish(rooms, 'lobby', said('lost'))))
  await new Promise((resolve) => setImmediate(resolve))
  process.off('warning', onWarning)
  t.ok(waiting.every((r) => r.status === 'rejected'), 'every publish during the outage rejects')
  t.same(warnings, [], 'no MaxListenersExceededWarning')

  await redis.restart()
  await until(() => a.sink.lost.length === 1, 8000)
  t.same(a.sink.lost, [{ topic: 'rooms', key: 'lobby', offset: 0 }], 'the key\'s state was lost: its subscribers must go')
  // Reported only once both connections are back: the sockets it closes can resubscribe at once.
  t.equal(await a.broker.subscribe(rooms, 'again'), 0, 'a subscribe right after the loss is reported succeeds')
  let offset = 0
  for (let attempt = 0; attempt < 80 && offset === 0; attempt++) {
    offset = await b.broker.publish(rooms, 'lobby', said('back')).catch(() => 0)
    if (offset === 0) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  t.equal(offset, 1, 'publishing works again, offsets start again after the loss')
  // The subscriber connection may come back after the command connection (ioredis backs off up to 2 s).
  await until(() => a.sink.delivered.length === 4, 10_000)
  t.equal(a.sink.delivered[3].data, '{"id":1,"text":"back"}')
  t.notOk(a.sink.delivered.some((d) => d.data.includes('lost')), 'a rejected publish is never delivered')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(await a.broker.presence(rooms, 'lobby'), ['"bob"'], 'members come back after Redis restarted empty')
  t.same(await a.broker.presence(rooms, 'hall'), ['"bob in the hall"'], 'one socket can be a member of several keys')
})

t.test('a subscriber connection that drops catches up from history, or reports the loss', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis)
  const b = await node(t, redis)
  const admin = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => admin.disconnect())
  await a.broker.subscribe(rooms, 'kept')
  await a.broker.subscribe(bare, 'gone')
  await b.broker.publish(rooms, 'kept', said('k1'))
  await b.broker.publish(bare, 'gone', said('g1'))
  await until(() => a.sink.delivered.length === 2)
  await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  for (let i = 2; i <= 6; i++) {
    await b.broker.publish(rooms, 'kept', said(`k${i}`))
    await b.broker.publish(bare, 'gone', said(`g${i}`))
  }
  await until(() => a.sink.delivered.filter((d) => d.topic === 'rooms').length === 6 && a.sink.lost.length === 1, 8000)
  t.same(a.sink.delivered.filter((d) => d.topic === 'rooms').map((d) => d.data), [1, 2, 3, 4, 5, 6].map((i) => `{"id":${i},"text":"k${i}"}`), 'replayed from history, in order, once')
  t.same(a.sink.lost, [{ topic: 'bare', key: 'gone', offset: 6 }], 'no history: the gap is reported with the current offset')
  await b.broker.publish(bare, 'gone', said('g7'))
  await b.broker.publish(rooms, 'kept', said('k7'))
  await until(() => a.sink.delivered.length === 9)
  t.same(a.sink.delivered.slice(7).map((d) => d.offset), [7, 7], 'live delivery resumes after the reported offset')
})

const LOBBY = 'fastify-typed-websocket:5:rooms:lobby'
const PUBLISH_SHA = createHash('sha1').update(PUBLISH_SCRIPT).digest('hex')

t.test('messages on the channel that break the order: duplicates dropped, a foreign epoch ignored, a gap reported', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis)
  const admin = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => admin.disconnect())
  await a.broker.subscribe(rooms, 'lobby')
  await a.broker.publish(rooms, 'lobby', said('one'))
  await a.broker.publish(rooms, 'lobby', said('two'))
  await until(() => a.sink.delivered.length === 2)
  const epoch = await admin.hget(LOBBY + ':s', 'epoch')
  await admin.publish(LOBBY, `${epoch}:1:duplicate`)
  await admin.publish(LOBBY, 'other:3:foreign')
  await admin.publish(LOBBY, `${epoch}:9:ahead`)
  await until(() => a.sink.delivered.length === 3)
  t.same(a.sink.lost, [{ topic: 'rooms', key: 'lobby', offset: 8 }], 'a gap nothing fills is reported before the message after it')
  t.same(a.sink.delivered.map((d) => d.data), ['{"id":1,"text":"one"}', '{"id":2,"text":"two"}', 'ahead'])
})

t.test('nothing reaches the sink after unsubscribe, not even from a recovery under way', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, {
    onDeliver: (broker, entry) => { if (entry.data.includes('stop')) broker.unsubscribe(rooms, 'lobby').catch(() => {}) }
  })
  const admin = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => admin.disconnect())
  await a.broker.subscribe(rooms, 'lobby')
  await a.broker.subscribe(rooms, 'fresh')
  await a.broker.publish(rooms, 'lobby', said('one'))
  await until(() => a.sink.delivered.length === 1)
  const epoch = await admin.hget(LOBBY + ':s', 'epoch')
  await admin.multi().publish(LOBBY, `${epoch}:2:stop`).publish(LOBBY, `${epoch}:3:after`).exec()
  await until(() => a.sink.delivered.length === 2)

  await a.broker.subscribe(rooms, 'lobby')
  await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
  await a.broker.publish(rooms, 'lobby', said('stop'))
  await a.broker.publish(rooms, 'lobby', said('late'))
  await a.broker.publish(rooms, 'fresh', said('first'))
  await until(() => a.sink.delivered.length === 4, 8000)
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(a.sink.delivered.map((d) => `${d.key} ${d.data}`).sort(), [
    'fresh {"id":1,"text":"first"}', 'lobby stop', 'lobby {"id":1,"text":"one"}', 'lobby {"id":2,"text":"stop"}'
  ])
  t.notOk(a.sink.delivered.some((d) => d.data.includes('after') || d.data.includes('late')), 'nothing after the unsubscribe')
})

t.test('errors from Redis, a Redis that does not answer, a closed broker', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, { brokerTimeout: 200 })
  const admin = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => admin.disconnect())
  await a.broker.subscribe(rooms, 'lobby')
  await admin.set(LOBBY + ':s', 'not a hash')
  await t.rejects(a.broker.publish(rooms, 'lobby', said('x')), { code: 'FST_WS_BROKER_UNAVAILABLE', message: /publish: .*WRONGTYPE/ })
  await admin.call('CLIENT', 'PAUSE', '500', 'ALL')
  const started = Date.now()
  await t.rejects(a.broker.history(rooms, 'lobby', {}), { code: 'FST_WS_BROKER_UNAVAILABLE', message: /no answer from Redis within 200 ms/ })
  t.ok(Date.now() - started < 450)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.same(await a.broker.history(rooms, 'lobby', {}), [], 'the late answer to the timed-out call went nowhere')
  await admin.publish(LOBBY, 'e:5:gap')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(a.sink.delivered, [], 'a recovery that Redis refuses delivers nothing')
  await a.broker.close()
  await t.rejects(a.broker.publish(rooms, 'lobby', said('x')), { code: 'FST_WS_BROKER_UNAVAILABLE', message: /closed/ })
})

t.test('Redis forgot the publish script (restarted, or SCRIPT FLUSH): the next publish loads it again', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis)
  const admin = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => admin.disconnect())
  await a.broker.subscribe(rooms, 'lobby')
  t.equal(await a.broker.publish(rooms, 'lobby', said('one')), 1)
  const cached = async (): Promise<number> => ((await admin.call('SCRIPT', 'EXISTS', PUBLISH_SHA)) as number[])[0]
  t.equal(await cached(), 1, 'the script is cached in Redis after the first publish')
  await admin.call('SCRIPT', 'FLUSH')
  t.equal(await cached(), 0)
  t.equal(await a.broker.publish(rooms, 'lobby', said('two')), 2, 'the publish after the flush succeeds')
  t.equal(await cached(), 1, 'and the script is cached again')
  await until(() => a.sink.delivered.length === 2)
  t.same(a.sink.delivered.map((d) => d.data), ['{"id":1,"text":"one"}', '{"id":2,"text":"two"}'], 'both delivered, in order, once')
  // Another error of the cached script is not retried: it rejects as it is.
  await admin.set(LOBBY + ':s', 'not a hash')
  await t.rejects(a.broker.publish(rooms, 'lobby', said('three')), { code: 'FST_WS_BROKER_UNAVAILABLE', message: /publish: .*WRONGTYPE/ })
  t.equal(await admin.get(LOBBY + ':s'), 'not a hash', 'nothing was written')
})

t.test('a tagged publish carries its tag to every node\'s live delivery, and only there', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis)
  const b = await node(t, redis)
  await a.broker.subscribe(bare, 'k')
  await b.broker.subscribe(bare, 'k')
  await a.broker.publish(bare, 'k', { head: undefined, body: '{"text":"same"}', tag: 'node-a-1' })
  await b.broker.publish(bare, 'k', { head: undefined, body: '{"text":"same"}' })
  await a.broker.publish(rooms, 'k', { ...said('tagged'), tag: 'x1' })
  await until(() => a.sink.delivered.length === 2 && b.sink.delivered.length === 2)
  for (const sink of [a.sink, b.sink]) {
    t.strictSame(sink.delivered.map(({ offset, data, tag }) => ({ offset, data, tag })), [
      { offset: 1, data: '{"text":"same"}', tag: 'node-a-1' },
      { offset: 2, data: '{"text":"same"}', tag: undefined }
    ], 'the same text, told apart by the tag')
  }
  await a.broker.subscribe(rooms, 'k')
  await a.broker.publish(rooms, 'k', { ...said('tagged'), tag: 'x2' })
  await until(() => a.sink.delivered.length === 3)
  t.match(a.sink.delivered[2], { topic: 'rooms', offset: 2, data: '{"id":2,"text":"tagged"}', tag: 'x2' }, 'with an offset written into the text')
  t.strictSame((await a.broker.history(rooms, 'k', {})).map(e => Object.keys(e)), [['offset', 'data'], ['offset', 'data']], 'history keeps no tag')
})

t.test('latest: the key\'s offset at Redis, whatever this node has received', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis)
  const b = await node(t, redis)
  t.equal(await a.broker.latest?.(rooms, 'fresh'), 0, 'a key never published')
  await b.broker.publish(rooms, 'fresh', said('one'))
  await b.broker.publish(rooms, 'fresh', said('two'))
  t.equal(await a.broker.latest?.(rooms, 'fresh'), 2)
})

t.test('Redis restarts empty after a key\'s first messages were accepted but before any node got them: its subscribers hear lost', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, { brokerTimeout: 2000 })
  t.equal(await a.broker.subscribe(bare, 'first'), 0, 'subscribed before anything was published')
  // The key's first publish runs in Redis, but its message goes out on a channel nobody reads:
  // as when Redis dies between running the script and the message reaching the nodes.
  const admin = new Redis(redis.port, '127.0.0.1')
  const base = 'fastify-typed-websocket:4:bare:first'
  t.strictSame((await admin.call('EVAL', PUBLISH_SCRIPT, 2, base + ':s', base + ':h', 'nowhere', '0', '', '{}', 0, 60_000, 60_000, 'e', '') as [number, string])[0], 1)
  admin.disconnect()
  await redis.kill()
  await redis.restart()
  await until(() => a.sink.lost.length === 1, 15_000)
  t.match(a.sink.lost, [{ topic: 'bare', key: 'first' }], 'the message that never arrived is reported, not lost silently')
  t.same(a.sink.delivered, [])
})

t.test('after a key was reported lost on an emptied Redis, its new offsets are recovered from history like any gap', async (t) => {
  const redis = await startRedis(t)
  const a = await node(t, redis, { brokerTimeout: 2000 })
  await a.broker.subscribe(rooms, 'again')
  await redis.kill()
  await redis.restart()
  await until(() => a.sink.lost.length === 1, 15_000)
  // Offset 1 of the key's new life reaches no node; offset 2 does: a gap, filled from history.
  const admin = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => admin.disconnect())
  const base = 'fastify-typed-websocket:5:rooms:again'
  const { head, body } = said('unseen')
  await admin.call('EVAL', PUBLISH_SCRIPT, 2, base + ':s', base + ':h', 'nowhere', '1', head, body, 100, 60_000, 60_000, 'e2', '')
  await until(() => a.sink.lost.length === 1 && a.broker.publish !== undefined)
  let published = 0
  for (let i = 0; i < 50 && published === 0; i++) {
    published = await a.broker.publish(rooms, 'again', said('seen')).catch(async () => { await new Promise(resolve => setTimeout(resolve, 100)); return 0 })
  }
  t.equal(published, 2)
  await until(() => a.sink.delivered.length === 2, 10_000)
  t.same(a.sink.delivered.map(e => e.data), ['{"id":1,"text":"unseen"}', '{"id":2,"text":"seen"}'], 'both, in order, once')
  t.equal(a.sink.lost.length, 1, 'and no second loss')
})
