// Client subscriptions: a route's `subscriptions` and the reserved methods
// `$/subscribe`, `$/unsubscribe` and `$/presence` the client calls over the
// route's JSON-RPC (plugin/requests.ts hands them here). Deliveries are the
// topic's own, as `$/message` envelopes built once per key (plugin/topics.ts).
import type { WebSocketConnection } from './connection'
import { FST_WS_INVALID_OPTION } from './errors'
import { Topic, type TopicNode } from './topics'

/** One entry of a route's `subscriptions`. */
export interface SubscriptionEntry {
  topic: Topic
  authorize: ((socket: unknown, key: string) => unknown) | undefined
  presence: ((socket: unknown) => unknown) | undefined
}

/** A refusal or failure answered to the client: a JSON-RPC error. */
export class SubscriptionRefusal extends Error {
  readonly code: number
  readonly errorName: string | undefined
  constructor (code: number, message: string, name?: string) {
    super(message)
    this.code = code
    this.errorName = name
  }
}

/** The code of the app error `forbidden` (authorize said no). */
export const FORBIDDEN = 403
const InvalidParams = -32602

const entryKeys = new Set(['topic', 'authorize', 'presence'])

function isObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function invalid (message: string): SubscriptionRefusal {
  return new SubscriptionRefusal(InvalidParams, `Invalid params: ${message}`)
}

/** A `since` of `$/subscribe`: a position `{ epoch, offset }`, its string form `"epoch:offset"`, or a bare offset. */
function sinceOf (value: unknown): unknown {
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value
  if (typeof value === 'string' && /^[^:]*:\d+$/.test(value)) return value
  if (isObject(value) && typeof value.epoch === 'string' && typeof value.offset === 'number' && Number.isSafeInteger(value.offset) && value.offset >= 0) {
    return { epoch: value.epoch, offset: value.offset }
  }
  throw invalid('since must be a position { epoch, offset }, "epoch:offset" or an offset')
}

// Until every broker keeps epochs, a position resumes by its offset.
function legacyOffset (since: unknown): number | undefined {
  if (typeof since === 'string') return Number(since.slice(since.lastIndexOf(':') + 1))
  if (isObject(since)) return since.offset as number
  return since as number | undefined
}

const noSubscriptions: ReadonlySet<string> = new Set()

/** The subscriptions of one route, compiled once at `ready()`. */
export class Subscriptions {
  readonly #entries = new Map<string, SubscriptionEntry>()
  readonly #max: number
  readonly #instance: unknown
  // Per socket, the (topic, key) pairs it asked for (pending ones too): `topic\0key`.
  readonly #held = new WeakMap<WebSocketConnection, Set<string>>()

  constructor (url: string, input: Record<string, unknown>, topics: TopicNode, max: number, instance: unknown) {
    const where = `Route "${url}"`
    // (An object: the route's options were checked first.)
    for (const name of Object.keys(input)) {
      const entry = input[name]
      if (!isObject(entry)) throw new FST_WS_INVALID_OPTION(where, `subscriptions.${name} must be an object { topic, authorize?, presence? }`)
      for (const key of Object.keys(entry)) {
        if (!entryKeys.has(key)) throw new FST_WS_INVALID_OPTION(where, `subscriptions.${name}: unknown key "${key}"`)
      }
      const topic = entry.topic
      if (!(topic instanceof Topic) || topics.topics.get(topic.name) !== topic) {
        throw new FST_WS_INVALID_OPTION(where, `subscriptions.${name}.topic must be a topic declared with app.websocketTopic() on this app`)
      }
      if (topic.name !== name) {
        throw new FST_WS_INVALID_OPTION(where, `subscriptions.${name} names the topic "${topic.name}": the entry's name must be its topic's name`)
      }
      for (const hook of ['authorize', 'presence'] as const) {
        if (entry[hook] !== undefined && typeof entry[hook] !== 'function') throw new FST_WS_INVALID_OPTION(where, `subscriptions.${name}.${hook} must be a function`)
      }
      if (entry.presence !== undefined && topic.description.presence === undefined) {
        throw new FST_WS_INVALID_OPTION(where, `subscriptions.${name}.presence: the topic "${name}" declares no presence schema`)
      }
      this.#entries.set(name, {
        topic,
        authorize: entry.authorize as SubscriptionEntry['authorize'],
        presence: entry.presence as SubscriptionEntry['presence']
      })
    }
    this.#max = max
    this.#instance = instance
  }

  #target (params: unknown): { entry: SubscriptionEntry, name: string, key: string } {
    const { topic, key } = (params ?? {}) as Record<string, unknown>
    if (typeof topic !== 'string') throw invalid('topic must be a string')
    const entry = this.#entries.get(topic)
    if (entry === undefined) throw invalid(`unknown topic "${topic}"`)
    if (typeof key !== 'string' || key === '') throw invalid(`a key of "${topic}" must be a non-empty string`)
    return { entry, name: topic, key }
  }

  /** `$/subscribe`, `$/unsubscribe` or `$/presence`: the result's JSON text; refusals throw a SubscriptionRefusal. */
  async call (socket: WebSocketConnection, method: string, params: unknown): Promise<string> {
    const { entry, name, key } = this.#target(params)
    const id = `${name}\0${key}`
    const held = this.#held.get(socket) ?? noSubscriptions
    if (method === '$/unsubscribe') {
      if (held.has(id)) {
        (held as Set<string>).delete(id)
        await entry.topic.unsubscribe(socket, key)
      }
      return 'null'
    }
    if (method === '$/presence') {
      if (!held.has(id)) throw invalid(`not subscribed to "${name}" key ${JSON.stringify(key)}`)
      return JSON.stringify(await entry.topic.presence(key))
    }
    const since = sinceOf((params as Record<string, unknown>).since)
    if (held.has(id)) throw invalid(`already subscribed to "${name}" key ${JSON.stringify(key)}`)
    if (held.size >= this.#max) throw invalid(`more than maxSubscriptions (${this.#max}) subscriptions`)
    let mine = this.#held.get(socket)
    if (mine === undefined) this.#held.set(socket, mine = new Set())
    mine.add(id)
    try {
      if (entry.authorize !== undefined && await entry.authorize.call(this.#instance, socket, key) !== true) {
        throw new SubscriptionRefusal(FORBIDDEN, `Forbidden: not allowed to subscribe to "${name}" key ${JSON.stringify(key)}`, 'forbidden')
      }
      const presence = entry.presence === undefined ? undefined : await entry.presence.call(this.#instance, socket)
      const { offset, recovered, epoch } = await entry.topic.subscribe(socket, key, { since: legacyOffset(since), presence }, true) as
        { offset: number, recovered: boolean, epoch?: string }
      return `{"epoch":${JSON.stringify(epoch ?? '')},"offset":${offset},"recovered":${String(recovered)}}`
    } catch (err) {
      mine.delete(id)
      throw err
    }
  }
}
