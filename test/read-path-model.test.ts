// A model of the read path (fast-check, fixed seed): random sequences of messages whose hooks
// call the client, requests that are slow, call the client or get cancelled, heartbeats and
// answers that come late, on a connection kept at maxConcurrentRequests (2). The queue stays
// under maxPendingMessages here: past it reading pauses and a call's answer waits in TCP too
// (docs/limits.md, the read path; test/requests.test.ts covers the pause). After each run: every hook ran once, in order; every call the server
// made settled with the client's answer (none timed out); every request was answered exactly
// once, with its result or -32800 when it was cancelled; every heartbeat was answered; and the
// connection serves maxConcurrentRequests requests at once again (no slot was kept).
import t from 'tap'
import fc from 'fast-check'
import { Type } from '@sinclair/typebox'
import { startServer, connect, sleep, until } from './helpers/server'
import { RawPeer, type Envelope } from './helpers/jsonrpc'

const LIMIT = 2
const BASE = 1_000_000
const Msg = Type.Object({ type: Type.Literal('msg'), n: Type.Integer(), call: Type.Boolean(), delay: Type.Integer({ minimum: 0 }) })

type Action =
  | { kind: 'message', call: boolean, delay: number }
  | { kind: 'request', call: boolean, delay: number }
  | { kind: 'cancel', back: number }
  | { kind: 'heartbeat' }
  | { kind: 'pause', ms: number }

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ kind: fc.constant('message' as const), call: fc.boolean(), delay: fc.integer({ min: 0, max: 15 }) }),
  fc.record({ kind: fc.constant('request' as const), call: fc.boolean(), delay: fc.integer({ min: 0, max: 40 }) }),
  fc.record({ kind: fc.constant('cancel' as const), back: fc.integer({ min: 0, max: 4 }) }),
  fc.record({ kind: fc.constant('heartbeat' as const) }),
  fc.record({ kind: fc.constant('pause' as const), ms: fc.integer({ min: 0, max: 10 }) })
)

t.test('the read path under random load: hooks in order, calls answered, requests answered once, heartbeats answered, slots freed', async (t) => {
  // What each run's connection saw, by run: a late hook of an earlier run cannot blur the next.
  const runs = new Map<string, { hooks: number[], callOutcomes: string[] }>()
  const runOf = (socket: { request: { query: unknown } }): { hooks: number[], callOutcomes: string[] } => runs.get((socket.request.query as { run: string }).run) as { hooks: number[], callOutcomes: string[] }
  const barrier: Array<() => void> = []
  let run = 0
  const server = await startServer(t, (app) => {
    app.get('/model', {
      websocket: {
        inbound: Msg,
        heartbeat: true,
        maxConcurrentRequests: LIMIT,
        maxPendingMessages: 32,
        requestTimeout: 4000,
        clientRequests: { confirm: { params: Type.Object({ n: Type.Integer() }), result: Type.Integer() } },
        requests: { work: { params: Type.Object({ n: Type.Integer(), call: Type.Boolean(), delay: Type.Integer() }), result: Type.Integer() } },
        async message (socket, msg) {
          const { hooks, callOutcomes } = runOf(socket)
          hooks.push(msg.n)
          if (msg.call) {
            const got = await socket.call('confirm', { n: msg.n }).then(String, (err: Error) => err.message)
            callOutcomes.push(got === String(msg.n) ? 'ok' : got)
          }
          await sleep(msg.delay)
        },
        handlers: {
          async work (socket, { n, call, delay }, { signal }) {
            if (n >= BASE) {
              // The last requests of a run wait for each other: they finish only if all run at once.
              await new Promise<void>((resolve) => { barrier.push(resolve); if (barrier.length === LIMIT) barrier.splice(0).forEach(go => go()) })
              return n
            }
            if (call) {
              const got = await socket.call('confirm', { n }, { signal }).then(String, (err: Error) => err.message)
              if (!signal.aborted) runOf(socket).callOutcomes.push(got === String(n) ? 'ok' : got)
            }
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, delay)
              signal.addEventListener('abort', () => { clearTimeout(timer); resolve() })
            })
            return n
          }
        }
      }
    }, () => {})
  })

  await fc.assert(fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 24 }), async (actions) => {
    const hooks: number[] = []
    const callOutcomes: string[] = []
    runs.set(String(++run), { hooks, callOutcomes })
    const peer = new RawPeer(await connect(server.url(`/model?run=${run}`)))
    const texts = peer.texts
    // The client answers each server call after a few ms.
    peer.ws.on('message', (data: Buffer) => {
      const text = data.toString()
      if (text === '') return
      const msg = JSON.parse(text) as Envelope
      if (msg.method === 'confirm') {
        setTimeout(() => { peer.send({ jsonrpc: '2.0', id: msg.id, result: (msg.params as { n: number }).n }) }, Number(msg.id) % 5)
      }
    })
    const requests: number[] = []
    const cancelled = new Set<number>()
    const messages: number[] = []
    let heartbeats = 0
    let n = 0
    for (const a of actions) {
      if (a.kind === 'message') {
        messages.push(n)
        peer.send({ type: 'msg', n: n++, call: a.call, delay: a.delay })
      } else if (a.kind === 'request') {
        requests.push(n)
        peer.send({ jsonrpc: '2.0', id: n, method: 'work', params: { n: n++, call: a.call, delay: a.delay } })
      } else if (a.kind === 'cancel') {
        const target = requests[requests.length - 1 - a.back]
        if (target !== undefined) {
          cancelled.add(target)
          peer.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: target } })
        }
      } else if (a.kind === 'heartbeat') {
        heartbeats++
        peer.send('')
      } else {
        await sleep(a.ms)
      }
    }
    const answers = (): Envelope[] => peer.received.filter(msg => typeof msg.id === 'number' && !('method' in msg))
    await until(() => answers().length >= requests.length && hooks.length === messages.length, 8000, 'every answer and hook')
    // Whatever is still to come (a second answer would be a bug) has time to arrive.
    await sleep(30)
    const byId = new Map<number, Envelope[]>()
    for (const msg of answers()) byId.set(msg.id as number, [...(byId.get(msg.id as number) ?? []), msg])
    for (const id of requests) {
      const got = byId.get(id) ?? []
      if (got.length !== 1) throw new Error(`request ${id} answered ${got.length} times`)
      const answer = got[0]
      const ok = answer.result === id || (cancelled.has(id) && (answer.error as { code?: number } | undefined)?.code === -32800)
      if (!ok) throw new Error(`request ${id}: unexpected answer ${JSON.stringify(answer)}`)
    }
    if (byId.size !== requests.length) throw new Error('an answer to no request')
    if (hooks.join() !== messages.join()) throw new Error(`hooks ran ${hooks.join()} for messages ${messages.join()}`)
    if (callOutcomes.some(outcome => outcome !== 'ok')) throw new Error(`a server call failed: ${callOutcomes.join()}`)
    await until(() => texts.length >= heartbeats, 3000, 'every heartbeat answer')
    // No slot kept: LIMIT requests that wait for each other all run at once.
    for (let i = 0; i < LIMIT; i++) peer.send({ jsonrpc: '2.0', id: BASE + i, method: 'work', params: { n: BASE + i, call: false, delay: 0 } })
    await until(() => answers().filter(msg => (msg.id as number) >= BASE).length === LIMIT, 3000, 'the last requests, all running at once')
    peer.ws.close()
    await until(() => peer.ws.readyState === peer.ws.CLOSED, 3000, 'the close')
    return true
  }), { seed: 20261206, numRuns: 60, interruptAfterTimeLimit: 120_000 })
  t.pass('every run held')
})
