// Topics on redisBroker against the reference model (test/helpers/topics-model.ts): three
// nodes on one real redis-server — two apps in this process (each with its own Redis
// connections, driven fully) and one in a child process (its clients subscribe as they
// connect; it publishes on command) — random
// sequences across both, races of identical messages published on both nodes with `except`,
// and a broker blip (Redis killed and restarted empty: refusals while it is down, 1012
// `missed messages` for the subscribers of the keys it lost, offsets from 1 again).
import t, { type Test } from 'tap'
import { fork, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import fc from 'fast-check'
import Redis from 'ioredis'
import WebSocket from 'ws'
import type { TypedWebSocket } from 'fastify-typed-websocket'
import { redisBroker } from '../plugin/redis'
import { startRedis } from './helpers/redis'
import { sleep, until } from './helpers/server'
import { childEnv } from './helpers/child'
import { TopicsModel, opArbitrary, runSettings, startModelNode, stats, type ModelNode, type RemoteNode } from './helpers/topics-model'

const { numRuns, seed, path, interruptAfterTimeLimit } = runSettings(12, 8128, 240_000)
// Generous for a loaded machine; each blip waits about this long twice.
const BROKER_TIMEOUT = 1500

let asked = 0

/** A command to the child node, answered over IPC (bounded). */
function ask<T> (child: ChildProcess, message: Record<string, unknown>, ms = 20_000): Promise<T> {
  const id = ++asked
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('message', onMessage)
      reject(new Error(`no answer from the child node to ${String(message.cmd)} within ${ms} ms`))
    }, ms)
    function onMessage (answer: { id?: number, failed?: string }): void {
      if (answer.id !== id) return
      clearTimeout(timer)
      child.off('message', onMessage)
      if (answer.failed !== undefined) reject(new Error(`the child node failed ${String(message.cmd)}: ${answer.failed}`))
      else resolve(answer as T)
    }
    child.on('message', onMessage)
    child.send({ ...message, id })
  })
}

/** The child node, once it is ready for commands. */
async function startChild (t: Test): Promise<ChildProcess> {
  const loader = process.execArgv.filter(a => a.includes('@tapjs/typescript') || a === '--enable-source-maps')
  const child = fork(join(__dirname, 'fixtures', 'model-node.ts'), [], {
    execArgv: loader,
    env: childEnv(),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  t.teardown(() => { child.kill() })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the child node did not start')), 30_000)
    child.once('message', () => {
      clearTimeout(timer)
      resolve()
    })
    child.once('exit', (code) => reject(new Error(`the child node exited with ${String(code)}`)))
  })
  return child
}

t.test('topics on Redis, three nodes (one in another process), follow the model', { timeout: interruptAfterTimeLimit + 60_000 }, async (t) => {
  const redis = await startRedis(t)
  const child = await startChild(t)
  const admin = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 })
  admin.on('error', () => {})
  t.teardown(() => admin.disconnect())
  t.comment(`${numRuns} runs, seed ${seed} (FC_SEED=${seed} FC_RUNS=${numRuns} to replay)`)
  let runs = 0
  await fc.assert(fc.asyncProperty(
    fc.constantFrom(0, 3),
    fc.array(opArbitrary(2, true, true), { minLength: 1, maxLength: 25, size: 'max' }),
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
        const { port } = await ask<{ port: number }>(child, { cmd: 'start', redisPort: redis.port, prefix, history, brokerTimeout: BROKER_TIMEOUT })
        const remote: RemoteNode = {
          port,
          publish: async (key, text) => await ask<{ offset?: number, error?: string }>(child, { cmd: 'publish', key, text }),
          subscribers: async (key) => (await ask<{ count: number }>(child, { cmd: 'subscribers', key })).count
        }
        const model = new TopicsModel({
          nodes,
          remote,
          // One blip per run: each costs a few brokerTimeouts.
          blip: async (whileDown) => {
            if (blipped) return false
            blipped = true
            await redis.kill()
            await whileDown()
            await redis.restart()
            // Back once each node answers again (its connections reconnect with ioredis's backoff).
            for (let attempt = 0; ; attempt++) {
              const { error } = await ask<{ error?: string }>(child, { cmd: 'history', key: 'ghost1' })
              if (error === undefined) break
              if (attempt === 50) throw new Error(`the child node still answers ${error}`)
              await sleep(100)
            }
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
          async resubscribed (listening) {
            for (const [key, nodes] of listening) {
              let count = 0
              for (let attempt = 0; attempt < 200 && count !== nodes; attempt++) {
                if (attempt > 0) await sleep(50)
                const [, n] = await admin.call('PUBSUB', 'NUMSUB', `${prefix}5:rooms:${key}`) as [string, number]
                count = n
              }
              if (count !== nodes) throw new Error(`after the blip, ${count} nodes listen to ${key}, expected ${nodes}`)
            }
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
    }), { numRuns, seed, path, timeout: 30_000, interruptAfterTimeLimit, markInterruptAsFailure: false })
  t.ok(runs >= 1, `${runs} runs`)
  t.comment(`exercised: ${JSON.stringify(stats)}`)
})

t.test('a second subscriber on a node whose view of the key lags: since equal to the latest offset is recovered', async (t) => {
  const redis = await startRedis(t)
  const nodes: ModelNode[] = []
  for (let i = 0; i < 2; i++) {
    const client = new Redis(redis.port, '127.0.0.1', { lazyConnect: true })
    client.on('error', () => {})
    t.teardown(() => client.disconnect())
    const node = await startModelNode(3, { broker: redisBroker({ client, brokerTimeout: BROKER_TIMEOUT }) })
    t.teardown(() => node.app.close())
    nodes.push(node)
  }
  const open = async (): Promise<{ ws: WebSocket, socket: TypedWebSocket, got: number[] }> => {
    const before = nodes[1].accepted.length
    const ws = new WebSocket(`ws://127.0.0.1:${nodes[1].port}/c`)
    const got: number[] = []
    ws.on('message', (data) => got.push(JSON.parse(String(data)).id))
    await new Promise((resolve) => ws.once('open', resolve))
    await until(() => nodes[1].accepted.length > before, 5000, 'the server to accept')
    t.teardown(() => ws.terminate())
    return { ws, socket: nodes[1].accepted[before], got }
  }
  const first = await open()
  const second = await open()
  await nodes[1].rooms.subscribe(first.socket, 'k')
  // The client of `second` already holds message 1 (say, from the node it was on before).
  const { offset } = await nodes[0].rooms.publish('k', { type: 'said', key: 'k', text: 'one' })
  const result = await nodes[1].rooms.subscribe(second.socket, 'k', { since: offset })
  await until(() => first.got.length === 1, 5000, 'the message on node 1')
  await sleep(50)
  t.same(result, { offset: 1, recovered: true }, 'since is the latest offset: nothing to replay, recovered')
  t.same(second.got, [], 'and the message the client holds is not sent again')
})

t.test('except while another node publishes the same key: the publish resolves', async (t) => {
  const redis = await startRedis(t)
  const nodes: ModelNode[] = []
  for (let i = 0; i < 2; i++) {
    const client = new Redis(redis.port, '127.0.0.1', { lazyConnect: true })
    client.on('error', () => {})
    t.teardown(() => client.disconnect())
    const node = await startModelNode(0, { broker: redisBroker({ client, brokerTimeout: BROKER_TIMEOUT }) })
    t.teardown(() => node.app.close())
    nodes.push(node)
  }
  const ws = new WebSocket(`ws://127.0.0.1:${nodes[0].port}/c`)
  ws.on('error', () => {})
  t.teardown(() => ws.terminate())
  await new Promise((resolve) => ws.once('open', resolve))
  await until(() => nodes[0].accepted.length === 1, 5000, 'the server to accept')
  const [socket] = nodes[0].accepted
  await nodes[0].rooms.subscribe(socket, 'k')
  const message = { type: 'said' as const, key: 'k', text: 'same' }
  const failures: string[] = []
  // Bounded: the order of arrivals is the network's; a few dozen tries see it.
  for (let i = 0; i < 40 && failures.length === 0; i++) {
    const outcomes = await Promise.allSettled([
      nodes[0].rooms.publish('k', message, { except: socket }),
      nodes[1].rooms.publish('k', message)
    ])
    for (const outcome of outcomes) if (outcome.status === 'rejected') failures.push(`try ${i}: ${String(outcome.reason)}`)
  }
  t.same(failures, [], 'every publish resolved')
})
