import { randomUUID } from 'node:crypto'
import type { ErrorObject, ValidateFunction } from 'ajv'
import fastJson from 'fast-json-stringify'
import WebSocket from 'ws'
import type { Broker, BrokerEntry, BrokerSink, BrokerTopic } from './broker'
import { CloseCode, CloseReason } from './close-codes'
import { topicDefaults } from './defaults'
import type { TopicOptions as PublicTopicOptions } from '../types'
import { publishChannel } from './diagnostics'
import { createAjv, explainValidation } from './codec'
import { buildFrame } from './internals'
import type { WebSocketConnection } from './connection'
import { exampleMessage, outboundRefusal, routeOutbound, type RouteOutbound } from './outbound-fit'
import {
  FST_WS_DUPLICATE_TOPIC, FST_WS_INVALID_OPTION, FST_WS_INVALID_OUTBOUND,
  FST_WS_INVALID_PRESENCE, FST_WS_OUTBOUND_CANNOT_HOLD, FST_WS_TOPIC_NOT_READY, WebSocketClosedError
} from './errors'

type Json = Record<string, unknown>

/** The public TopicOptions, for any schema. */
export type TopicOptions = PublicTopicOptions<object, string, object | undefined>

/** What documentation generators read under `Symbol.for('fastify-typed-websocket.topics')`. */
export interface TopicDescription {
  name: string
  message: object
  presence: object | undefined
  history: number
  historyTtl: number
  presenceTtl: number
  offsetField: string | undefined
}

/** A message on its way to a socket: its offset, text and the frame built once for all. */
interface Delivery {
  offset: number
  data: string
  frame: Buffer
  // The `$/message` envelope of the client subscribers, built once on first use.
  envelope?: { data: string, frame: Buffer } | undefined
}

// A subscriber that is replaying history: live messages wait here until it is done.
type Backlog = Delivery[]

/** The subscribers of one (topic, key) on this node. */
class KeyState {
  // Live subscribers map to null; recovering ones to their backlog.
  readonly sockets = new Map<WebSocketConnection, Backlog | null>()
  readonly joining = new Set<WebSocketConnection>()
  offset = 0
  subscribed = false
  // Deliveries that arrived before the broker's subscribe resolved.
  early: BrokerEntry[] | undefined = []
  // Publishes of this node with `except` whose delivery has not passed by yet.
  exceptions: Exception[] | undefined = undefined
  // Sockets that already hold the messages up to an offset this node has not received yet.
  holding: Map<WebSocketConnection, number> | undefined = undefined
  // Sockets subscribed by the client (`$/subscribe`): they get the `$/message` envelope.
  clients: Set<WebSocketConnection> | undefined = undefined
  // The envelope's text up to its offset: `{"jsonrpc":"2.0","method":"$/message","params":{"topic":…,"key":…,"offset":`
  readonly head: string
  ready: Promise<void>
  constructor (topic: string, key: string, ready: (state: KeyState) => Promise<void>) {
    this.head = `{"jsonrpc":"2.0","method":"$/message","params":{"topic":${JSON.stringify(topic)},"key":${JSON.stringify(key)},"offset":`
    this.ready = ready(this)
  }

  /** Subscribed, or still joining: not unsubscribed or closed meanwhile. */
  holds (socket: WebSocketConnection): boolean {
    return this.sockets.has(socket) || this.joining.has(socket)
  }
}

/** The `$/message` text of one message of a key. */
function envelopeText (state: KeyState, offset: number, data: string): string {
  return `${state.head}${offset},"data":${data}}}`
}

/** Writes a delivery to one socket: the topic frame, or the envelope to a client subscriber. */
function write (state: KeyState, socket: WebSocketConnection, d: Delivery): void {
  if (state.clients?.has(socket) === true) {
    if (d.envelope === undefined) {
      const data = envelopeText(state, d.offset, d.data)
      d.envelope = { data, frame: buildFrame(data) }
    }
    socket.sendFrame(d.envelope.frame, d.envelope.data)
  } else {
    socket.sendFrame(d.frame, d.data)
  }
}

// A publish of this node with `except`, until its delivery passes by: known by
// its tag (unique to the publish) and, once the broker answered, by its offset.
interface Exception { socket: WebSocketConnection, tag: string, offset: number | undefined, delivered: boolean }

function dropException (state: KeyState, exception: Exception): void {
  const list = state.exceptions as Exception[]
  const at = list.indexOf(exception)
  if (at !== -1) list.splice(at, 1)
  if (list.length === 0) state.exceptions = undefined
}

/**
 * The socket a delivery must skip. Each exception is dropped once: here when its
 * delivery comes (by tag, or by offset once publish() knows it) or passed by
 * untagged after publish() learnt its offset; otherwise by publish() itself.
 */
function exceptFor (state: KeyState, entry: BrokerEntry): WebSocketConnection | undefined {
  let skip: WebSocketConnection | undefined
  for (const exception of [...state.exceptions as Exception[]]) {
    if (exception.tag === entry.tag || exception.offset === entry.offset) {
      skip = exception.socket
      exception.delivered = true
      dropException(state, exception)
    } else if (exception.offset !== undefined && exception.offset < entry.offset) {
      dropException(state, exception)
    }
  }
  return skip
}

const kMemberships = Symbol('fastify-typed-websocket.topics')
type Member = WebSocketConnection & { [kMemberships]?: { id: string, keys: Set<[Topic, string]> } }

function keyError (topic: string, key: unknown): Error | undefined {
  if (typeof key === 'string' && key !== '') return undefined
  return new FST_WS_INVALID_OPTION(`Topic "${topic}"`, `a key must be a non-empty string, got ${typeof key === 'string' ? '""' : typeof key}`)
}

/** A declared topic: a family of keys whose messages match one schema. */
export class Topic {
  readonly name: string
  readonly settings: BrokerTopic
  readonly description: TopicDescription
  readonly #node: TopicNode
  readonly #validate: ValidateFunction
  readonly #stringify: (value: unknown) => string
  readonly #offsetField: string | undefined
  readonly #head: string | undefined
  readonly #validatePresence: ValidateFunction | undefined
  readonly #keys = new Map<string, KeyState>()
  // Broker unsubscribes still under way, per key: a new first subscriber waits for it.
  readonly #leaving = new Map<string, Promise<void>>()
  // A message of the topic (null: none found), and per route serializer why it cannot send it ('' when it can).
  #example: { value: unknown } | null | undefined = undefined
  readonly #refusals = new WeakMap<object, string>()

  constructor (node: TopicNode, name: string, options: TopicOptions, schemas: Json) {
    const where = `Topic "${name}"`
    const { message, offsetField, presence } = options
    if (message === null || typeof message !== 'object') throw new FST_WS_INVALID_OPTION(where, 'message must be a schema object')
    const history = count(where, 'history', options.history, topicDefaults.history)
    const historyTtl = count(where, 'historyTtl', options.historyTtl, topicDefaults.historyTtl)
    const presenceTtl = count(where, 'presenceTtl', options.presenceTtl, topicDefaults.presenceTtl)
    if (presence !== undefined && (presence === null || typeof presence !== 'object')) {
      throw new FST_WS_INVALID_OPTION(where, 'presence must be a schema object')
    }
    let serialized = message as Json
    if (offsetField !== undefined) {
      const properties = (message as Json).properties as Json | undefined
      const field = properties?.[offsetField] as Json | undefined
      if (field?.type !== 'integer') {
        throw new FST_WS_INVALID_OPTION(where, `offsetField "${String(offsetField)}" must name an integer property of the message`)
      }
      // The offset goes first, so the text splits into head + offset + body.
      const { [offsetField]: _, ...rest } = properties as Json
      serialized = { ...serialized, properties: { [offsetField]: field, ...rest } }
      this.#head = `{${JSON.stringify(offsetField)}:`
    }
    const ajv = createAjv(schemas)
    try {
      this.#validate = ajv.compile(message)
      this.#stringify = fastJson(serialized, { schema: schemas as Record<string, never> })
      this.#validatePresence = presence === undefined ? undefined : ajv.compile(presence)
    } catch (err) {
      throw new FST_WS_INVALID_OPTION(where, `the schema does not compile: ${(err as Error).message}`)
    }
    this.name = name
    this.#node = node
    this.#offsetField = offsetField
    this.settings = { name, history, historyTtl, presenceTtl }
    this.description = Object.freeze({ name, message, presence, history, historyTtl, presenceTtl, offsetField })
  }

  async publish (key: string, message: unknown, options?: { except?: WebSocketConnection }): Promise<{ offset: number }> {
    const bad = keyError(this.name, key)
    if (bad !== undefined) throw bad
    const field = this.#offsetField
    const checked = field === undefined ? message : { ...(message as Json), [field]: 1 }
    if (!this.#validate(checked)) {
      const errors = this.#validate.errors as ErrorObject[]
      const err = new FST_WS_INVALID_OUTBOUND(explainValidation(errors, this.description.message, checked))
      Object.assign(err, { validation: errors })
      throw err
    }
    let head: string | undefined
    let body: string
    if (field === undefined) {
      body = this.#stringify(message)
    } else {
      head = this.#head as string
      const text = this.#stringify({ ...(message as Json), [field]: 0 })
      body = text.slice(head.length + 1)
    }
    const broker = this.#node.broker(this.name, 'publish')
    const except = options?.except
    // Only a key with local subscribers has a delivery to skip on this node.
    const state = except === undefined ? undefined : this.#keys.get(key)
    let exception: Exception | undefined
    if (state !== undefined) {
      exception = { socket: except as WebSocketConnection, tag: this.#node.tag(), offset: undefined, delivered: false }
      ;(state.exceptions ??= []).push(exception)
    }
    try {
      const offset = await broker.publish(this.settings, key, { head, body, tag: exception?.tag })
      if (exception !== undefined && !exception.delivered) {
        // Its delivery passed by untagged (a broker that does not hand tags back): nothing left to skip.
        if ((state as KeyState).offset >= offset) dropException(state as KeyState, exception)
        else exception.offset = offset
      }
      if (publishChannel.hasSubscribers) publishChannel.publish({ topic: this.name, key, offset, subscribers: this.subscribers(key).size })
      return { offset }
    } catch (err) {
      // (A publish can be delivered and still fail: Redis ran it, and its answer was lost.)
      if (exception !== undefined && !exception.delivered) dropException(state as KeyState, exception)
      throw err
    }
  }

  /**
   * `client`: subscribed by the client's `$/subscribe`, it gets `$/message` envelopes
   * (the route's outbound need not hold the topic's messages).
   */
  async subscribe (socket: WebSocketConnection, key: string, options?: { since?: number, presence?: unknown }, client = false): Promise<{ offset: number, recovered: boolean }> {
    const bad = keyError(this.name, key)
    if (bad !== undefined) throw bad
    const since = options?.since
    if (since !== undefined && (!Number.isSafeInteger(since) || since < 0)) {
      throw new FST_WS_INVALID_OPTION(`Topic "${this.name}"`, `since must be an integer >= 0, got ${String(since)}`)
    }
    let presence: string | undefined
    if (options?.presence !== undefined) {
      const validate = this.#validatePresence
      if (validate === undefined) throw new FST_WS_INVALID_PRESENCE(this.name, 'the topic declares no presence schema')
      if (!validate(options.presence)) {
        throw new FST_WS_INVALID_PRESENCE(this.name, explainValidation(validate.errors as ErrorObject[], this.description.presence, options.presence))
      }
      presence = JSON.stringify(options.presence)
    }
    if (socket.raw.readyState !== WebSocket.OPEN) throw new WebSocketClosedError('CLOSED')
    if (!client) this.#checkOutbound(socket)
    const broker = this.#node.broker(this.name, 'subscribe')
    const member = this.#node.member(socket)
    let state = this.#keys.get(key)
    const existing = state?.sockets.has(socket) === true || state?.joining.has(socket) === true
    if (state === undefined) {
      const leaving = this.#leaving.get(key)
      state = new KeyState(this.name, key, async (s) => {
        if (leaving !== undefined) await leaving
        const offset = await broker.subscribe(this.settings, key)
        s.offset = offset
        s.subscribed = true
        const early = s.early as BrokerEntry[]
        s.early = undefined
        for (const entry of early) if (entry.offset > offset) this.deliver(key, entry)
      })
      this.#keys.set(key, state)
    }
    if (!existing) {
      state.joining.add(socket)
      member.keys.add([this, key])
    }
    if (client) (state.clients ??= new Set()).add(socket)
    let joined = false
    try {
      await state.ready
      // Closed or unsubscribed while the broker answered: join no one.
      if (presence !== undefined && state.holds(socket)) {
        joined = true
        await broker.join(this.settings, key, member.id, presence)
        // ...or while it joined: take the member back, or it outlives the socket.
        if (!state.holds(socket)) await broker.leave(this.settings, key, member.id)
      }
    } catch (err) {
      // A join that got no answer in time may still be run by the broker: take it back.
      if (joined && !existing) broker.leave(this.settings, key, member.id).catch(() => {})
      state.joining.delete(socket)
      if (!existing) state.clients?.delete(socket)
      this.#release(key, state)
      throw err
    }
    if (!state.joining.has(socket)) {
      // Unsubscribed or closed meanwhile.
      if (!existing) throw new WebSocketClosedError('CLOSED')
      return { offset: state.offset, recovered: false }
    }
    state.joining.delete(socket)
    const offset = state.offset
    if (since !== undefined && since > offset && broker.latest !== undefined) return await this.#ahead(socket, key, state, since, broker)
    if (since === undefined || since > offset) {
      state.sockets.set(socket, null)
      return { offset, recovered: false }
    }
    if (since === offset) {
      state.sockets.set(socket, null)
      return { offset, recovered: true }
    }
    const backlog: Backlog = []
    state.sockets.set(socket, backlog)
    let recovered = false
    try {
      const entries = await broker.history(this.settings, key, { since, limit: offset - since })
      recovered = entries.length === offset - since && entries.every((e, i) => e.offset === since + 1 + i)
      if (recovered && state.sockets.get(socket) === backlog) {
        for (const e of entries) {
          const data = client ? envelopeText(state, e.offset, e.data) : e.data
          socket.sendFrame(buildFrame(data), data)
        }
      }
    } catch (err) {
      socket.log.warn({ err, topic: this.name, key }, 'topic history unavailable; subscribed without recovery')
    }
    if (state.sockets.get(socket) === backlog) {
      state.sockets.set(socket, null)
      for (const d of backlog) write(state, socket, d)
    }
    return { offset, recovered }
  }

  /**
   * Topic frames bypass the socket's serializer: a route whose outbound cannot hold the
   * topic's messages would send what it never declared. Checked once per route, with an
   * example message of the topic (TypeScript checks the same at compile time).
   */
  #checkOutbound (socket: WebSocketConnection): void {
    // Every connection is opened by a route, which registered its serializer first.
    const route = routeOutbound.get(socket.raw) as RouteOutbound
    let refusal = this.#refusals.get(route.codec)
    if (refusal === undefined) {
      if (this.#example === undefined) {
        const field = this.#offsetField
        this.#example = exampleMessage(this.description.message, (value) => {
          return value !== null && typeof value === 'object' && this.#validate(field === undefined ? value : { ...value, [field]: 1 })
        }) ?? null
      }
      const example = this.#example
      refusal = example === null ? '' : outboundRefusal(route.codec, this.#offsetField === undefined ? example.value : { ...(example.value as Json), [this.#offsetField]: 1 }) ?? ''
      this.#refusals.set(route.codec, refusal)
    }
    if (refusal !== '') throw new FST_WS_OUTBOUND_CANNOT_HOLD(this.name, route.url, refusal)
  }

  /**
   * `since` is ahead of this node's view of the key. Either the node lags (the
   * client got messages on another node that are still on their way here): it
   * is recovered, and what it holds is not sent again. Or `since` is ahead of
   * the broker too (offsets started again): not recovered.
   */
  async #ahead (socket: WebSocketConnection, key: string, state: KeyState, since: number, broker: Broker): Promise<{ offset: number, recovered: boolean }> {
    const backlog: Backlog = []
    state.sockets.set(socket, backlog)
    let latest = state.offset
    try {
      latest = await (broker.latest as (topic: BrokerTopic, key: string) => Promise<number>)(this.settings, key)
    } catch (err) {
      socket.log.warn({ err, topic: this.name, key }, 'topic offset unavailable; subscribed without recovery')
    }
    const recovered = since <= latest
    if (state.sockets.get(socket) === backlog) {
      state.sockets.set(socket, null)
      for (const d of backlog) if (!recovered || d.offset > since) write(state, socket, d)
      if (recovered && state.offset < since) (state.holding ??= new Map()).set(socket, since)
    }
    return recovered ? { offset: since, recovered } : { offset: state.offset, recovered }
  }

  /** A message from the broker: one frame, written to every local subscriber. */
  deliver (key: string, entry: BrokerEntry): void {
    const state = this.#keys.get(key)
    if (state === undefined) return
    if (state.early !== undefined) {
      state.early.push(entry)
      return
    }
    if (entry.offset <= state.offset) return
    state.offset = entry.offset
    const except = state.exceptions === undefined ? undefined : exceptFor(state, entry)
    let delivery: Delivery | undefined
    const holding = state.holding
    for (const [socket, backlog] of state.sockets) {
      if (socket === except) continue
      if (holding !== undefined && holding.has(socket)) {
        if (entry.offset <= (holding.get(socket) as number)) continue
        holding.delete(socket)
        if (holding.size === 0) state.holding = undefined
      }
      delivery ??= { offset: entry.offset, data: entry.data, frame: buildFrame(entry.data) }
      if (backlog === null) write(state, socket, delivery)
      else backlog.push(delivery)
    }
  }

  /** The broker cannot vouch for the order of this key any more: its subscribers must resynchronise. */
  lost (key: string, offset: number): void {
    const state = this.#keys.get(key)
    if (state === undefined) return
    state.offset = offset
    for (const socket of state.sockets.keys()) socket.close(CloseCode.ServiceRestart, CloseReason.MissedMessages)
  }

  async unsubscribe (socket: WebSocketConnection, key: string): Promise<void> {
    const state = this.#keys.get(key)
    if (state === undefined) return
    const member = (socket as Member)[kMemberships]
    if (member !== undefined) {
      for (const entry of member.keys) if (entry[0] === this && entry[1] === key) member.keys.delete(entry)
    }
    const was = state.sockets.delete(socket) || state.joining.delete(socket)
    state.holding?.delete(socket)
    state.clients?.delete(socket)
    const broker = this.#node.broker(this.name, 'unsubscribe')
    const left = this.#release(key, state)
    if (was && member !== undefined && this.#validatePresence !== undefined) {
      await broker.leave(this.settings, key, member.id)
    }
    await left
  }

  /** After the last local subscriber: the node leaves the key at the broker. */
  #release (key: string, state: KeyState): Promise<void> | undefined {
    if (state.sockets.size > 0 || state.joining.size > 0 || this.#keys.get(key) !== state) return undefined
    this.#keys.delete(key)
    const broker = this.#node.broker(this.name, 'unsubscribe')
    // Released while the broker is still subscribing: leave once it has (nothing to leave if it failed).
    const left = state.subscribed
      ? broker.unsubscribe(this.settings, key)
      : state.ready.then(() => broker.unsubscribe(this.settings, key), () => {})
    const leaving = left.finally(() => {
      if (this.#leaving.get(key) === leaving) this.#leaving.delete(key)
    })
    this.#leaving.set(key, leaving)
    return leaving
  }

  subscribers (key: string): ReadonlySet<WebSocketConnection> {
    const state = this.#keys.get(key)
    return new Set(state === undefined ? [] : state.sockets.keys())
  }

  async history (key: string, options?: { since?: number, limit?: number }): Promise<Array<{ offset: number, message: unknown }>> {
    const bad = keyError(this.name, key)
    if (bad !== undefined) throw bad
    const entries = await this.#node.broker(this.name, 'history').history(this.settings, key, {
      since: options?.since,
      limit: options?.limit ?? this.settings.history
    })
    return entries.map(e => ({ offset: e.offset, message: JSON.parse(e.data) }))
  }

  async presence (key: string): Promise<unknown[]> {
    const bad = keyError(this.name, key)
    if (bad !== undefined) throw bad
    const members = await this.#node.broker(this.name, 'presence').presence(this.settings, key)
    return members.map(m => JSON.parse(m))
  }

  /** Every key this node holds, for shutdown. */
  async leaveAll (): Promise<void> {
    const pending: Array<Promise<void>> = []
    for (const [key, state] of this.#keys) {
      for (const socket of [...state.sockets.keys(), ...state.joining]) pending.push(this.unsubscribe(socket, key))
    }
    pending.push(...this.#leaving.values())
    await Promise.allSettled(pending)
  }
}

function count (where: string, name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new FST_WS_INVALID_OPTION(where, `${name} must be an integer >= 0, got ${String(value)}`)
  }
  return value
}

function onSocketClose (this: WebSocket): void {
  const member = (this as unknown as { [kMemberships]: Member })[kMemberships]
  const memberships = member[kMemberships] as { keys: Set<[Topic, string]> }
  for (const [topic, key] of [...memberships.keys]) {
    topic.unsubscribe(member, key).catch((err: unknown) => member.log.warn({ err, topic: topic.name, key }, 'topic unsubscribe failed'))
  }
}

/** The topics of one app and the broker behind them. */
export class TopicNode implements BrokerSink {
  readonly topics = new Map<string, Topic>()
  readonly descriptions = new Map<string, TopicDescription>()
  readonly #broker: Broker
  // Publish tags: unique to this node (a random prefix) and to each publish (a counter).
  readonly #tagPrefix = randomUUID().slice(0, 13)
  #tags = 0
  #starting = false
  #started = false
  #closed = false

  constructor (broker: Broker) {
    this.#broker = broker
  }

  /** A tag no other publish carries (see `BrokerMessage.tag`). */
  tag (): string {
    return this.#tagPrefix + (++this.#tags).toString(36)
  }

  /** The broker, once the app is ready and until it is closed; `topic` and `method` name the call that needs it. */
  broker (topic: string, method: string): Broker {
    if (this.#closed) throw new FST_WS_TOPIC_NOT_READY(topic, method, 'after the app was closed')
    if (!this.#started) {
      throw new FST_WS_TOPIC_NOT_READY(topic, method,
        'before the app was ready: topics work once "await app.ready()" or "await app.listen()" has resolved (in routes, in onReady hooks, or after listen)')
    }
    return this.#broker
  }

  declare (name: string, options: TopicOptions, schemas: Json): Topic {
    if (typeof name !== 'string' || name === '') throw new FST_WS_INVALID_OPTION('websocketTopic', 'a topic name must be a non-empty string')
    if (this.topics.has(name)) throw new FST_WS_DUPLICATE_TOPIC(name)
    if (options === null || typeof options !== 'object') throw new FST_WS_INVALID_OPTION(`Topic "${name}"`, 'options must be an object with a message schema')
    const topic = new Topic(this, name, options, schemas)
    this.topics.set(name, topic)
    this.descriptions.set(name, topic.description)
    return topic
  }

  member (socket: WebSocketConnection): { id: string, keys: Set<[Topic, string]> } {
    const member = socket as Member
    let memberships = member[kMemberships]
    if (memberships === undefined) {
      memberships = member[kMemberships] = { id: randomUUID(), keys: new Set() }
      ;(socket.raw as unknown as { [kMemberships]: Member })[kMemberships] = member
      socket.raw.once('close', onSocketClose)
    }
    return memberships
  }

  async start (): Promise<void> {
    this.#starting = true
    await this.#broker.start(this)
    this.#started = true
  }

  /** Closes the broker whatever state its start reached: a start that failed (Redis down at ready()) may hold connections. */
  async close (): Promise<void> {
    if (!this.#starting) return
    if (this.#started) await Promise.allSettled([...this.topics.values()].map(t => t.leaveAll()))
    this.#closed = true
    await this.#broker.close()
  }

  deliver (topic: string, key: string, entry: BrokerEntry): void {
    this.topics.get(topic)?.deliver(key, entry)
  }

  lost (topic: string, key: string, offset: number): void {
    this.topics.get(topic)?.lost(key, offset)
  }
}
