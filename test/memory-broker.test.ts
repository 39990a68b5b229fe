import t from 'tap'
import { MemoryBroker } from '../plugin/memory-broker'
import type { BrokerEntry } from '../plugin/broker'
import { sleep } from './helpers/server'

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
