// Topics on the in-memory broker against a reference model: random sequences of subscribe
// (with and without `since`), unsubscribe, publish (with and without `except`), bursts,
// refused calls, closes and a slow reader; see test/helpers/topics-model.ts for the checks.
import t from 'tap'
import fc from 'fast-check'
import { MemoryBroker } from '../plugin/memory-broker'
import { INBOX_TTL, TopicsModel, opArbitrary, runSettings, startModelNode, stats } from './helpers/topics-model'
import { sleep } from './helpers/server'

const { numRuns, seed, path, interruptAfterTimeLimit } = runSettings(25, 20261203, 120_000)

t.test('topics on the in-memory broker follow the model', { timeout: interruptAfterTimeLimit + 60_000 }, async (t) => {
  t.comment(`${numRuns} runs, seed ${seed} (FC_SEED=${seed} FC_RUNS=${numRuns} to replay)`)
  let runs = 0
  await fc.assert(fc.asyncProperty(
    fc.constantFrom(0, 2, 5),
    fc.array(opArbitrary(1, false), { minLength: 1, maxLength: 30, size: 'max' }),
    async (history, ops) => {
      runs++
      const broker = new MemoryBroker()
      const node = await startModelNode(history, { broker })
      const model = new TopicsModel({
        nodes: [node],
        synchronous: true,
        async leftovers (touched, published) {
          // Inbox keys (history 0, historyTtl 200 ms) go once idle; room keys (historyTtl 10 min) stay while they hold an offset.
          const deadline = Date.now() + INBOX_TTL * 1.25 + 2000
          while (broker.size > touched.size && Date.now() < deadline) await sleep(20)
          const held = broker.size
          if (held > touched.size || held < published.size) {
            throw new Error(`the broker holds ${held} keys; expected between ${published.size} (published) and ${touched.size} (touched)`)
          }
        }
      }, history)
      try {
        await model.run(ops)
      } catch (err) {
        (err as Error).message += `\nhistory ${history}; steps:\n  ${model.log.join('\n  ')}`
        throw err
      } finally {
        model.destroy()
        await node.app.close()
      }
    }), { numRuns, seed, path, timeout: 30_000, interruptAfterTimeLimit, markInterruptAsFailure: false })
  t.ok(runs >= 1, `${runs} runs`)
  t.comment(`exercised: ${JSON.stringify(stats)}`)
})
