// plugin/outbound.ts (and budget.ts): maxBufferedTotal, a server-wide budget for outbound bytes queued to readers
// that do not keep up. Past it, the connections holding the most are closed
// with 1008 `send buffer full` first; a topic's frame counts once.
import t from 'tap'
import type { ChildProcess } from 'node:child_process'
import diagnostics from 'node:diagnostics_channel'
import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import type { TypedWebSocket } from 'fastify-typed-websocket'
import { startServer, connect, closed, until, sleep, deferred } from './helpers/server'
import typedWebsocket, { WebSocketClosedError } from './helpers/plugin'
import { forkFixture } from './helpers/child'

const KiB = 1024
const MiB = 1024 * KiB
t.setTimeout(300_000)

interface Drop { socket: unknown, bufferedAmount: number, messages: number, limit: string }

function watchDrops (t: { teardown (fn: () => void): void }): Drop[] {
  const drops: Drop[] = []
  const listener = (message: unknown): void => { drops.push(message as Drop) }
  diagnostics.subscribe('fastify-typed-websocket:drop', listener)
  t.teardown(() => diagnostics.unsubscribe('fastify-typed-websocket:drop', listener))
  return drops
}

/** A client that reads nothing after the handshake. */
async function nonReader (url: string): Promise<WebSocket> {
  const ws = await connect(url)
  ;(ws as unknown as { _socket: { pause (): void } })._socket.pause()
  return ws
}

function resume (ws: WebSocket): void {
  (ws as unknown as { _socket: { resume (): void } })._socket.resume()
}

t.test('the option: 512 MiB by default, an integer >= 1, the plugin\'s only', async (t) => {
  for (const value of [0, -1, 1.5, '64', null]) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(typedWebsocket, { maxBufferedTotal: value as number }).ready() }, { code: 'FST_WS_INVALID_OPTION', message: /maxBufferedTotal must be an integer >= 1/ })
  }
  const app = Fastify()
  await app.register(typedWebsocket, { maxBufferedTotal: 1 })
  app.get('/ws', { websocket: { maxBufferedTotal: 1 } as never }, function open () {})
  await t.rejects(async () => { await app.ready() }, { code: 'FST_WS_INVALID_OPTION', message: /maxBufferedTotal is an option of the plugin/ })
  const fine = Fastify()
  await fine.register(typedWebsocket)
  await fine.ready()
  await fine.close()
})

t.test('plain sends: the connection holding the most is closed first, the others keep their messages', async (t) => {
  const BUDGET = 24 * MiB
  const CHUNK = 64 * KiB
  const drops = watchDrops(t)
  const sockets = new Map<string, TypedWebSocket>()
  const closes = new Map<string, { serverCode: number | undefined, serverReason: string | undefined }>()
  const server = await startServer(t, (app) => {
    app.get<{ Params: { name: string } }>('/ws/:name', {
      websocket: {
        maxBufferedAmount: 512 * MiB,
        closeTimeout: 500,
        close (socket, _code, _reason, details) {
          closes.set((socket.request.params as { name: string }).name, { serverCode: details.serverCode, serverReason: details.serverReason })
        }
      }
    }, function open (socket, request) { sockets.set(request.params.name, socket) })
  }, { plugin: { maxBufferedTotal: BUDGET, pingInterval: 0 } })

  const small = await nonReader(server.url('/ws/small'))
  const big = await nonReader(server.url('/ws/big'))
  const reader = await connect(server.url('/ws/reader'))
  await until(() => sockets.size === 3, 5000, 'three connections')
  const smallSocket = sockets.get('small') as TypedWebSocket
  const bigSocket = sockets.get('big') as TypedWebSocket
  const readerSocket = sockets.get('reader') as TypedWebSocket
  const readerGot: number[] = []
  reader.on('message', (data: Buffer) => { readerGot.push(data.readUInt32BE(0)) })

  // `small` gets well under half the budget and stays open; its sends wait.
  const chunk = (i: number): Buffer => {
    const b = Buffer.alloc(CHUNK, 1)
    b.writeUInt32BE(i, 0)
    return b
  }
  const smallSends: Array<Promise<void>> = []
  const smallTarget = 8 * MiB
  for (let i = 0; smallSocket.bufferedAmount < smallTarget && i < 2000; i++) {
    smallSends.push(smallSocket.send(chunk(i)))
    await new Promise(resolve => setImmediate(resolve))
  }
  t.ok(smallSocket.bufferedAmount >= smallTarget, `small holds ${smallSocket.bufferedAmount} bytes`)

  // `big` grows until the total is past the budget; the reader keeps getting its messages.
  let bigSends = 0
  let error: unknown
  const deadline = Date.now() + 30_000
  while (bigSends < 4000 && Date.now() < deadline) {
    try {
      bigSocket.send(chunk(bigSends)).catch(() => {})
    } catch (err) {
      error = err
      break
    }
    bigSends++
    if (bigSends % 8 === 0) await readerSocket.send(chunk(bigSends / 8))
    await new Promise(resolve => setImmediate(resolve))
  }
  t.type(error, WebSocketClosedError, `sends to big stopped with WebSocketClosedError after ${bigSends}`)
  t.equal(smallSocket.isOpen, true, 'small is still open')
  t.equal(readerSocket.isOpen, true, 'the reader is still open')
  t.equal(bigSocket.serverCloseCode, 1008)
  t.equal(bigSocket.serverCloseReason, 'send buffer full')
  const warning = server.logs.find(l => l.msg === 'websocket send buffers over maxBufferedTotal; closing the connection holding the most')
  t.ok(warning, 'a warning was logged')
  t.equal(warning?.level, 40)
  t.equal(warning?.maxBufferedTotal, BUDGET)
  t.ok((warning?.bufferedAmount as number) > 8 * MiB, `with the bytes the connection held (${String(warning?.bufferedAmount)})`)
  const budgetDrops = drops.filter(d => d.limit === 'maxBufferedTotal')
  t.equal(budgetDrops.length, 1, 'one drop event')
  t.equal(budgetDrops[0]?.socket, bigSocket, 'for big')
  t.ok(budgetDrops[0].messages > 0, 'with the sends still waiting')

  await until(() => closes.has('big'), 5000, 'big to close')
  t.same(closes.get('big'), { serverCode: 1008, serverReason: 'send buffer full' })

  // small reads at last: every message, in order, and its sends resolve.
  const smallGot: number[] = []
  small.on('message', (data: Buffer) => { smallGot.push(data.readUInt32BE(0)) })
  resume(small)
  await Promise.all(smallSends)
  await until(() => smallGot.length === smallSends.length, 10_000, 'small to read everything')
  t.same(smallGot, smallSends.map((_, i) => i), 'small got every message in order')
  await until(() => readerGot.length === Math.floor(bigSends / 8), 10_000, 'the reader to read everything')
  t.same(readerGot, readerGot.map((_, i) => i + 1), 'the reader got every message in order')
  t.equal(smallSocket.isOpen, true)
  small.close()
  reader.close()
  await Promise.all([closed(small), closed(reader)])
  big.terminate()
})

t.test('topics: a shared frame counts once; non-readers are cut, readers get every message', async (t) => {
  const NON_READERS = 8
  const READERS = 2
  const drops = watchDrops(t)
  const Message = Type.Object({ seq: Type.Integer(), pad: Type.String() })
  const sockets: TypedWebSocket[] = []
  let subscribed = 0
  let feed: { publish (key: string, message: { seq: number, pad: string }): Promise<unknown> } | undefined
  const server = await startServer(t, (app) => {
    feed = app.websocketTopic('feed', { message: Message })
    const topic = feed as unknown as { subscribe (socket: unknown, key: string): Promise<unknown> }
    const route = (compression: boolean) => ({
      websocket: { outbound: Message, maxBufferedAmount: 512 * MiB, closeTimeout: 500, compression }
    })
    const open = async function open (socket: TypedWebSocket): Promise<void> {
      sockets.push(socket)
      await topic.subscribe(socket, 'all')
      subscribed++
    }
    app.get('/feed', route(false), open as never)
    app.get('/compressed', route(true), open as never)
  }, { plugin: { maxBufferedTotal: 8 * MiB, pingInterval: 0 } })

  const nonReaders: WebSocket[] = []
  for (let i = 0; i < NON_READERS; i++) nonReaders.push(await nonReader(server.url(i === 0 ? '/compressed' : '/feed')))
  const readers: WebSocket[] = []
  const got: number[][] = []
  for (let i = 0; i < READERS; i++) {
    const ws = await connect(server.url('/feed'))
    const seqs: number[] = []
    ws.on('message', (data) => { seqs.push((JSON.parse(String(data)) as { seq: number }).seq) })
    readers.push(ws)
    got.push(seqs)
  }
  await until(() => subscribed === NON_READERS + READERS, 5000, 'every socket to subscribe')
  const nonReaderSockets = sockets.slice(0, NON_READERS)

  // Random text: the compressed connection's frames do not shrink to nothing.
  const pad = randomBytes(3 * KiB).toString('base64')
  let seq = 0
  const deadline = Date.now() + 60_000
  while (seq < 40_000 && Date.now() < deadline && nonReaderSockets.some(s => s.isOpen)) {
    const batch: Array<Promise<unknown>> = []
    for (let i = 0; i < 16; i++) batch.push((feed as { publish (key: string, message: { seq: number, pad: string }): Promise<unknown> }).publish('all', { seq: seq++, pad }))
    await Promise.all(batch)
    await new Promise(resolve => setImmediate(resolve))
  }
  t.ok(nonReaderSockets.every(s => !s.isOpen), `every non-reader was cut off (after ${seq} messages)`)
  for (const socket of nonReaderSockets) {
    t.equal(socket.serverCloseCode, 1008)
    t.equal(socket.serverCloseReason, 'send buffer full')
  }
  const budgetDrops = drops.filter(d => d.limit === 'maxBufferedTotal')
  t.equal(budgetDrops.length, NON_READERS, 'a drop event for each')
  t.ok(budgetDrops.every(d => nonReaderSockets.includes(d.socket as TypedWebSocket)), 'only non-readers were dropped')
  t.ok(sockets.slice(NON_READERS).every(s => s.isOpen), 'the readers are open')
  for (const [i, seqs] of got.entries()) {
    await until(() => seqs.length === seq, 20_000, `reader ${i} to get every message`)
    t.ok(seqs.every((s, j) => s === j), `reader ${i} got all ${seq} messages in order`)
  }
  for (const ws of readers) ws.close()
  await Promise.all(readers.map(ws => closed(ws)))
  for (const ws of nonReaders) ws.terminate()
})

// ---------------------------------------------------------------- RSS, in a process of its own

function ask<T> (child: ChildProcess, message: unknown, ms = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer from the server within ${ms} ms`)), ms)
    child.once('message', (answer) => {
      clearTimeout(timer)
      resolve(answer as T)
    })
    if (message !== undefined) child.send(message as never)
  })
}

interface State {
  subscribed: number
  clients: number
  closes: Array<{ code: number, reason: string, serverCode: number | undefined, serverReason: string | undefined }>
  rss: number
  warnings: string[]
}

t.test('100 non-reading clients under a 4 KB broadcast: RSS growth stays under the budget + 50 MB, readers get every message', async (t) => {
  const BUDGET = 64 * MiB
  const NON_READERS = 100
  const READERS = 5
  // With the default maxBufferedAmount (16 MiB): a non-reader is cut by the budget
  // or by its own limit, whichever it reaches first; both close with 1008.
  const MESSAGES = 12_000
  const child = forkFixture(t, 'broadcast-server', { MAX_BUFFERED_TOTAL: String(BUDGET) })
  const { port } = await ask<{ port: number }>(child, undefined)
  const url = `ws://127.0.0.1:${port}/feed`

  const nonReaders: WebSocket[] = []
  for (let i = 0; i < NON_READERS; i++) nonReaders.push(await nonReader(url))
  const got: number[][] = []
  const readers: WebSocket[] = []
  for (let i = 0; i < READERS; i++) {
    const ws = await connect(url)
    const seqs: number[] = []
    ws.on('message', (data) => { seqs.push((JSON.parse(String(data)) as { seq: number }).seq) })
    readers.push(ws)
    got.push(seqs)
  }
  for (let i = 0; i < 100; i++) {
    const state = await ask<State>(child, { cmd: 'state' })
    if (state.subscribed === NON_READERS + READERS) break
    await sleep(50)
  }

  const result = await ask<{ published: number, baseline: number, peak: number }>(child, { cmd: 'publish', count: MESSAGES, size: 4 * KiB }, 180_000)
  const growth = result.peak - result.baseline
  t.comment(`published ${result.published}; RSS growth ${(growth / MiB).toFixed(1)} MiB for a budget of ${BUDGET / MiB} MiB`)
  t.equal(result.published, MESSAGES, 'every message was published')
  t.ok(growth < BUDGET + 50 * 1000 * 1000, `RSS growth ${(growth / MiB).toFixed(1)} MiB < budget + 50 MB`)

  for (const [i, seqs] of got.entries()) {
    await until(() => seqs.length === MESSAGES, 30_000, `reader ${i} to get every message`)
    t.ok(seqs.every((s, j) => s === j), `reader ${i} got all ${MESSAGES} messages in order`)
  }
  let state = await ask<State>(child, { cmd: 'state' })
  for (let i = 0; i < 100 && state.closes.length < NON_READERS; i++) {
    await sleep(100)
    state = await ask<State>(child, { cmd: 'state' })
  }
  const cut = state.closes.filter(c => c.serverCode === 1008 && c.serverReason === 'send buffer full')
  t.equal(cut.length, NON_READERS, 'every non-reader was closed with 1008 send buffer full')
  t.equal(state.clients, READERS, 'the readers are still connected')
  const logged = state.warnings.filter(w => w === 'websocket send buffers over maxBufferedTotal; closing the connection holding the most' || w === 'websocket peer is not reading; closing')
  t.equal(logged.length, NON_READERS, 'each cut was logged')

  // A non-reader that reads at last finds the close frame, if it came before closeTimeout.
  const first = nonReaders[0]
  const seen = deferred<{ code: number, reason: string }>()
  first.once('close', (code, reason) => seen.resolve({ code, reason: String(reason) }))
  resume(first)
  const close = await seen.promise
  t.ok(close.code === 1006 || (close.code === 1008 && close.reason === 'send buffer full'), `a non-reader saw ${close.code} ${close.reason}`)
  for (const ws of readers) ws.close()
  await Promise.all(readers.map(ws => closed(ws)))
  for (const ws of nonReaders) ws.terminate()
  child.send({ cmd: 'exit' })
})
