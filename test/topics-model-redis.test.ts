// Topics on redisBroker against the reference model (test/helpers/topics-model.ts): two
// nodes (two apps, each with its own Redis connections) on one real redis-server, random
// sequences across both, races of identical messages published on both nodes with `except`,
// and a broker blip (Redis killed and restarted empty: refusals while it is down, 1012
// `missed messages` for the subscribers of the keys it lost, offsets from 1 again).
import t from 'tap'
import fc from 'fast-check'
import Redis from 'ioredis'
import { redisBroker } from '../plugin/redis'
import { startRedis } from './helpers/redis'
import { sleep } from './helpers/server'
import { TopicsModel, opArbitrary, runSettings, startModelNode, stats, type ModelNode } from './helpers/topics-model'

const { numRuns, seed } = runSettings(12, 8128)
// Generous for a loaded machine; each blip waits about this long twice.
const BROKER_TIMEOUT = 1500

t.test('topics on Redis, two nodes, follow the model', async (t) => {
  const redis = await startRedis(t)
  const admin = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 })
  admin.on('error', () => {})
  t.teardown(() => admin.disconnect())
  t.comment(`${numRuns} runs, seed ${seed} (FC_SEED=${seed} FC_RUNS=${numRuns} to replay)`)
  let runs = 0
  await fc.assert(fc.asyncProperty(
    fc.constantFrom(0, 3),
    fc.array(opArbitrary(2, true), { minLength: 1, maxLength: 25, size: 'max' }),
    async (history, ops) => {
      runs++
      const prefix = `model${runs}:`
      const clients: Redis[] = []
      const nodes: ModelNode[] = []
      let blipped = false
      try {
        for (let i = 0; i < 2; i++) {
          const client = new Redis(redis.port, '127.0.0.1', { lazyConnect: true })
          client.on('error', () => {})
          clients.push(client)
          nodes.push(await startModelNode(history, { broker: redisBroker({ client, prefix, brokerTimeout: BROKER_TIMEOUT }) }))
        }
        const model = new TopicsModel({
          nodes,
          // One blip per run: each costs a few brokerTimeouts.
          blip: async (whileDown) => {
            if (blipped) return false
            blipped = true
            await redis.kill()
            await whileDown()
            await redis.restart()
            // Back once each node answers again (its connections reconnect with ioredis's backoff).
            for (const node of nodes) {
              for (let attempt = 0; ; attempt++) {
                try {
                  await node.rooms.history('ghost1')
                  break
                } catch (err) {
                  if (attempt === 50) throw err
                  await sleep(100)
                }
              }
            }
            return true
          },
          async leftovers () {
            // Closing a socket unsubscribes it without waiting: the channels go shortly after.
            const channels = async (): Promise<string[]> => [
              ...await admin.call('PUBSUB', 'CHANNELS', `${prefix}*`) as string[],
              ...await admin.call('PUBSUB', 'SHARDCHANNELS', `${prefix}*`) as string[]
            ]
            let left = await channels()
            for (let i = 0; i < 100 && left.length > 0; i++) {
              await sleep(20)
              left = await channels()
            }
            if (left.length > 0) throw new Error(`channels still subscribed: ${left.join(', ')}`)
            const members = await admin.keys(`${prefix}*:p`)
            if (members.length > 0) throw new Error(`presence hashes left: ${members.join(', ')}`)
            const ghosts = await admin.keys(`${prefix}*ghost*`)
            if (ghosts.length > 0) throw new Error(`keys only asked about were created: ${ghosts.join(', ')}`)
          }
        }, history)
        try {
          await model.run(ops)
        } catch (err) {
          (err as Error).message += `\nhistory ${history}; steps:\n  ${model.log.join('\n  ')}`
          throw err
        } finally {
          model.destroy()
        }
      } finally {
        for (const node of nodes) await node.app.close()
        for (const client of clients) client.disconnect()
      }
    }), { numRuns, seed, interruptAfterTimeLimit: 240_000, markInterruptAsFailure: false })
  t.ok(runs >= 1, `${runs} runs`)
  t.comment(`exercised: ${JSON.stringify(stats)}`)
})
