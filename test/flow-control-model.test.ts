// One connection's flow control against a model: random interleavings of server sends
// (small, medium, larger than the limit; one at a time and in bursts), a raw client that
// pauses, reads slowly and resumes, heartbeats, pings both ways and closes. Checked: the
// server never holds more than maxBufferedAmount + one message + a small slack; a socket
// past the limit is closed 1008 `send buffer full` and refuses further sends; what arrives
// arrives once, in order (numbered), and a short stream was told why.
import t from 'tap'
import fc from 'fast-check'
import type { Socket } from 'node:net'
import type { FastifyInstance } from 'fastify'
import Fastify from 'fastify'
import type { TypedWebSocket } from 'fastify-typed-websocket'
import typedWebsocket, { WebSocketClosedError } from './helpers/plugin'
import { RawClient, Opcode, frame, closePayload } from './helpers/raw'
import { sleep, until } from './helpers/server'
import { runSettings } from './helpers/topics-model'

const KiB = 1024
// Frame headers, pongs and heartbeat answers written between two samples.
const SLACK = 8 * KiB
const { numRuns, seed, path, interruptAfterTimeLimit } = runSettings(20, 4242, 150_000)

type Op =
  | { t: 'send', size: number }
  | { t: 'burst', n: number, size: number }
  | { t: 'fill' }
  | { t: 'pause' }
  | { t: 'resume' }
  | { t: 'trickle', ms: number }
  | { t: 'heartbeat', n: number }
  | { t: 'ping', n: number }
  | { t: 'serverPing' }
  | { t: 'wait', ms: number }

const size = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 1000 }) },
  { weight: 3, arbitrary: fc.integer({ min: 1001, max: 32 * KiB }) },
  { weight: 1, arbitrary: fc.integer({ min: 32 * KiB, max: 300 * KiB }) })

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ t: fc.constant('send' as const), size }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('burst' as const), n: fc.integer({ min: 2, max: 30 }), size }) },
  { weight: 1, arbitrary: fc.constant({ t: 'fill' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'pause' as const }) },
  { weight: 2, arbitrary: fc.constant({ t: 'resume' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('trickle' as const), ms: fc.integer({ min: 1, max: 20 }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('heartbeat' as const), n: fc.constantFrom(1, 20, 5000, 100_000) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('ping' as const), n: fc.integer({ min: 1, max: 5 }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'serverPing' as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 10 }) }) })

const ending = fc.constantFrom('server' as const, 'client' as const)

interface Run {
  limit: number
  socket: TypedWebSocket
  client: RawClient
  /** Sends the server accepted (did not throw), by number. */
  accepted: number
  resolved: Set<number>
  rejected: Set<number>
  heartbeats: number
  pings: string[]
  serverPings: string[]
  largest: number
  maxSeen: number
  violation: string | undefined
}

function payload (n: number, bytes: number): Buffer {
  const data = Buffer.alloc(Math.max(4, bytes), n & 0xff)
  data.writeUInt32BE(n, 0)
  return data
}

function bound (run: Run): number {
  return run.limit + run.largest + SLACK
}

function sample (run: Run, where: string): void {
  const buffered = run.socket.bufferedAmount
  run.maxSeen = Math.max(run.maxSeen, buffered)
  if (buffered > bound(run) && run.violation === undefined) {
    run.violation = `${where}: bufferedAmount ${buffered} > ${bound(run)} (maxBufferedAmount ${run.limit}, largest message ${run.largest})`
  }
}

/** A send as the model sees it: accepted (numbered) or refused with WebSocketClosedError, never anything else. */
function send (run: Run, bytes: number): void {
  const n = run.accepted
  const wasOpen = run.socket.isOpen
  let sent: Promise<void>
  try {
    sent = run.socket.send(payload(n, bytes))
  } catch (err) {
    if (!(err instanceof WebSocketClosedError)) throw err
    // Refused: the socket was closed, or this send found it past the limit and closed it.
    if (run.socket.isOpen) throw new Error(`send ${n} refused while the socket stays open`)
    if (wasOpen && (run.socket.serverCloseCode !== 1008 || run.socket.serverCloseReason !== 'send buffer full')) {
      throw new Error(`send ${n} refused and closed with ${String(run.socket.serverCloseCode)} ${String(run.socket.serverCloseReason)}`)
    }
    return
  }
  if (!wasOpen) throw new Error(`send ${n} accepted on a closed socket`)
  run.accepted++
  run.largest = Math.max(run.largest, bytes + 14)
  sent.then(() => run.resolved.add(n), (err: unknown) => {
    if (!(err instanceof WebSocketClosedError)) run.violation ??= `send ${n} rejected with ${String(err)}`
    run.rejected.add(n)
  })
  sample(run, `after send ${n} of ${bytes} bytes`)
}

async function step (run: Run, o: Op): Promise<void> {
  const client = run.client
  const socket = client.socket as Socket
  switch (o.t) {
    case 'send': return send(run, o.size)
    case 'burst':
      for (let i = 0; i < o.n; i++) send(run, o.size)
      return
    case 'fill':
      // The reader stops; sends until the kernel buffers are full and bytes wait in the server (bounded).
      socket.pause()
      for (let i = 0; i < 400 && run.socket.isOpen && run.socket.bufferedAmount === 0; i++) {
        send(run, 32 * KiB)
        if (i % 4 === 3) await sleep(1)
      }
      return
    case 'pause':
      socket.pause()
      return
    case 'resume':
      socket.resume()
      return
    case 'trickle':
      socket.resume()
      await sleep(o.ms)
      socket.pause()
      return
    case 'heartbeat': {
      if (client.closed) return
      const one = frame({ opcode: Opcode.Text, payload: '' })
      client.send(Buffer.concat(Array.from({ length: o.n }, () => one)))
      run.heartbeats += o.n
      // Until the server has read them (or stopped reading: a cut).
      const wire = run.socket.raw as unknown as { _socket: Socket }
      await until(() => wire._socket.bytesRead >= socket.bytesWritten || !run.socket.isOpen, 10_000, 'the server to read the heartbeats').catch(() => {})
      sample(run, `after ${o.n} heartbeats`)
      return
    }
    case 'ping':
      if (client.closed) return
      for (let i = 0; i < o.n; i++) {
        const data = `p${run.pings.length}`
        run.pings.push(data)
        client.send({ opcode: Opcode.Ping, payload: data })
      }
      return
    case 'serverPing': {
      const data = `s${run.serverPings.length}`
      if (run.socket.isOpen) {
        run.socket.ping(data)
        run.serverPings.push(data)
      } else {
        let refused: unknown
        try { run.socket.ping(data) } catch (err) { refused = err }
        if (!(refused instanceof WebSocketClosedError)) throw new Error(`ping on a closed socket: ${String(refused)}`)
      }
      return
    }
    case 'wait':
      await sleep(o.ms)
  }
}

/** What the client got: numbered binary messages, heartbeat answers, pongs, pings, the close. */
function checkArrivals (run: Run): void {
  const frames = run.client.frames
  const numbers = frames.filter((f) => f.opcode === Opcode.Binary).map((f) => f.payload.readUInt32BE(0))
  const cut = run.socket.serverCloseCode === 1008
  numbers.forEach((n, i) => {
    if (n !== i) throw new Error(`message ${i} carries number ${n}: reordered, duplicated or lost (${numbers.slice(Math.max(0, i - 3), i + 3).join()})`)
  })
  if (numbers.length > run.accepted) throw new Error(`${numbers.length} messages arrived, ${run.accepted} were accepted`)
  for (const n of run.resolved) if (n >= numbers.length) throw new Error(`send ${n} resolved but never arrived (${numbers.length} did)`)
  if (numbers.length < run.accepted && !cut) throw new Error(`${numbers.length} of ${run.accepted} messages arrived without a cut`)
  const answers = frames.filter((f) => f.opcode === Opcode.Text && f.payload.length === 0).length
  if (answers > run.heartbeats || (!cut && answers !== run.heartbeats)) throw new Error(`${answers} heartbeat answers for ${run.heartbeats} heartbeats`)
  const pongs = frames.filter((f) => f.opcode === Opcode.Pong).map((f) => f.payload.toString())
  if (pongs.join() !== run.pings.slice(0, pongs.length).join() || (!cut && pongs.length !== run.pings.length)) {
    throw new Error(`pongs ${pongs.join()} for pings ${run.pings.join()}`)
  }
  const pings = frames.filter((f) => f.opcode === Opcode.Ping).map((f) => f.payload.toString())
  if (pings.join() !== run.serverPings.slice(0, pings.length).join() || (!cut && pings.length !== run.serverPings.length)) {
    throw new Error(`pings ${pings.join()} for server pings ${run.serverPings.join()}`)
  }
  const closes = frames.filter((f) => f.opcode === Opcode.Close)
  if (closes.length > 1) throw new Error(`${closes.length} close frames`)
  if (cut) {
    const told = run.client.close
    if (told !== undefined && (told.code !== 1008 || told.reason !== 'send buffer full')) throw new Error(`cut, and told ${JSON.stringify(told)}`)
    if (told === undefined && numbers.length < run.accepted && run.client.closedAt === undefined) throw new Error('cut short, and the link is still up')
  }
}

const seen = { runs: 0, cuts: 0, sends: 0, maxOverLimit: 0 }

/** One case: a fresh app and raw client, the steps, the end, then the checks. */
async function runCase (limit: number, ops: Op[], end: 'server' | 'client'): Promise<void> {
  seen.runs++
  const app: FastifyInstance = Fastify()
  await app.register(typedWebsocket)
  let opened: TypedWebSocket | undefined
  app.get('/fc', { websocket: { heartbeat: true, maxBufferedAmount: limit, closeTimeout: 2000, pingInterval: 0 } }, (socket) => { opened = socket })
  await app.listen({ host: '127.0.0.1', port: 0 })
  let client: RawClient | undefined
  const log: string[] = []
  try {
    const raw = client = await RawClient.open((app.server.address() as { port: number }).port, '/fc')
    await until(() => opened !== undefined, 5000, 'the server to open')
    const run: Run = {
      limit,
      socket: opened as TypedWebSocket,
      client,
      accepted: 0,
      resolved: new Set(),
      rejected: new Set(),
      heartbeats: 0,
      pings: [],
      serverPings: [],
      largest: 0,
      maxSeen: 0,
      violation: undefined
    }
    // The client answers the server's close, as a peer should.
    let answered = false
    const answer = setInterval(() => {
      if (!answered && raw.close !== undefined && !raw.closed) {
        answered = true
        raw.send({ opcode: Opcode.Close, payload: closePayload(raw.close.code) })
      }
      sample(run, 'sampled')
    }, 1)
    try {
      for (const o of ops) {
        log.push(JSON.stringify(o))
        await step(run, o)
        if (run.violation !== undefined) break
      }
      // The end: reading again, then a close from one side; everything settles.
      client.socket.resume()
      // The server reads what the client sent (its pings are answered) before the close.
      const wire = (run.socket.raw as unknown as { _socket: Socket })._socket
      await until(() => wire.bytesRead >= raw.socket.bytesWritten || !run.socket.isOpen, 10_000, 'the server to read everything')
      if (run.socket.isOpen) {
        if (end === 'server') run.socket.close(1000, 'done')
        else client.send({ opcode: Opcode.Close, payload: closePayload(1000, 'bye') })
      }
      await raw.until(() => raw.closed, 20_000, 'the end of the connection')
      await until(() => run.resolved.size + run.rejected.size === run.accepted, 5000, 'every send to settle')
      let refused: unknown
      try { run.socket.send('late') } catch (err) { refused = err }
      if (!(refused instanceof WebSocketClosedError)) throw new Error(`a send after the close: ${String(refused)}`)
    } finally {
      clearInterval(answer)
    }
    if (run.violation !== undefined) throw new Error(run.violation)
    checkArrivals(run)
    if (run.socket.serverCloseCode === 1008) seen.cuts++
    seen.sends += run.accepted
    seen.maxOverLimit = Math.max(seen.maxOverLimit, run.maxSeen - limit)
  } catch (err) {
    (err as Error).message += `\nmaxBufferedAmount ${limit}, end ${end}; steps:\n  ${log.join('\n  ')}`
    throw err
  } finally {
    client?.destroy()
    await app.close()
  }
}

t.test('one connection: sends, slow and paused reading, heartbeats, pings and closes stay within the bounds and in order', { timeout: interruptAfterTimeLimit + 60_000 }, async (t) => {
  t.comment(`${numRuns} runs, seed ${seed} (FC_SEED=${seed} FC_RUNS=${numRuns} to replay)`)
  await fc.assert(fc.asyncProperty(
    fc.constantFrom(32 * KiB, 64 * KiB, 256 * KiB),
    fc.array(op, { minLength: 1, maxLength: 25, size: 'max' }),
    ending,
    runCase
  ), { numRuns, seed, path, timeout: 30_000, interruptAfterTimeLimit, markInterruptAsFailure: false })
  t.comment(`exercised: ${JSON.stringify(seen)}`)
  t.ok(seen.runs > 0)
})

t.test('heartbeats to a reader whose buffers are full count against maxBufferedAmount', async (t) => {
  // The kernel buffers are full and bytes wait in the server; then 100,000 heartbeats, whose answers must not pile up past the limit.
  await runCase(32 * KiB, [{ t: 'fill' }, { t: 'heartbeat', n: 100_000 }], 'server')
  t.pass('within maxBufferedAmount + one message + slack')
})
