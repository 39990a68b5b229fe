// plugin/outbound.ts: heartbeat answers are sends like any other: a client that floods empty frames and never
// reads is cut off by maxBufferedAmount, maxBufferedTotal or rateLimit, as for any message.
import t from 'tap'
import type { ChildProcess } from 'node:child_process'
import { subscribe, unsubscribe } from 'node:diagnostics_channel'
import { Type } from '@sinclair/typebox'
import { forkFixture, nextMessage } from './helpers/child'
import { RawClient } from './helpers/raw'
import { startServer, until } from './helpers/server'

const MiB = 1024 * 1024
// An empty text frame from a client: FIN + text, masked, length 0, a zero mask.
const HEARTBEAT = Buffer.from([0x81, 0x80, 0, 0, 0, 0])
const Inbound = Type.Object({ type: Type.Literal('x') })

t.setTimeout(240_000)

interface Report { port?: number, rss: number, closes: Array<{ serverCode?: number, serverReason?: string }> }

function nextReport (child: ChildProcess, ms = 10_000): Promise<Report> {
  return nextMessage<Report>(child, ms)
}

/** Writes `count` heartbeats in chunks, waiting for the socket to drain; stops early at `deadline` or when the link goes. */
async function flood (client: RawClient, count: number, deadline: number): Promise<number> {
  const CHUNK = 10_000
  const chunk = Buffer.concat(Array.from({ length: CHUNK }, () => HEARTBEAT))
  let written = 0
  while (written < count && Date.now() < deadline && !client.socket.destroyed) {
    if (!client.socket.write(chunk)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000)
        client.socket.once('drain', () => { clearTimeout(timer); resolve() })
      })
    }
    written += CHUNK
  }
  return written
}

t.test('3,000,000 heartbeats from a client that never reads: the server holds about maxBufferedAmount, then cuts it with 1008', async (t) => {
  const child = forkFixture(t, 'heartbeat-server')
  const started = await nextReport(child, 30_000)
  const rss = async (): Promise<Report> => {
    const report = nextReport(child)
    child.send('rss')
    return await report
  }
  const baseline = (await rss()).rss
  const client = await RawClient.open(started.port as number, '/hb')
  client.socket.pause()
  const written = await flood(client, 3_000_000, Date.now() + 120_000)
  t.comment(`${written} heartbeats written`)
  let peak = 0
  for (let i = 0; i < 5; i++) {
    peak = Math.max(peak, (await rss()).rss)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  const growth = peak - baseline
  t.comment(`server RSS growth after GC: ${(growth / MiB).toFixed(1)} MiB`)
  t.ok(written >= 1_000_000, `the flood got through (${written} frames)`)
  t.ok(growth < 40 * MiB, `server RSS grew ${(growth / MiB).toFixed(1)} MiB (< 40 MiB; unbounded, it grew by over 100 MiB)`)
  client.socket.resume()
  await client.until(() => client.close !== undefined, 60_000, 'the close frame')
  t.strictSame(client.close, { code: 1008, reason: 'send buffer full' })
  client.socket.destroy()
  let closes: Report['closes'] = []
  for (let i = 0; i < 50 && closes.length === 0; i++) {
    closes = (await rss()).closes
    if (closes.length === 0) await new Promise(resolve => setTimeout(resolve, 100))
  }
  t.strictSame(closes, [{ serverCode: 1008, serverReason: 'send buffer full' }], 'the server closed it for its send buffer')
  child.send('exit')
})

t.test('while the reader is behind, heartbeat answers count for maxBufferedTotal and the drop event names it', async (t) => {
  const drops: Array<{ limit: string }> = []
  const onDrop = (message: unknown): void => { drops.push(message as { limit: string }) }
  subscribe('fastify-typed-websocket:drop', onDrop)
  t.teardown(() => unsubscribe('fastify-typed-websocket:drop', onDrop))
  const server = await startServer(t, (app) => {
    app.get('/hb', { websocket: { heartbeat: true, inbound: Inbound, message () {} } }, () => {})
  }, { plugin: { maxBufferedTotal: 256 * 1024, closeTimeout: 60_000 } })
  const client = await RawClient.open(server.port, '/hb')
  client.socket.pause()
  await flood(client, 3_000_000, Date.now() + 120_000)
  await until(() => drops.length > 0, 30_000, 'the drop event')
  t.equal(drops[0].limit, 'maxBufferedTotal')
  client.socket.resume()
  await client.until(() => client.close !== undefined, 60_000, 'the close frame')
  t.strictSame(client.close, { code: 1008, reason: 'send buffer full' })
  client.socket.destroy()
})

t.test('heartbeats count for rateLimit: action close cuts with 1008; action pause answers them at once while messages wait for tokens', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/close', {
      websocket: { heartbeat: true, inbound: Inbound, rateLimit: { messages: 5, interval: 60_000, action: 'close' }, message () {} }
    }, () => {})
    app.get('/pause', {
      websocket: {
        heartbeat: true,
        inbound: Inbound,
        outbound: Type.Object({ n: Type.Integer() }),
        rateLimit: { messages: 2, interval: 200, action: 'pause' },
        async message (socket) { await socket.send({ n: 1 }) }
      }
    }, () => {})
  })
  const closing = await RawClient.open(server.port, '/close')
  for (let i = 0; i < 6; i++) closing.send(HEARTBEAT)
  await closing.until(() => closing.close !== undefined, 10_000, 'the close frame')
  t.strictSame(closing.close, { code: 1008, reason: 'rate limit exceeded' })
  t.equal(closing.frames.filter(f => f.opcode === 1 && f.payload.length === 0).length, 5, 'five heartbeats were answered, the sixth was over the limit')
  closing.socket.destroy()

  const pausing = await RawClient.open(server.port, '/pause')
  // Two heartbeats take the two tokens; the message behind them waits for a token (200 ms);
  // the heartbeats past the limit are answered meanwhile: a paused client is not a dead one.
  for (let i = 0; i < 2; i++) pausing.send(HEARTBEAT)
  pausing.send({ opcode: 1, payload: '{"type":"x"}' })
  for (let i = 0; i < 4; i++) pausing.send(HEARTBEAT)
  await pausing.until(() => pausing.frames.filter(f => f.opcode === 1).length >= 6, 10_000, 'six answers')
  t.equal(pausing.frames.filter(f => f.opcode === 1 && f.payload.length > 0).length, 0, 'answered before the message got its token')
  await pausing.until(() => pausing.frames.filter(f => f.opcode === 1).length === 7, 10_000, 'the message\'s send')
  t.equal(pausing.frames.filter(f => f.opcode === 1).at(-1)?.payload.toString(), '{"n":1}', 'the message came after')
  t.equal(pausing.close, undefined, 'nothing was closed')
  pausing.socket.destroy()
})
