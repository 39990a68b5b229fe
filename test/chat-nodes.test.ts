// The chat example (examples/chat/server.js) as a new user runs it on two nodes: two processes,
// `REDIS_URL` to one real redis-server, `PORT` differing. Clients on either node see each
// other's messages and members; a client whose node is killed reconnects to the other node
// with `since` and gets every message once.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import WebSocket from 'ws'
import { startRedis, freePort } from './helpers/redis'
import { connect, until, sleep } from './helpers/server'

const SERVER = join(__dirname, '..', 'examples', 'chat', 'server.js')
const WAIT = 10_000

interface Said { type: 'said', id: number, from: string, text: string, at: number }
interface Presence { type: 'presence', room: string, users: Array<{ name: string }> }
type ServerMessage = Said | Presence | { type: 'typing', name: string } | { type: 'reset' } | { type: 'error', message: string }

interface Node { port: number, child: ChildProcess, base: string, ws: (path: string) => string }

/** `npm start` with REDIS_URL and PORT: resolves once the node prints that it listens. */
async function startNode (t: tap.Test, redisUrl: string): Promise<Node> {
  const port = await freePort()
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), REDIS_URL: redisUrl }
  delete env.NODE_V8_COVERAGE
  delete env.NODE_OPTIONS
  delete env.CHAT_SECRET
  const child = spawn(process.execPath, [SERVER], { env, stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the chat node did not start')), 20_000)
    let out = ''
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      if (out.includes('\n')) { clearTimeout(timer); resolve(out) }
    })
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`the chat node exited with ${String(code)}`)) })
  })
  t.match(line, `listening on http://127.0.0.1:${port}/ (rooms on Redis at ${redisUrl})`, `node on ${port} says where its rooms are`)
  child.stdout?.resume()
  return { port, child, base: `http://127.0.0.1:${port}`, ws: (path) => `ws://127.0.0.1:${port}${path}` }
}

async function login (node: Node, name: string): Promise<string> {
  const response = await fetch(`${node.base}/login`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name })
  })
  if (!response.ok) throw new Error(`login answered ${response.status}`)
  return ((await response.json()) as { token: string }).token
}

/** A chat client on one WebSocket, recording every message it gets. */
class Peer {
  readonly received: ServerMessage[] = []
  constructor (readonly ws: WebSocket) {
    ws.on('message', (data) => { this.received.push(JSON.parse(String(data)) as ServerMessage) })
  }

  static async join (node: Node, token: string, room: string, since?: number): Promise<Peer> {
    const query = `token=${encodeURIComponent(token)}${since === undefined ? '' : `&since=${since}`}`
    return new Peer(await connect(node.ws(`/chat/${room}?${query}`)))
  }

  said (): Said[] { return this.received.filter((m): m is Said => m.type === 'said') }
  members (): string[] | undefined {
    const last = this.received.filter((m): m is Presence => m.type === 'presence').at(-1)
    return last?.users.map((u) => u.name)
  }

  say (text: string): void { this.ws.send(JSON.stringify({ type: 'say', text })) }
  typing (): void { this.ws.send(JSON.stringify({ type: 'typing' })) }
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

t.test('two nodes on one Redis: messages, presence, and a client that moves to the other node', async (t) => {
  const redis = await startRedis(t)
  const [a, b] = await Promise.all([startNode(t, redis.url), startNode(t, redis.url)])
  // every token comes from node A: node B accepts them (the nodes share the signing key)
  const [annToken, bobToken, carolToken] = await Promise.all(['ann', 'bob', 'carol'].map((name) => login(a, name)))

  const ann = await Peer.join(a, annToken, 'lobby')
  const carol = await Peer.join(a, carolToken, 'lobby')
  const bob = await Peer.join(b, bobToken, 'lobby')
  t.teardown(() => { for (const p of [ann, carol, bob]) p.ws.terminate() })
  const everyone = ['ann', 'bob', 'carol']
  await until(() => JSON.stringify(bob.members()) === JSON.stringify(everyone), WAIT, 'bob (node B) to list everyone')
  await until(() => JSON.stringify(ann.members()) === JSON.stringify(everyone), WAIT, 'ann (node A) to list everyone')
  t.same(bob.members(), everyone, 'presence on node B lists the members of both nodes')
  t.same(ann.members(), everyone, 'presence on node A lists the members of both nodes')

  ann.say('hello from A')
  await until(() => bob.said().length === 1, WAIT, 'bob to get ann\'s message')
  t.match(bob.said()[0], { type: 'said', id: 1, from: 'ann', text: 'hello from A' }, 'a message sent on node A reaches node B, with its id')

  bob.typing()
  await until(() => ann.received.some((m) => m.type === 'typing'), WAIT, 'ann to see bob typing')
  t.same(ann.received.filter((m) => m.type === 'typing'), [{ type: 'typing', name: 'bob' }], 'typing crosses nodes too')

  // bob streams messages from node B; mid-stream, node A is killed under carol
  const TOTAL = 80
  let sent = 0
  const streaming = (async () => {
    for (; sent < TOTAL && bob.ws.readyState === WebSocket.OPEN; sent++) {
      bob.say(`m${sent + 1}`)
      await sleep(5)
    }
  })()
  await until(() => carol.said().length >= 20, WAIT, 'carol to get the first messages')
  const gone = new Promise((resolve) => carol.ws.once('close', resolve))
  a.child.kill('SIGKILL')
  await gone
  const before = carol.said()
  const since = before.at(-1)?.id as number
  t.ok(since < TOTAL, `node A died mid-stream (carol had up to id ${since})`)
  await sleep(50)
  const moved = await Peer.join(b, carolToken, 'lobby', since)
  t.teardown(() => moved.ws.terminate())
  await streaming
  t.equal(sent, TOTAL, 'bob sent every message')
  await until(() => (moved.said().at(-1)?.id ?? 0) >= TOTAL + 1, WAIT, 'carol to catch up on node B')
  await until(() => (bob.said().at(-1)?.id ?? 0) >= TOTAL + 1, WAIT, 'bob to get his own messages')
  await sleep(100) // anything sent twice would arrive by now

  const all = [...before, ...moved.said()]
  t.same(all.map((m) => m.id), range(1, TOTAL + 1), 'carol got every id once, in order, across the two nodes')
  t.same(all.map((m) => m.text), ['hello from A', ...range(1, TOTAL).map((n) => `m${n}`)], 'and every text')
  t.same(bob.said().map((m) => m.id), range(1, TOTAL + 1), 'bob got every id once, in order')
  t.notOk(moved.received.some((m) => m.type === 'reset'), 'node B recovered carol\'s gap from the shared history (no reset)')

  // ann's node is dead: she leaves presence once its lease runs out (presenceTtlMs, 15 s)
  await until(() => JSON.stringify(bob.members()) === JSON.stringify(['bob', 'carol']), 30_000, 'ann to drop out of presence')
  t.same(bob.members(), ['bob', 'carol'], 'the members of the dead node leave presence')
  // (The same refresh goes to carol's socket right after bob's.)
  await until(() => JSON.stringify(moved.members()) === JSON.stringify(['bob', 'carol']), 10_000, 'carol to see the same members').catch(() => {})
  t.same(moved.members(), ['bob', 'carol'], 'carol, now on node B, sees the same members')
})
