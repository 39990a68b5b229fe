// A reference model of topics for property tests: random command sequences run against
// real nodes (Fastify apps on 127.0.0.1 with real ws clients) and against a small model of
// what the contract promises; after each run every subscriber must hold exactly the model's
// messages, once, in offset order, and nothing may be left behind.
import fc from 'fast-check'
import Fastify, { type FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { Type } from '@sinclair/typebox'
import type { Topic, TypedWebSocket, FastifyTypedWebsocketOptions } from 'fastify-typed-websocket'
import typedWebsocket from './plugin'
import { sleep, until } from './server'

export const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), key: Type.String(), text: Type.String() })
const Member = Type.Object({ name: Type.String() })
export type Rooms = Topic<{ type: 'said', id: number, key: string, text: string }, 'id', { name: string }>
type Inbox = Topic<{ type: 'said', id: number, key: string, text: string }, 'id'>

/**
 * How many cases a property runs, its seed and its time budget: fixed in `npm test`; with
 * FC_RUNS (`npm run test:model`) more cases, a random seed (or FC_SEED) and a budget grown to match.
 * A failure prints its seed and path: FC_SEED=… FC_PATH=… replays it.
 */
export function runSettings (defaultRuns: number, fixedSeed: number, budget: number): { numRuns: number, seed: number, path?: string, interruptAfterTimeLimit: number } {
  const runs = Number(process.env.FC_RUNS)
  const numRuns = Number.isSafeInteger(runs) && runs > 0 ? runs : defaultRuns
  const given = Number(process.env.FC_SEED)
  const seed = Number.isSafeInteger(given) ? given : numRuns === defaultRuns ? fixedSeed : Date.now() % 2 ** 31
  // FC_PATH replays one case of a failure report (with its FC_SEED).
  const path = process.env.FC_PATH === undefined || process.env.FC_PATH === '' ? undefined : process.env.FC_PATH
  return { numRuns, seed, path, interruptAfterTimeLimit: budget * Math.max(1, numRuns / defaultRuns) }
}

/*
 * A blip may come right after the first messages of a key, before the nodes got them (found
 * by this model: FC_SEED=1006372250 FC_RUNS=300 FC_PATH=258:11:2:0:6:17:8:7:3:7:11:2:3:7:2:5):
 * a key gets its epoch when it is first subscribed, so a node notices the emptied Redis and
 * its subscribers get 1012 rather than nothing.
 */

export const ROOM_KEYS = ['a', 'b', 'c']
// Keys only ever asked about (history, presence, unsubscribe): they must never be held.
export const GHOST_KEYS = ['ghost1', 'ghost2']
export const INBOX_KEYS = ['u1', 'u2', 'u3', 'u4']
/** The send-buffer limit of the `/slow` route: small, so a paused reader is cut soon. */
export const SLOW_LIMIT = 64 * 1024
export const BIG = 64 * 1024
export const INBOX_TTL = 200
const EVENTS = ['close', 'error', 'message', 'ping', 'pong', 'open']

export interface ModelNode {
  app: FastifyInstance
  port: number
  rooms: Rooms
  inbox: Inbox
  accepted: TypedWebSocket[]
  baselines: Map<TypedWebSocket, number[]>
}

/** A node: an app with the two topics, a route `/c` (default limits) and `/slow` (maxBufferedAmount SLOW_LIMIT). */
export async function startModelNode (history: number, plugin: FastifyTypedWebsocketOptions, routes?: (app: FastifyInstance) => void): Promise<ModelNode> {
  const app = Fastify()
  await app.register(typedWebsocket, plugin)
  const node = { app, port: 0, accepted: [], baselines: new Map() } as unknown as ModelNode
  node.rooms = app.websocketTopic('rooms', { message: Said, history, offsetField: 'id', presence: Member })
  node.inbox = app.websocketTopic('inbox', { message: Said, history: 0, historyTtl: INBOX_TTL, offsetField: 'id' })
  const open = (socket: TypedWebSocket): void => {
    node.baselines.set(socket, EVENTS.map((e) => socket.raw.listenerCount(e)))
    node.accepted.push(socket)
  }
  app.get('/c', { websocket: { outbound: Said } }, open)
  app.get('/slow', { websocket: { outbound: Said, maxBufferedAmount: SLOW_LIMIT } }, open)
  routes?.(app)
  await app.listen({ host: '127.0.0.1', port: 0 })
  node.port = (app.server.address() as { port: number }).port
  return node
}

export function listenerCounts (socket: TypedWebSocket): number[] {
  return EVENTS.map((e) => socket.raw.listenerCount(e))
}

export type Since = { kind: 'none' } | { kind: 'back', n: number } | { kind: 'ahead' }

export type Op =
  | { t: 'open', node: number, slow: boolean }
  | { t: 'sub', c: number, key: number, since: Since, name: string | null }
  | { t: 'unsub', c: number, key: number }
  | { t: 'pub', node: number, key: number, except: number | null, big: boolean }
  | { t: 'burst', node: number, key: number, n: number }
  | { t: 'bad', node: number, c: number, kind: 'outbound' | 'key' | 'since' | 'presence' }
  | { t: 'close', c: number, by: 'client' | 'server' }
  | { t: 'flood', node: number, key: number }
  | { t: 'ghost', node: number, c: number, key: number }
  | { t: 'inbox', node: number, key: number }
  | { t: 'race', key: number, except: number, otherFirst: boolean }
  | { t: 'blip' }
  | { t: 'ropen', key: number, since: Since }
  | { t: 'rpub', key: number }
  | { t: 'rclose', c: number }

/** Commands for `nodes` nodes in this process, blips of the broker, and a node in another process. */
export function opArbitrary (nodes: number, blips: boolean, remote = false): fc.Arbitrary<Op> {
  const node = fc.nat(nodes - 1)
  const c = fc.nat(7)
  const key = fc.nat(ROOM_KEYS.length - 1)
  const since: fc.Arbitrary<Since> = fc.oneof(
    { weight: 3, arbitrary: fc.constant({ kind: 'none' as const }) },
    { weight: 3, arbitrary: fc.nat(7).map((n) => ({ kind: 'back' as const, n })) },
    { weight: 1, arbitrary: fc.constant({ kind: 'ahead' as const }) })
  const ops: Array<fc.WeightedArbitrary<Op>> = [
    { weight: 4, arbitrary: fc.record({ t: fc.constant('open' as const), node, slow: fc.boolean() }) },
    { weight: 8, arbitrary: fc.record({ t: fc.constant('sub' as const), c, key, since, name: fc.option(fc.constantFrom('ann', 'bob'), { nil: null }) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('unsub' as const), c, key }) },
    { weight: 8, arbitrary: fc.record({ t: fc.constant('pub' as const), node, key, except: fc.option(c, { nil: null, freq: 3 }), big: fc.nat(3).map((n) => n === 0) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('burst' as const), node, key, n: fc.integer({ min: 2, max: 6 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('bad' as const), node, c, kind: fc.constantFrom('outbound' as const, 'key' as const, 'since' as const, 'presence' as const) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('close' as const), c, by: fc.constantFrom('client' as const, 'server' as const) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('flood' as const), node, key }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('ghost' as const), node, c, key: fc.nat(GHOST_KEYS.length - 1) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('inbox' as const), node, key: fc.nat(INBOX_KEYS.length - 1) }) }
  ]
  if (nodes > 1) ops.push({ weight: 2, arbitrary: fc.record({ t: fc.constant('race' as const), key, except: c, otherFirst: fc.boolean() }) })
  if (blips) ops.push({ weight: 1, arbitrary: fc.constant({ t: 'blip' as const }) })
  if (remote) {
    ops.push({ weight: 3, arbitrary: fc.record({ t: fc.constant('ropen' as const), key, since }) })
    ops.push({ weight: 3, arbitrary: fc.record({ t: fc.constant('rpub' as const), key }) })
    ops.push({ weight: 1, arbitrary: fc.record({ t: fc.constant('rclose' as const), c }) })
  }
  return fc.oneof(...ops)
}

interface Got { key: string, id: number, text: string }

/** What the model reads of a server socket, for a client of the other process: what its client saw. */
function remoteSide (ws: WebSocket, seen: () => { code: number, reason: string } | undefined): TypedWebSocket {
  return {
    get isOpen () { return ws.readyState === WebSocket.OPEN },
    get closeCode () { return seen()?.code },
    get serverCloseCode () { return seen()?.code },
    get serverCloseReason () { return seen()?.reason }
  } as unknown as TypedWebSocket
}
interface Expected { id: number, text: string }

interface Client {
  n: number
  node: number
  /** A client of the node in another process: it subscribes as it connects (`/sub`), and closes only itself. */
  remote: boolean
  slow: boolean
  ws: WebSocket
  server: TypedWebSocket
  got: Got[]
  seen?: { code: number, reason: string }
  /** Closed in the model: by the test, or cut by the server (then `cut` says why). */
  closed: boolean
  cut?: { code: number, reason: string }
  /** Expected messages per key, in order. */
  expected: Map<string, Expected[]>
}

interface KeyModel {
  offset: number
  /** What history still holds. */
  kept: Expected[]
  /** Every message since the offsets last started, with the socket it excepted. */
  all: Array<Expected & { except: Client | undefined }>
  subscribers: Set<Client>
  presence: Map<Client, string>
}

/** A node in another process, as far as the model drives it. */
export interface RemoteNode {
  port: number
  publish: (key: string, text: string) => Promise<{ offset?: number, error?: string }>
  subscribers: (key: string) => Promise<number>
}

/** What a broker under test offers the model besides its nodes. */
export interface ModelBroker {
  nodes: ModelNode[]
  remote?: RemoteNode
  /** Delivery happens within publish (the in-memory broker): a node's view of a key is never behind. */
  synchronous?: boolean
  /** Kills Redis and brings it back empty, running the probes while it is down; false when it did not. */
  blip?: (whileDown: () => Promise<void>) => Promise<boolean>
  /** After a blip: resolves once each key's channel has `nodes` subscribed nodes again (the subscriber connections are back). */
  resubscribed?: (nodes: Map<string, number>) => Promise<void>
  /**
   * After every socket closed: nothing left behind (throws with what is). `touched`: the room
   * keys published or subscribed to; `published`: those holding an offset.
   */
  leftovers: (touched: Set<string>, published: Set<string>) => Promise<void>
}

function fail (message: string): never {
  throw new Error(message)
}

function same (actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual)
  const e = JSON.stringify(expected)
  if (a !== e) fail(`${what}: got ${a}, expected ${e}`)
}

async function rejectsWith (promise: Promise<unknown>, code: string, what: string): Promise<void> {
  try {
    await promise
  } catch (err) {
    const got = (err as { code?: string }).code
    if (got !== code) fail(`${what}: rejected with ${String(got)} (${(err as Error).message}), expected ${code}`)
    stats.refused++
    return
  }
  fail(`${what}: resolved, expected a rejection with ${code}`)
}

/** What the runs exercised, for the test's comment: a property that never reaches a case tests nothing. */
export const stats = { delivered: 0, recovered: 0, excepted: 0, cut: 0, lost: 0, refused: 0, closed: 0, blips: 0, races: 0, behind: 0, remote: 0 }

/** Runs one command sequence against the nodes and the model, then checks every invariant. */
export class TopicsModel {
  readonly clients: Client[] = []
  readonly keys = new Map<string, KeyModel>()
  readonly held = new Set<string>()
  readonly history: number
  readonly broker: ModelBroker
  textSeq = 0
  log: string[] = []

  constructor (broker: ModelBroker, history: number) {
    this.broker = broker
    this.history = history
    for (const key of ROOM_KEYS) this.keys.set(key, { offset: 0, kept: [], all: [], subscribers: new Set(), presence: new Map() })
  }

  /** Mostly an open client of this process; c of 6 and 7 pick among all, closed ones too. */
  client (c: number): Client | undefined {
    const local = this.clients.filter((client) => !client.remote)
    const open = local.filter((client) => !client.closed)
    const from = c < 6 && open.length > 0 ? open : local
    return from.length === 0 ? undefined : from[c % from.length]
  }

  async run (ops: Op[]): Promise<void> {
    // Every run starts with a reader on the default limits and one on `/slow` (on the other node, if any), both on key `a`.
    const last = this.broker.nodes.length - 1
    const none = { kind: 'none' }
    const start = [
      { t: 'open', node: 0, slow: false }, { t: 'open', node: last, slow: true },
      { t: 'sub', c: 0, key: 0, since: none, name: null }, { t: 'sub', c: 1, key: 0, since: none, name: null }
    ]
    for (const op of [...start, ...ops] as Op[]) {
      this.log.push(JSON.stringify(op))
      await this.step(op)
      await this.observeCuts()
    }
    await this.finish()
  }

  async step (op: Op): Promise<void> {
    const nodes = this.broker.nodes
    switch (op.t) {
      case 'open': {
        if (this.clients.filter((c) => !c.closed).length >= 5) return
        const node = nodes[op.node % nodes.length]
        const before = node.accepted.length
        const ws = new WebSocket(`ws://127.0.0.1:${node.port}${op.slow ? '/slow' : '/c'}`)
        const client: Client = { n: this.clients.length, node: op.node % nodes.length, remote: false, slow: op.slow, ws, server: undefined as unknown as TypedWebSocket, got: [], closed: false, expected: new Map() }
        ws.on('message', (data) => {
          const m = JSON.parse(String(data)) as Got & { type: string }
          client.got.push({ key: m.key, id: m.id, text: m.text })
        })
        ws.once('close', (code, reason) => { client.seen = { code, reason: String(reason) } })
        ws.on('error', () => {})
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve())
          ws.once('error', reject)
        })
        await until(() => node.accepted.length > before, 5000, 'the server to accept')
        client.server = node.accepted[before]
        this.clients.push(client)
        return
      }
      case 'sub': return await this.subscribe(op)
      case 'unsub': {
        const client = this.client(op.c)
        if (client === undefined) return
        const key = ROOM_KEYS[op.key]
        await this.delivered(client)
        await nodes[client.node].rooms.unsubscribe(client.server, key)
        this.leave(client, key)
        await this.checkPresence(key)
        return
      }
      case 'pub': {
        const key = ROOM_KEYS[op.key]
        const node = op.node % nodes.length
        // A socket is only ever excepted by its own node (it is a socket of that process).
        const candidate = op.except === null ? undefined : this.client(op.except)
        const except = candidate?.node === node ? candidate : undefined
        await this.publish(node, key, op.big ? BIG : 0, except)
        return
      }
      case 'burst': {
        const key = ROOM_KEYS[op.key]
        const node = nodes[op.node % nodes.length]
        const texts = Array.from({ length: op.n }, () => this.text(0))
        const results = await Promise.all(texts.map((text) => node.rooms.publish(key, { type: 'said', key, text })))
        const k = this.keys.get(key) as KeyModel
        same(results.map((r) => r.offset), texts.map((_, i) => k.offset + 1 + i), `burst of ${op.n} on ${key}: offsets in call order`)
        for (const text of texts) this.published(key, text, undefined)
        return
      }
      case 'bad': return await this.refused(op)
      case 'close': {
        const client = this.client(op.c)
        if (client === undefined || client.closed) return
        await this.delivered(client)
        if (op.by === 'client') client.ws.close(1000, 'done')
        else client.server.close(4000, 'bye')
        await this.settleClose(client)
        const want = op.by === 'client' ? { code: 1000, reason: 'done' } : { code: 4000, reason: 'bye' }
        if (client.cut === undefined) same(client.seen, want, `client ${client.n} close`)
        stats.closed++
        return
      }
      case 'flood': {
        // Slow readers stop reading; big messages until every paused subscriber of the key is cut (bounded).
        const key = ROOM_KEYS[op.key]
        const k = this.keys.get(key) as KeyModel
        const paused = [...k.subscribers].filter((c) => c.slow && !c.closed)
        for (const c of paused) (c.ws as unknown as { _socket: { pause (): void } })._socket.pause()
        const limit = paused.length === 0 ? 2 : 160
        for (let i = 0; i < limit && !paused.every((c) => !c.server.isOpen); i++) {
          await this.publish(op.node, key, BIG, undefined)
          if (i % 8 === 7) await sleep(1)
        }
        for (const c of paused) (c.ws as unknown as { _socket: { resume (): void } })._socket.resume()
        return
      }
      case 'ghost': {
        const node = nodes[op.node % nodes.length]
        const key = GHOST_KEYS[op.key]
        same(await node.rooms.history(key), [], `history of ${key}`)
        same(await node.rooms.presence(key), [], `presence of ${key}`)
        const client = this.client(op.c)
        if (client !== undefined && client.node === op.node % nodes.length) await node.rooms.unsubscribe(client.server, key)
        return
      }
      case 'inbox': {
        const node = nodes[op.node % nodes.length]
        const key = INBOX_KEYS[op.key]
        const { offset } = await node.inbox.publish(key, { type: 'said', key, text: this.text(0) })
        if (!(offset >= 1)) fail(`inbox publish gave offset ${offset}`)
        return
      }
      case 'race': {
        // Two nodes publish the same message at once, one excepting a socket of its own:
        // the socket misses exactly that node's publish, whichever arrives first.
        const key = ROOM_KEYS[op.key]
        const subscribed = [...(this.keys.get(key) as KeyModel).subscribers].filter((c) => !c.closed && !c.remote)
        const candidate = subscribed.length > 0 ? subscribed[op.except % subscribed.length] : this.client(op.except)
        const except = candidate === undefined || candidate.closed ? undefined : candidate
        const node = except?.node ?? 0
        const other = (node + 1) % nodes.length
        const text = this.text(0)
        const message = { type: 'said' as const, key, text }
        // Either is sent first: the other node's message may reach this node before its own answer.
        const publishMine = (): Promise<{ offset: number }> => nodes[node].rooms.publish(key, message, except === undefined ? undefined : { except: except.server })
        const publishTheirs = (): Promise<{ offset: number }> => nodes[other].rooms.publish(key, message)
        const [mine, theirs] = op.otherFirst
          ? await Promise.all([publishTheirs(), publishMine()]).then(([b, a]) => [a, b])
          : await Promise.all([publishMine(), publishTheirs()])
        const k = this.keys.get(key) as KeyModel
        stats.races++
        same([mine.offset, theirs.offset].sort((x, y) => x - y), [k.offset + 1, k.offset + 2], `race on ${key}: offsets`)
        if (mine.offset < theirs.offset) {
          this.published(key, text, except)
          this.published(key, text, undefined)
        } else {
          this.published(key, text, undefined)
          this.published(key, text, except)
        }
        return
      }
      case 'blip': return await this.blip()
      case 'ropen': return await this.remoteOpen(op)
      case 'rpub': {
        const remote = this.broker.remote
        if (remote === undefined) return
        const key = ROOM_KEYS[op.key]
        const text = this.text(0)
        const { offset, error } = await remote.publish(key, text)
        if (error !== undefined) fail(`publish on ${key} in the other process: ${error}`)
        same(offset, (this.keys.get(key) as KeyModel).offset + 1, `publish on ${key} in the other process`)
        this.published(key, text, undefined)
        return
      }
      case 'rclose': {
        const open = this.clients.filter((c) => c.remote && !c.closed)
        if (open.length === 0) return
        const client = open[op.c % open.length]
        await this.delivered(client)
        client.ws.close(1000, 'done')
        await this.settleClose(client)
        if (client.cut === undefined) same(client.seen, { code: 1000, reason: 'done' }, `client ${client.n} close`)
      }
    }
  }

  /**
   * Waits for what the client is due (bounded; checkDelivery names what is missing). From
   * another node a message is on its way after its publish resolved: one still in flight
   * when the socket unsubscribes is not promised to it.
   */
  async delivered (client: Client): Promise<void> {
    const due = [...client.expected.values()].reduce((n, list) => n + list.length, 0)
    await until(() => client.got.length >= due || !client.server.isOpen, 3000).catch(() => {})
  }

  text (size: number): string {
    const id = `t${this.textSeq++}`
    return size === 0 ? id : id + '.'.repeat(size)
  }

  async subscribe (op: Extract<Op, { t: 'sub' }>): Promise<void> {
    const client = this.client(op.c)
    if (client === undefined) return
    const key = ROOM_KEYS[op.key]
    const k = this.keys.get(key) as KeyModel
    const rooms = this.broker.nodes[client.node].rooms
    let since: number | undefined
    if (op.since.kind === 'back') since = Math.max(0, k.offset - op.since.n)
    else if (op.since.kind === 'ahead') since = k.offset + 1
    const options = { since, presence: op.name === null ? undefined : { name: op.name } }
    const what = `client ${client.n} subscribes to ${key} (since ${String(since)}, offset ${k.offset})`
    if (client.closed) {
      await rejectsWith(rooms.subscribe(client.server, key, options), 'FST_WS_CLOSED', what)
      return
    }
    // Where the node's view of the key may lag (Redis, another local subscriber holds the key):
    // the offset it answers lies between what its sockets got before the call and the latest.
    const low = this.lowest(client, key)
    const result = await rooms.subscribe(client.server, key, options)
    this.held.add(key)
    if (k.subscribers.has(client)) {
      // The node's view of the key: on Redis a message published is on its way for a while.
      const got = client.got.filter((m) => m.key === key)
      const low = this.broker.synchronous === true ? k.offset : got.length === 0 ? 0 : got[got.length - 1].id
      if (result.recovered || result.offset < low || result.offset > k.offset) {
        fail(`${what}, already subscribed: got ${JSON.stringify(result)}, expected recovered false and an offset from ${low} to ${k.offset}`)
      }
    } else {
      this.joined(client, key, since, result, low, what)
    }
    if (op.name !== null) k.presence.set(client, op.name)
    await this.checkPresence(key)
  }

  /** The lowest offset a node may answer a new subscription with: what its other subscribers of the key got before the call. */
  lowest (client: Client, key: string): number {
    const k = this.keys.get(key) as KeyModel
    const others = [...k.subscribers].filter((c) => c !== client && c.node === client.node && !c.closed)
    if (this.broker.synchronous === true || others.length === 0) return k.offset
    return Math.max(0, ...others.flatMap((c) => c.got.filter((m) => m.key === key).map((m) => m.id)))
  }

  /** A new subscription answered `result`: checked against the model, and what the client is due from now on. */
  joined (client: Client, key: string, since: number | undefined, result: { offset: number, recovered: boolean }, low: number, what: string): void {
    const k = this.keys.get(key) as KeyModel
    const offset = result.offset
    if (offset < low || offset > k.offset) fail(`${what}: offset ${offset}, expected ${low === k.offset ? low : `${low} to ${k.offset}`}`)
    let recovered = false
    if (since !== undefined && since <= offset) {
      const missed = k.kept.filter((e) => e.id > since && e.id <= offset)
      recovered = missed.length === offset - since
      if (recovered) this.expect(client, key).push(...missed)
      if (recovered && missed.length > 0) stats.recovered++
    }
    same(result, { offset, recovered }, what)
    if (offset < k.offset) stats.behind++
    // Messages after the node's view are on their way: they arrive live.
    for (const e of k.all) if (e.id > offset && e.except !== client) this.expect(client, key).push({ id: e.id, text: e.text })
    k.subscribers.add(client)
  }

  /** A client of the node in another process, subscribed to the key (with `since`) as it connects. */
  async remoteOpen (op: Extract<Op, { t: 'ropen' }>): Promise<void> {
    const remote = this.broker.remote
    if (remote === undefined || this.clients.filter((c) => !c.closed).length >= 7) return
    const key = ROOM_KEYS[op.key]
    const k = this.keys.get(key) as KeyModel
    let since: number | undefined
    if (op.since.kind === 'back') since = Math.max(0, k.offset - op.since.n)
    else if (op.since.kind === 'ahead') since = k.offset + 1
    const ws = new WebSocket(`ws://127.0.0.1:${remote.port}/sub?key=${key}${since === undefined ? '' : `&since=${since}`}`)
    const client: Client = {
      n: this.clients.length, node: this.broker.nodes.length, remote: true, slow: false, ws, server: remoteSide(ws, () => client.seen), got: [], closed: false, expected: new Map()
    }
    let hello: { offset: number, recovered: boolean } | undefined
    ws.on('message', (data) => {
      const m = JSON.parse(String(data)) as Got & { type: string, offset: number, recovered: boolean }
      if (m.type === 'hello') hello = { offset: m.offset, recovered: m.recovered }
      else client.got.push({ key: m.key, id: m.id, text: m.text })
    })
    ws.once('close', (code, reason) => { client.seen = { code, reason: String(reason) } })
    ws.on('error', () => {})
    const low = this.lowest(client, key)
    const what = `client ${client.n} of the other process subscribes to ${key} (since ${String(since)}, offset ${k.offset})`
    await until(() => hello !== undefined || client.seen !== undefined, 10_000, 'the hello of the other process').catch(() => {})
    if (hello === undefined) fail(`${what}: no hello (closed ${JSON.stringify(client.seen)})`)
    this.clients.push(client)
    this.held.add(key)
    stats.remote++
    this.joined(client, key, since, hello, low, what)
  }

  expect (client: Client, key: string): Expected[] {
    let list = client.expected.get(key)
    if (list === undefined) client.expected.set(key, list = [])
    return list
  }

  leave (client: Client, key: string): void {
    const k = this.keys.get(key) as KeyModel
    k.subscribers.delete(client)
    k.presence.delete(client)
  }

  async publish (node: number, key: string, size: number, except: Client | undefined): Promise<void> {
    const text = this.text(size)
    const rooms = this.broker.nodes[node % this.broker.nodes.length].rooms
    const { offset } = await rooms.publish(key, { type: 'said', key, text }, except === undefined ? undefined : { except: except.server })
    const k = this.keys.get(key) as KeyModel
    same(offset, k.offset + 1, `publish on ${key}`)
    this.published(key, text, except)
  }

  published (key: string, text: string, except: Client | undefined): void {
    const k = this.keys.get(key) as KeyModel
    const entry = { id: ++k.offset, text }
    k.all.push({ ...entry, except })
    this.held.add(key)
    if (this.history > 0) {
      k.kept.push(entry)
      if (k.kept.length > this.history) k.kept.shift()
    }
    for (const client of k.subscribers) {
      if (client !== except) this.expect(client, key).push(entry)
      else stats.excepted++
    }
  }

  async refused (op: Extract<Op, { t: 'bad' }>): Promise<void> {
    const nodes = this.broker.nodes
    const rooms = nodes[op.node % nodes.length].rooms
    const key = ROOM_KEYS[0]
    switch (op.kind) {
      case 'outbound':
        await rejectsWith(rooms.publish(key, { type: 'said', key, text: 5 } as never), 'FST_WS_INVALID_OUTBOUND', 'a message that breaks the schema')
        return
      case 'key':
        await rejectsWith(rooms.publish('', { type: 'said', key: '', text: 'x' }), 'FST_WS_INVALID_OPTION', 'an empty key')
        return
      case 'since':
      case 'presence': {
        const client = this.client(op.c)
        if (client === undefined) return
        const bad = op.kind === 'since' ? { since: -1 } : { presence: { name: 7 } as never }
        const code = op.kind === 'since' ? 'FST_WS_INVALID_OPTION' : 'FST_WS_INVALID_PRESENCE'
        await rejectsWith(nodes[client.node].rooms.subscribe(client.server, key, bad), code, `subscribe with a bad ${op.kind}`)
      }
    }
  }

  /** Clients closed by the test or cut by the server: the server saw them close and their keys let go of them. */
  async settleClose (...clients: Client[]): Promise<void> {
    for (const client of clients) {
      await until(() => client.seen !== undefined && client.server.closeCode !== undefined, 10_000, `client ${client.n} to close`)
      if (client.remote) continue
      const node = this.broker.nodes[client.node]
      await until(() => ROOM_KEYS.every((key) => !node.rooms.subscribers(key).has(client.server)), 5000, `client ${client.n} to leave its keys`)
    }
    for (const client of clients) {
      client.closed = true
      for (const key of ROOM_KEYS) this.leave(client, key)
    }
    const remote = this.broker.remote
    if (remote !== undefined && clients.some((c) => c.remote)) {
      for (const key of ROOM_KEYS) {
        const want = [...(this.keys.get(key) as KeyModel).subscribers].filter((c) => c.remote).length
        let count = -1
        for (let attempt = 0; attempt < 100 && count !== want; attempt++) {
          if (attempt > 0) await sleep(20)
          count = await remote.subscribers(key)
        }
        if (count !== want) fail(`the other process has ${count} subscribers of ${key}, expected ${want}`)
      }
    }
    for (const key of ROOM_KEYS) await this.checkPresence(key)
  }

  /** Sockets the model holds open but the server closed: only slow readers (1008) or keys Redis lost (1012). */
  async observeCuts (): Promise<void> {
    const cut: Client[] = []
    for (const client of this.clients) {
      if (client.closed || client.server.isOpen) continue
      const said = `${String(client.server.serverCloseCode)} ${String(client.server.serverCloseReason)}`
      const known = said === '1008 send buffer full' || (said === '1012 missed messages' && this.broker.blip !== undefined)
      if (!known) fail(`client ${client.n} was closed by the server with ${said}`)
      if (client.remote && !said.startsWith('1012')) fail(`client ${client.n} of the other process was closed with ${said}`)
      if (said.startsWith('1008') && !client.slow) fail(`client ${client.n} on the default limits was cut for its send buffer`)
      client.cut = { code: client.server.serverCloseCode as number, reason: client.server.serverCloseReason as string }
      if (client.cut.code === 1008) stats.cut++
      else stats.lost++
      cut.push(client)
    }
    if (cut.length > 0) await this.settleClose(...cut)
  }

  /** Presence as the model has it, on every node (another node's view may lag by a command: polled, bounded). */
  async checkPresence (key: string): Promise<void> {
    const k = this.keys.get(key) as KeyModel
    const expected = JSON.stringify([...k.presence.values()].sort())
    for (const node of this.broker.nodes) {
      let names = ''
      for (let attempt = 0; attempt < 100; attempt++) {
        names = JSON.stringify((await node.rooms.presence(key)).map((m) => m.name).sort())
        if (names === expected) break
        await sleep(10)
      }
      if (names !== expected) fail(`presence of ${key}: got ${names}, expected ${expected}`)
    }
  }

  async blip (): Promise<void> {
    const blip = this.broker.blip
    if (blip === undefined) return
    const open = this.clients.find((c) => !c.closed && !c.remote)
    const done = await blip(async () => {
      await rejectsWith(this.broker.nodes[0].rooms.publish('a', { type: 'said', key: 'a', text: 'down' }), 'FST_WS_BROKER_UNAVAILABLE', 'a publish while Redis is down')
      if (open !== undefined) {
        await rejectsWith(this.broker.nodes[open.node].rooms.subscribe(open.server, 'ghost1'), 'FST_WS_BROKER_UNAVAILABLE', 'a subscribe while Redis is down')
      }
    })
    if (!done) return
    stats.blips++
    // Redis came back empty: every key it held is lost, those only subscribed to as well (a
    // message may have been on its way); their subscribers are closed with 1012; offsets start again.
    const lost = new Set<Client>()
    for (const k of this.keys.values()) {
      for (const c of k.subscribers) if (!c.closed) lost.add(c)
    }
    await until(() => [...lost].every((c) => !c.server.isOpen), 15_000, 'the subscribers of lost keys to be closed with 1012')
    for (const k of this.keys.values()) {
      k.offset = 0
      k.kept = []
      k.all = []
    }
    await this.observeCuts()
    // A publish before a node's subscriber connection is back would miss that node (its
    // subscribers then get 1012, rightly): the model goes on once every node listens again.
    const listening = new Map<string, number>()
    for (const [key, k] of this.keys) {
      const nodes = new Set([...k.subscribers].filter((c) => !c.closed).map((c) => c.node))
      if (nodes.size > 0) listening.set(key, nodes.size)
    }
    await this.broker.resubscribed?.(listening)
  }

  /** Every message delivered, then every socket closed: the last checks. */
  async finish (): Promise<void> {
    const open = this.clients.filter((c) => !c.closed)
    const count = (c: Client): number => [...c.expected.values()].reduce((n, list) => n + list.length, 0)
    // (What did not arrive, checkDelivery names.)
    await until(() => open.every((c) => c.got.length >= count(c) || !c.server.isOpen), 3000).catch(() => {})
    await this.observeCuts()
    // Time for a message too many to arrive.
    await sleep(20)
    for (const client of this.clients) this.checkDelivery(client)
    for (const client of this.clients) stats.delivered += client.got.length
    const left = this.clients.filter((c) => !c.closed)
    for (const client of left) client.ws.close()
    await this.settleClose(...left)
    for (const node of this.broker.nodes) {
      for (const key of [...ROOM_KEYS, ...GHOST_KEYS]) {
        if (node.rooms.subscribers(key).size !== 0) fail(`${key} still has ${node.rooms.subscribers(key).size} subscribers`)
        same(await node.rooms.presence(key), [], `presence of ${key} once every socket closed`)
      }
      for (const [socket, baseline] of node.baselines) same(listenerCounts(socket), baseline, 'listeners of a closed socket')
    }
    const published = new Set(ROOM_KEYS.filter((key) => (this.keys.get(key) as KeyModel).offset > 0))
    await this.broker.leftovers(this.held, published)
  }

  checkDelivery (client: Client): void {
    const byKey = new Map<string, Got[]>()
    for (const m of client.got) {
      let list = byKey.get(m.key)
      if (list === undefined) byKey.set(m.key, list = [])
      list.push(m)
    }
    for (const key of new Set([...byKey.keys(), ...client.expected.keys()])) {
      const got = byKey.get(key) ?? []
      const expected = client.expected.get(key) ?? []
      const what = `client ${client.n}${client.slow ? ' (slow)' : ''} on ${key}`
      const short = got.length < expected.length
      if (got.length > expected.length) fail(`${what}: ${got.length} messages, expected ${expected.length}: ${JSON.stringify(got.map((m) => m.id))} vs ${JSON.stringify(expected.map((e) => e.id))}`)
      if (short && client.cut === undefined) fail(`${what}: only ${got.length} of ${expected.length} messages and not told why (closed ${JSON.stringify(client.seen)})`)
      // A text is its number, then padding: shown as number and length.
      const show = (m: Expected): string => `${m.id} ${m.text.replace(/\.+$/, '')}${m.text.endsWith('.') ? `+${m.text.length}` : ''}`
      same(got.map(show), expected.slice(0, got.length).map(show), `${what}: messages`)
      if (short) {
        const code = client.seen?.code
        const told = client.cut !== undefined && (code === client.cut.code || code === 1006)
        if (!told) fail(`${what}: short, and the client saw ${JSON.stringify(client.seen)} for a cut with ${JSON.stringify(client.cut)}`)
      }
    }
  }

  /** Closes whatever is still open (after a failed run). */
  destroy (): void {
    for (const c of this.clients) c.ws.terminate()
  }
}
