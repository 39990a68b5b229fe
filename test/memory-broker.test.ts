import t from 'tap'
import { MemoryBroker } from '../plugin/memory-broker'
import type { BrokerEntry } from '../plugin/broker'
import { sleep, until } from './helpers/server'

const topic = { name: 't', history: 3, historyTtl: 40, presenceTtl: 1000 }

t.test('offsets, bounded history, delivery only while subscribed', async (t) => {
  const broker = new MemoryBroker()
  const got: Array<[string, BrokerEntry]> = []
  await broker.start({ deliver: (_t, key, entry) => got.push([key, entry]), lost: () => t.fail('nothing is lost') })
  t.equal(await broker.publish(topic, 'k', { head: undefined, body: '{}' }), 1)
  t.equal(await broker.subscribe(topic, 'k'), 1)
  for (let i = 0; i < 4; i++) await broker.publish(topic, 'k', { head: '{"id":', body: '}' })
  t.same(got.map(([, e]) => e), [2, 3, 4, 5].map(offset => ({ offset, data: `{"id":${offset}}` })))
  t.same((await broker.history(topic, 'k', {})).map(e => e.offset), [3, 4, 5])
  t.same((await broker.history(topic, 'k', { since: 3, limit: 1 })).map(e => e.offset), [4])
  t.same(await broker.history(topic, 'k', { limit: 0 }), [])
  await broker.unsubscribe(topic, 'k')
  await broker.publish(topic, 'k', { head: undefined, body: '{}' })
  t.equal(got.length, 4)
  await broker.close()
})

t.test('idle keys lose their history after historyTtl; keys without subscribers are dropped', async (t) => {
  const broker = new MemoryBroker()
  await broker.start({ deliver: () => {}, lost: () => {} })
  await broker.subscribe(topic, 'kept')
  await broker.publish(topic, 'kept', { head: undefined, body: '{}' })
  await broker.publish(topic, 'gone', { head: undefined, body: '{}' })
  await broker.publish({ ...topic, name: 'long', historyTtl: 60_000 }, 'k', { head: undefined, body: '{}' })
  await sleep(150)
  t.same(await broker.history(topic, 'kept', {}), [])
  t.equal(await broker.subscribe(topic, 'kept'), 1, 'a subscribed key keeps its offset')
  t.equal(await broker.subscribe(topic, 'gone'), 0, 'an idle key starts over')
  t.equal((await broker.history({ ...topic, name: 'long', historyTtl: 60_000 }, 'k', {})).length, 1)
  await broker.join(topic, 'p', 'a', '{"n":1}')
  await broker.join(topic, 'p', 'b', '{"n":2}')
  await broker.leave(topic, 'p', 'a')
  t.same(await broker.presence(topic, 'p'), ['{"n":2}'])
  await broker.close()
})

t.test('a topic without history forgets idle keys: 100,000 keys published once are all dropped', async (t) => {
  const broker = new MemoryBroker()
  await broker.start({ deliver: () => {}, lost: () => {} })
  const inbox = { name: 'inbox', history: 0, historyTtl: 40, presenceTtl: 1000 }
  for (let i = 0; i < 100_000; i++) await broker.publish(inbox, `user-${i}`, { head: undefined, body: '{}' })
  t.equal(broker.size, 100_000, 'held while within historyTtl')
  await broker.subscribe(inbox, 'watched')
  await broker.join(inbox, 'present', 'm', '{}')
  await until(() => broker.size === 2, 2000, 'idle keys swept')
  t.equal(broker.size, 2, 'only the subscribed key and the key with a member are left')
  await broker.unsubscribe(inbox, 'watched')
  await broker.leave(inbox, 'present', 'm')
  await until(() => broker.size === 0, 2000, 'released keys swept')
  t.equal(broker.size, 0, 'nothing is left once nobody holds a key')
  await broker.close()
})

t.test('unsubscribe, leave, history and presence on an unknown key create nothing', async (t) => {
  const broker = new MemoryBroker()
  await broker.start({ deliver: () => {}, lost: () => {} })
  await broker.unsubscribe(topic, 'a')
  await broker.leave(topic, 'b', 'member')
  t.same(await broker.history(topic, 'c', {}), [])
  t.same(await broker.history(topic, 'c', { since: 0 }), [])
  t.same(await broker.presence(topic, 'd'), [])
  t.equal(broker.size, 0)
  await broker.close()
})

t.test('a tagged publish hands its tag to the live delivery only', async (t) => {
  const broker = new MemoryBroker()
  const got: BrokerEntry[] = []
  await broker.start({ deliver: (_t, _key, entry) => got.push(entry), lost: () => {} })
  await broker.subscribe(topic, 'k')
  await broker.publish(topic, 'k', { head: undefined, body: '{}', tag: 'x1' })
  await broker.publish(topic, 'k', { head: undefined, body: '{}' })
  t.strictSame(got, [{ offset: 1, data: '{}', tag: 'x1' }, { offset: 2, data: '{}' }])
  t.strictSame(await broker.history(topic, 'k', {}), [{ offset: 1, data: '{}' }, { offset: 2, data: '{}' }])
  await broker.close()
})
