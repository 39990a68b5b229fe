// What every ws layout must still do, whichever internals the gate (plugin/internals.ts)
// allowed: messages in order, a ping hook, a topic's fan-out mixed with plain sends, a slow
// reader cut with 1008, and a protocol error closed with its code.
import type { Test } from 'tap'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import type { Topic } from 'fastify-typed-websocket'
import { closed, messages, startServer, type TestServer } from './server'
import { RawClient } from './raw'

type Tap = Test

export interface LayoutServer { server: TestServer, notes: Topic<{ n: number }> }

export async function layoutServer (t: Tap): Promise<LayoutServer> {
  let notes = undefined as unknown as Topic<{ n: number }>
  const server = await startServer(t, (app) => {
    notes = app.websocketTopic('notes', { message: Type.Object({ n: Type.Integer() }) })
    app.get('/echo', {
      websocket: {
        maxBufferedAmount: 64 * 1024,
        async message (socket, msg) { await socket.send(msg as string) },
        ping (socket, data) { socket.send(`ping ${data.toString()}`).catch(() => {}) }
      }
    }, async (socket) => {
      await notes.subscribe(socket, 'k')
      await socket.send('subscribed')
    })
  }, { plugin: { pingInterval: 0 } })
  return { server, notes }
}

/** The warnings the plugin logged when it was registered. */
export function warnings (server: TestServer): Array<Record<string, unknown>> {
  return server.logs.filter(l => l.level === 40)
}

export async function exercise (t: Tap, { server, notes }: LayoutServer): Promise<void> {
  const ws = new WebSocket(server.url('/echo'))
  t.same(await messages(ws, 1), ['subscribed'])
  const echoes = messages(ws, 3)
  for (const text of ['a', 'b', 'c']) ws.send(text)
  t.same(await echoes, ['a', 'b', 'c'], 'messages answered in order')
  const pinged = messages(ws, 1)
  ws.ping('hi')
  t.same(await pinged, ['ping hi'], 'the ping hook ran')

  // Topic frames in the same ticks as plain sends: one order.
  const all = messages(ws, 400)
  const [socket] = notes.subscribers('k')
  const expected: string[] = []
  for (let n = 1; n <= 200; n++) {
    const plain = `plain ${n}`
    expected.push(JSON.stringify({ n }), plain)
    const published = notes.publish('k', { n })
    await socket.send(plain)
    await published
  }
  t.same(await all, expected, 'topic messages and plain sends, once each, in order')
  ws.close()
  await closed(ws)

  // A reader that stops reading is cut off by maxBufferedAmount on the topic path too.
  const slow = await RawClient.open(server.port, '/echo')
  await slow.until(() => slow.frames.length > 0, 5000, 'subscribed')
  slow.socket.pause()
  const slowSocket = [...notes.subscribers('k')].find(s => s !== socket && s.isOpen)
  const big = 'x'.repeat(16 * 1024)
  for (let n = 0; n < 2000 && slowSocket?.isOpen === true; n++) {
    await notes.publish('k', { n })
    // (The publish may have cut it off already.)
    if (slowSocket.isOpen) slowSocket.send(big).catch(() => {})
  }
  t.equal(slowSocket?.isOpen, false, 'the slow reader was cut off')
  t.equal(slowSocket?.serverCloseCode, 1008)
  slow.socket.resume()
  await slow.until(() => slow.close !== undefined, 10_000, 'the close frame')
  t.same(slow.close, { code: 1008, reason: 'send buffer full' })
  slow.socket.destroy()

  // A reserved opcode: ws's receiver fails the connection with 1002.
  const raw = await RawClient.open(server.port, '/echo')
  await raw.until(() => raw.frames.length > 0, 5000, 'subscribed')
  raw.send({ opcode: 0x3, payload: Buffer.from('x') })
  await raw.until(() => raw.close !== undefined, 5000, 'the close frame')
  t.equal(raw.close?.code, 1002, 'a reserved opcode closes with 1002')
  raw.socket.destroy()
}
