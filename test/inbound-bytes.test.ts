// plugin/inbound.ts: inbound memory is bounded in bytes (maxPendingBytes), not only in messages: a client
// sending large messages to a slow message hook cannot make the server hold more than
// about the limit plus one message.
import t from 'tap'
import type { ChildProcess } from 'node:child_process'
import WebSocket from 'ws'
import type { TypedWebSocket } from 'fastify-typed-websocket'
import { closed, connect, deferred, messages, sleep, startServer, until } from './helpers/server'
import { forkFixture, nextMessage } from './helpers/child'

const MiB = 1024 * 1024
// Moving and parsing 800 MiB takes a while on a busy machine.
t.setTimeout(300_000)

t.test('reading pauses once the bytes held reach maxPendingBytes, and resumes when the queue drains', async (t) => {
  for (const [name, options, size] of [
    ['maxPendingBytes', { maxPendingBytes: 2500 }, 1000],
    ['default: maxMessageSize', { maxMessageSize: 4000 }, 1500]
  ] as const) {
    const gate = deferred()
    const received: string[] = []
    const opened = deferred<TypedWebSocket>()
    const server = await startServer(t, (app) => {
      app.get('/ws', {
        websocket: {
          ...options,
          async message (socket, msg) {
            received.push(msg as string)
            if (received.length === 1) await gate.promise
            await socket.send((msg as string).slice(0, 12))
          }
        }
      }, function open (socket) { opened.resolve(socket) })
    })
    const ws = await connect(server.url('/ws'))
    const socket = await opened.promise
    const sent = Array.from({ length: 40 }, (_, i) => `message ${String(i).padStart(3, '0')} `.padEnd(size, 'x'))
    for (const m of sent) ws.send(m)
    await until(() => socket.raw.isPaused, 5000, `${name}: the server to stop reading`)
    await sleep(100)
    t.equal(received.length, 1, `${name}: the hook got only the first message while blocked`)
    t.equal(socket.raw.isPaused, true, `${name}: still paused (well below maxPendingMessages)`)

    const echoes = messages(ws, sent.length)
    gate.resolve()
    t.same(await echoes, sent.map(m => m.slice(0, 12)), `${name}: every message came back, in order`)
    t.same(received, sent, `${name}: nothing dropped or reordered`)
    t.equal(socket.raw.isPaused, false, `${name}: reading resumed`)
    ws.close()
    await closed(ws)
  }
})

interface Report { port?: number, rss: number, before?: number, received?: number }

function nextReport (child: ChildProcess, ms = 5000): Promise<Report> {
  return nextMessage<Report>(child, ms)
}

t.test('100 messages of 8 MiB to a blocked hook: server RSS grows by less than 3 x maxMessageSize, and all arrive in order', async (t) => {
  const MESSAGES = 100
  const MAX_MESSAGE_SIZE = 10 * MiB // the default
  const child = forkFixture(t, 'slow-hook-server')
  const started = await nextReport(child, 30_000)
  const rss = async (): Promise<Report> => {
    const report = nextReport(child)
    child.send('rss')
    return await report
  }

  const ws = new WebSocket(`ws://127.0.0.1:${String(started.port)}/upload`)
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  const acks: Array<{ i: number, length: number }> = []
  ws.on('message', (data) => acks.push(JSON.parse(String(data))))
  const baseline = (await rss()).rss

  const pad = 'x'.repeat(8 * MiB - 32)
  let written = 0
  let sendError: unknown
  // One message in flight at a time: the client's own memory stays small.
  const sending = (async () => {
    const deadline = Date.now() + 60_000
    for (let i = 0; i < MESSAGES && Date.now() < deadline; i++) {
      await new Promise<void>((resolve, reject) => ws.send(JSON.stringify({ i, pad }), (err) => err == null ? resolve() : reject(err)))
      written++
    }
  })().catch((err: unknown) => { sendError = err })

  // Wait until the client is stuck: the server stopped reading.
  let last = -1
  for (let i = 0; i < 100 && last !== written; i++) {
    last = written
    await sleep(500)
  }
  // RSS after a full GC is what the server holds; before it, RSS also counts the
  // garbage of socket reads that V8 has not collected yet (reported, not judged).
  let peak = 0
  let before = 0
  let report: Report = { rss: 0 }
  for (let i = 0; i < 10; i++) {
    report = await rss()
    peak = Math.max(peak, report.rss)
    before = Math.max(before, report.before ?? 0)
    await sleep(100)
  }
  const growth = peak - baseline
  t.comment(`RSS growth while stalled: ${(growth / MiB).toFixed(1)} MiB held, ${((before - baseline) / MiB).toFixed(1)} MiB before GC`)
  t.equal(report.received, 1, 'the hook is still on the first message')
  t.ok(written < MESSAGES, `the client is held back by TCP (${written} of ${MESSAGES} written)`)
  t.ok(growth < 3 * MAX_MESSAGE_SIZE,
    `server RSS grew by ${(growth / MiB).toFixed(1)} MiB, less than 3 x maxMessageSize (${3 * MAX_MESSAGE_SIZE / MiB} MiB)`)

  child.send('release')
  await sending
  t.equal(sendError, undefined, 'every message was written')
  await until(() => acks.length === MESSAGES, 60_000, 'every message to be handled')
  t.same(acks.map(a => a.i), Array.from({ length: MESSAGES }, (_, i) => i), 'all 100 arrived, in order')
  t.ok(acks.every(a => a.length === pad.length), 'each in full')
  ws.close()
  await new Promise((resolve) => ws.once('close', resolve))
  child.send('exit')
})
