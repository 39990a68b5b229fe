// The typed client: one WHATWG WebSocket at a time, owned by a small state machine
// (connecting → open → reconnecting → … → refused | closed) that also owns every timer.
// It imports nothing at runtime but the close codes and reasons it shares with the server
// (bundled in); TypeBox is loaded only for `validate: true`.
import { CloseCode, CloseReason } from '../plugin/close-codes'

/** The static type of a TypeBox schema, `unknown` for anything else. */
export type StaticOf<S> = S extends { static: unknown } ? (S & { params: [] })['static'] : unknown

/** One method of `requests` or `clientRequests`: schemas of its params, result and app errors. */
export interface RequestSchema {
  params?: object | undefined
  result?: object | undefined
  errors?: Record<string, object> | undefined
}

/** The object a route spreads into its `websocket` option: `{ inbound, outbound, requests?, clientRequests? }`. */
export interface Contract {
  inbound?: object
  outbound?: object
  requests?: Record<string, RequestSchema> | undefined
  clientRequests?: Record<string, RequestSchema> | undefined
  /** The topics the client may subscribe to: each name maps to its message schema. */
  subscriptions?: Record<string, object> | undefined
}

/** The contract's subscribable topics (its `subscriptions`). */
export type SubscriptionsOf<C extends Contract> = C extends { subscriptions: infer S } ? S : Record<never, never>

/** Where a subscription stands in its key's sequence: offsets compare only within one epoch. */
export interface Position {
  epoch: string
  offset: number
}

/** What `sub.ready` resolves with: the position the subscription took effect at, and whether what was missed was replayed. */
export interface SubscribeResult extends Position {
  recovered: boolean
}

/** What `reset` listeners receive: the position the client held, and the key's position now. */
export interface ResetInfo {
  /** The epoch the client held; `offset`s of the old and new epochs do not compare. */
  oldEpoch: string
  oldOffset: number
  epoch: string
  offset: number
}

/** What `message` listeners receive besides the message. */
export interface MessageInfo {
  offset: number
  epoch: string
}

type SubscriptionEvents<M> = {
  message: (msg: M, info: MessageInfo) => void
  reset: (info: ResetInfo) => void
  error: (err: Error) => void
}

/** What the Subscription needs of its client. */
interface SubscriptionLink {
  unsubscribe (sub: Subscription<unknown>): void
  presence (sub: Subscription<unknown>): Promise<unknown[]>
}

/**
 * One key of a topic, kept lossless by the client: every message once, in offset order, or a
 * `reset` before any gap. Made by {@link Client.subscribe}.
 * @example const sub = client.subscribe('rooms', 'lobby'); sub.on('message', (msg, { offset }) => show(msg)); sub.on('reset', reload)
 */
export class Subscription<M> implements AsyncIterable<M> {
  readonly topic: string
  readonly key: string
  /** Resolves once the server took the first subscribe; rejects when it refused it, or the client closed first. */
  readonly ready: Promise<SubscribeResult>
  /** The position of the last message delivered (or the one the subscription took effect at). */
  position: Position | undefined = undefined
  /** False once unsubscribed, refused, or the client is closed. */
  active = true
  readonly #link: SubscriptionLink
  readonly #listeners: { [E in keyof SubscriptionEvents<M>]: Set<SubscriptionEvents<M>[E]> } = { message: new Set(), reset: new Set(), error: new Set() }
  #settle: { resolve: (result: SubscribeResult) => void, reject: (err: Error) => void } | undefined
  // Deliveries that came before the answer to the subscribe in flight (the replay, or a live race), in order.
  #early: Array<[number, unknown]> | undefined = []
  readonly #iterators = new Set<{ values: M[], wake: (() => void) | undefined }>()

  constructor (link: SubscriptionLink, topic: string, key: string) {
    this.#link = link
    this.topic = topic
    this.key = key
    this.ready = new Promise<SubscribeResult>((resolve, reject) => { this.#settle = { resolve, reject } })
    // A ready nobody awaits must not be an unhandled rejection: refusals also reach `error`.
    this.ready.catch(() => {})
  }

  /** Listens for this key's messages, each once, in offset order. Returns a function that removes the listener. */
  on<E extends keyof SubscriptionEvents<M>> (event: E, fn: SubscriptionEvents<M>[E]): () => void {
    const set = this.#listeners[event] as Set<SubscriptionEvents<M>[E]>
    set.add(fn)
    return () => { set.delete(fn) }
  }

  /** Stops the subscription: no message after it; async iterations end. */
  unsubscribe (): void {
    if (!this.active) return
    this.#link.unsubscribe(this as Subscription<unknown>)
    this.end()
  }

  /** The members of the key (the route's `presence` of each subscriber), on every node. */
  presence (): Promise<unknown[]> {
    return this.#link.presence(this as Subscription<unknown>)
  }

  /** The messages, in order, until unsubscribed. */
  async * [Symbol.asyncIterator] (): AsyncIterator<M> {
    const iterator: { values: M[], wake: (() => void) | undefined } = { values: [], wake: undefined }
    this.#iterators.add(iterator)
    try {
      while (true) {
        if (iterator.values.length > 0) {
          yield iterator.values.shift() as M
          continue
        }
        if (!this.active) return
        await new Promise<void>((resolve) => { iterator.wake = resolve })
        iterator.wake = undefined
      }
    } finally {
      this.#iterators.delete(iterator)
    }
  }

  /** @internal The subscribe goes out (again), or its connection went away first: deliveries wait for its answer. */
  sending (): void {
    this.#early = []
  }

  /** @internal A `$/message` of this key. */
  deliver (offset: number, data: unknown): void {
    if (!this.active) return
    if (this.#early !== undefined) {
      this.#early.push([offset, data])
      return
    }
    const position = this.position as Position
    // Held already (a replay that overlaps, a resubscribe racing a live delivery): never twice.
    if (offset <= position.offset) return
    position.offset = offset
    const info: MessageInfo = { offset, epoch: position.epoch }
    for (const fn of [...this.#listeners.message]) fn(data as M, info)
    for (const iterator of this.#iterators) {
      iterator.values.push(data as M)
      iterator.wake?.()
    }
  }

  /** @internal The server's answer to the subscribe in flight. */
  answered (result: SubscribeResult): void {
    const held = this.position
    const early = this.#early ?? []
    this.#early = undefined
    if (held === undefined || !result.recovered) {
      this.position = { epoch: result.epoch, offset: result.offset }
      if (held !== undefined) {
        const info: ResetInfo = { oldEpoch: held.epoch, oldOffset: held.offset, epoch: result.epoch, offset: result.offset }
        for (const fn of [...this.#listeners.reset]) fn(info)
      }
    } else {
      held.epoch = result.epoch
    }
    const settle = this.#settle
    this.#settle = undefined
    settle?.resolve(result)
    for (const [offset, data] of early) this.deliver(offset, data)
    const position = this.position as Position
    if (result.offset > position.offset && result.recovered) position.offset = result.offset
  }

  /** @internal Refused, unsubscribed or the client closed: nothing more. */
  end (err?: Error): void {
    if (!this.active) return
    this.active = false
    this.#early = undefined
    const settle = this.#settle
    this.#settle = undefined
    if (err !== undefined) {
      settle?.reject(err)
      for (const fn of [...this.#listeners.error]) fn(err)
    } else {
      settle?.reject(new ConnectionClosedError('unsubscribed or closed'))
    }
    for (const iterator of this.#iterators) iterator.wake?.()
  }
}

/** The methods the client may call (the contract's `requests`). */
export type RequestsOf<C extends Contract> = C extends { requests: infer R } ? R : Record<never, never>
/** The methods the server may call on the client (the contract's `clientRequests`). */
export type ClientRequestsOf<C extends Contract> = C extends { clientRequests: infer R } ? R : Record<never, never>
/** What a method takes: its `params` schema's type, else `undefined`. */
export type ParamsOf<M> = M extends { params: infer S } ? StaticOf<S> : undefined
/** What a method answers: its `result` schema's type, else any JSON value. */
export type ResultOf<M> = M extends { result: infer S } ? StaticOf<S> : unknown
/** A method's app errors: the type of each one's `data`, by name. */
export type ErrorsOf<M> = M extends { errors: infer E } ? { [N in keyof E & string]: StaticOf<E[N]> } : Record<never, never>
/** The errors a call of `method` on contract `C` may be answered with, narrowed by `name`: `CallError<typeof chat, 'join'>`. */
export type CallError<C extends Contract, M extends keyof RequestsOf<C>> = RemoteErrorOf<RequestsOf<C>[M]>
/** A call's arguments: the params (optional for a method that takes none), then the options. */
export type CallArgs<Params, Options> = [Params] extends [undefined] ? [params?: undefined, options?: Options] : [params: Params, options?: Options]
/** The errors a call of method `M` may be answered with, narrowed by `name`. */
export type RemoteErrorOf<M> =
  | { [N in keyof ErrorsOf<M> & string]: RemoteError & { readonly name: N, readonly data: ErrorsOf<M>[N] } }[keyof ErrorsOf<M> & string]
  | (RemoteError & { readonly name: 'RemoteError' })

export type InboundOf<C extends Contract> = C extends { inbound: infer S } ? StaticOf<S> : unknown
export type OutboundOf<C extends Contract> = C extends { outbound: infer S } ? StaticOf<S> : unknown

/** The server messages whose tag is `K`. */
export type Tagged<Out, Tag extends string, K> = Extract<Out, { [P in Tag]: K }>
/** The values of the tag field across the outbound union. */
export type TagOf<Out, Tag extends string> = Out extends { [P in Tag]: infer K } ? (K extends string ? K : never) : never

type Distribute<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

export type ClientState = 'connecting' | 'open' | 'reconnecting' | 'refused' | 'closed'

/** What `on('state')` listeners receive besides the state. */
export interface StateInfo {
  /** The attempt in progress or last made since the last open (1 for the first). */
  attempt: number
  /** Code and reason of the last close of a connection that had opened (or of `close()`). */
  closeCode: number | undefined
  closeReason: string | undefined
  /** With `refused`: the status and body of the server's answer to a plain GET. */
  refusal: Refusal | undefined
}

export interface Refusal {
  /** The status of the server's answer to a plain GET; 0 when the browser hid it (see `reason`). */
  status: number
  body: string
  /** With status 0: why the client concluded that the server refuses this page. */
  reason?: string | undefined
}

type QueryValue = string | number | boolean | null | undefined
export type Query = Record<string, QueryValue>

export interface HeartbeatOptions {
  /** Milliseconds between heartbeats. Default 10000. */
  interval?: number | undefined
  /** Milliseconds to wait for the answer before reconnecting. Default 5000. */
  timeout?: number | undefined
}

export interface ReconnectOptions {
  /** Upper bound of the first delay in ms. Default 500. */
  initialDelay?: number | undefined
  /** Largest delay in ms. Default 30000. */
  maxDelay?: number | undefined
  /** Growth of the bound per attempt. Default 2. */
  factor?: number | undefined
  /** Give up (state `closed`) after this many attempts in a row. Default Infinity. */
  maxAttempts?: number | undefined
}

/** The parts of the WHATWG WebSocket the client uses (browsers, Node 22+, undici, ws). */
export interface WebSocketLike {
  readonly readyState: number
  binaryType: string
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number, reason: string }) => void) | null
  onerror: ((event: unknown) => void) | null
  send (data: string): void
  close (code?: number, reason?: string): void
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike

export interface ClientOptions<C extends Contract = Contract, Tag extends string = 'type'> {
  /** The WebSocket class: default the global one; in Node 20 pass `ws`'s (any WHATWG-style WebSocket class). */
  WebSocket?: WebSocketConstructor | (new (...args: never[]) => object) | undefined
  /** Added to the URL's query string; a function is called before every attempt. */
  query?: Query | ((client: Client<C, Tag>) => Query) | undefined
  /**
   * Node only: headers sent with every attempt's upgrade and refusal probe, e.g. `{ authorization: 'Bearer …' }`;
   * a function is called before every attempt. Works with `ws` and Node 22's global WebSocket. A browser's
   * WebSocket cannot send headers: there, pass a token in `query`, a cookie, or `protocols`.
   */
  headers?: Record<string, string> | ((client: Client<C, Tag>) => Record<string, string>) | undefined
  /** Subprotocols to offer; a function is called before every attempt. */
  protocols?: string | string[] | ((client: Client<C, Tag>) => string | string[] | undefined) | undefined
  /** The discriminator of the outbound union that `on(tag)` matches. Default `'type'`. */
  tag?: Tag | undefined
  /** Reconnect settings, or `false` never to reconnect. */
  reconnect?: ReconnectOptions | false | undefined
  /** Close codes after which the client does not reconnect (besides 1002, 1003, 1007–1010). */
  noReconnect?: number[] | undefined
  /** Send a heartbeat (needs `heartbeat: true` on the route). Default off; `true` = 10 s / 5 s. */
  heartbeat?: HeartbeatOptions | boolean | undefined
  /** Bounds of the queue of sends made while not open. Default 1000 messages, 1 MiB. */
  maxQueue?: { messages?: number | undefined, bytes?: number | undefined } | undefined
  /** Default timeout of `request()` in ms. Default 10000. */
  requestTimeout?: number | undefined
  /** The integer field holding a topic offset; the client keeps the highest seen per key. */
  offsetField?: string | undefined
  /** The key a message's offset belongs to. Default: one key, `''`. */
  offsetKey?: ((msg: OutboundOf<C>) => string) | undefined
  /**
   * Check server messages against `outbound`, call results against their `result` schema and the
   * server's requests against their `params` schema, with TypeBox (loaded on demand). Default `false`.
   */
  validate?: boolean | undefined
  /** How long the refusal probe (a plain GET) may take, in ms. Default 10000. */
  probeTimeout?: number | undefined
}

export interface RequestOptions {
  /** Milliseconds to wait for the answer; default the client's `requestTimeout`. */
  timeout?: number | undefined
  signal?: AbortSignal | undefined
}

/** What a `handle()` function receives besides the params. */
export interface HandleContext {
  readonly id: string | number
  readonly method: string
  /** Aborts when the server cancels the request or the connection is lost. */
  readonly signal: AbortSignal
}

/** The base class of every error the client throws or rejects with: each has a `code` (`FST_WS_CLIENT_*`). */
export class ClientError extends Error {
  readonly code: string
  constructor (name: string, code: string, message: string) {
    super(message)
    this.name = name
    this.code = code
  }
}

/** `send()` while the offline queue is full. */
export class ClientQueueFullError extends ClientError {
  constructor (message: string) { super('ClientQueueFullError', 'FST_WS_CLIENT_QUEUE_FULL', message) }
}

/** `request()` got no answer in time. */
export class TimeoutError extends ClientError {
  constructor (message: string) { super('TimeoutError', 'FST_WS_CLIENT_TIMEOUT', message) }
}

/** The connection closed before `request()` got its answer, or the client is closed. */
export class ConnectionClosedError extends ClientError {
  readonly closeCode: number | undefined
  readonly closeReason: string | undefined
  constructor (message: string, code?: number, reason?: string) {
    super('ConnectionClosedError', 'FST_WS_CLIENT_CLOSED', message)
    this.closeCode = code
    this.closeReason = reason
  }
}

/** `request()`'s signal was aborted. */
export class AbortError extends ClientError {
  constructor (message: string, cause?: unknown) {
    super('AbortError', 'FST_WS_CLIENT_ABORTED', message)
    if (cause !== undefined) (this as { cause?: unknown }).cause = cause
  }
}

/**
 * The error answer of a call: `code` and `message` as the server sent them, and for an
 * app error the route declares, its `name` and `data` (`name` is `'RemoteError'` otherwise).
 * Throw one from a `handle()` function to answer the server with that code, message and data.
 * @example if (client.isRemoteError(err, 'join') && err.name === 'room_full') show(err.data.capacity)
 */
export class RemoteError extends Error {
  readonly code: number
  readonly data: unknown
  constructor (code: number, message: string, data?: unknown, name?: string) {
    super(message)
    this.name = name ?? 'RemoteError'
    this.code = code
    this.data = data
  }
}

/** A server message that is not JSON or fails `outbound` (`validate: true`); given to `on('invalidMessage')`. */
export class InvalidServerMessageError extends ClientError {
  readonly data: string
  constructor (message: string, data: string) {
    super('InvalidServerMessageError', 'FST_WS_CLIENT_INVALID_MESSAGE', message)
    this.data = data
  }
}

// Retrying cannot fix these: the client sent something the server will refuse again.
// (1008 is retried: the server sends it for conditions that pass, a full send
// buffer or a rate limit, and a client cut for being slow must come back.)
const FINAL_CODES: number[] = [CloseCode.ProtocolError, CloseCode.UnsupportedData, CloseCode.InvalidPayload, CloseCode.MessageTooBig, CloseCode.MandatoryExtension]

/** A prefix no other client shares: eight random base-36 digits. */
function requestPrefix (): string {
  const bytes = new Uint8Array(8)
  ;(globalThis as unknown as { crypto: { getRandomValues (array: Uint8Array): Uint8Array } }).crypto.getRandomValues(bytes)
  let prefix = ''
  for (const byte of bytes) prefix += (byte % 36).toString(36)
  return prefix
}
const OPEN = 1

interface Pending {
  resolve (msg: unknown): void
  reject (err: Error): void
  timer: ReturnType<typeof setTimeout>
  // the connection the request went out on; undefined while queued
  sentOn: WebSocketLike | undefined
  cleanup (): void
}

interface ProbeInit { signal: AbortSignal, cache: string, credentials: string, mode?: string, headers?: Record<string, string> }

interface Globals {
  WebSocket?: WebSocketConstructor
  location?: { href: string }
  fetch?: (url: string, init: ProbeInit) => Promise<{ status: number, text (): Promise<string> }>
  process?: { versions?: { node?: string } }
}

// Attempts in a row that a browser's CORS rules hid the refusal of, before the client says so.
const HIDDEN_REFUSALS = 3
// While a retry waits longer than two of these, the client asks once per interval whether the
// server answers plain requests again, and then tries within one interval instead.
const WATCH_INTERVAL = 1000

function utf8Length (text: string): number {
  let bytes = text.length
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff) { bytes += 2; i++ } else if (c > 0x7ff) bytes += 2
    else if (c > 0x7f) bytes += 1
  }
  return bytes
}

type Listener = (...args: never[]) => void

/**
 * A typed, reconnecting WebSocket client; made by {@link connect}.
 * @example const client = connect(chat, 'wss://example.com/chat/lobby'); client.on('said', (msg) => show(msg.text))
 */
export class Client<C extends Contract = Contract, Tag extends string = 'type'> {
  /** `connecting | open | reconnecting | refused | closed` */
  state: ClientState = 'connecting'
  /** The attempt in progress or last made since the last open (1 for the first). */
  attempt = 0
  closeCode: number | undefined = undefined
  closeReason: string | undefined = undefined
  /** With state `refused`: the server's answer to a plain GET on the URL. */
  refusal: Refusal | undefined = undefined
  /** Round-trip time of the last heartbeat in ms (undefined before the first answer). */
  rtt: number | undefined = undefined
  /** The highest `offsetField` value seen, per key (`''` unless `offsetKey` is given). */
  readonly offsets = new Map<string, number>()

  readonly #url: string
  readonly #options: ClientOptions<C, Tag>
  readonly #WebSocket: WebSocketConstructor
  readonly #tag: string
  readonly #noReconnect: Set<number>
  readonly #listeners = new Map<string, Set<Listener>>()
  readonly #pending = new Map<string, Pending>()
  #queue: string[] = []
  #queuedBytes = 0
  #socket: WebSocketLike | undefined = undefined
  #retryTimer: ReturnType<typeof setTimeout> | undefined = undefined
  #heartbeatTimer: ReturnType<typeof setTimeout> | undefined = undefined
  #heartbeatSentAt = 0
  #probe: AbortController | undefined = undefined
  // Request ids are `<prefix>-<n>`: the prefix keeps two clients in one page or process apart.
  readonly #requestPrefix = requestPrefix() + '-'
  #watchTimer: ReturnType<typeof setTimeout> | undefined = undefined
  #watch: AbortController | undefined = undefined
  #requestSeq = 0
  // Attempts in a row that failed before open while the server answered plain requests, from another origin.
  #hiddenRefusals = 0
  // Call ids: a random prefix per client, then a counter (JSON-RPC answers are matched by them).
  readonly #callPrefix = requestPrefix() + '.'
  #callSeq = 0
  readonly #handlers = new Map<string, (params: unknown, context: HandleContext) => unknown>()
  // The server's requests being handled: their signals, and the socket each came on.
  readonly #serving = new Map<string | number, { controller: AbortController, socket: WebSocketLike }>()
  #check: ((value: unknown) => string | undefined) | undefined = undefined
  // With validate: true, `requests.<method>` checks a call's result, `clientRequests.<method>` a server request's params.
  readonly #rpcChecks = new Map<string, (value: unknown) => string | undefined>()
  // Client subscriptions by `topic\0key`, and the subscribes waiting for their answer by call id.
  readonly #subscriptions = new Map<string, Subscription<unknown>>()
  readonly #subscribing = new Map<string, { sub: Subscription<unknown>, socket: WebSocketLike }>()
  readonly #link: SubscriptionLink = {
    unsubscribe: (sub) => {
      this.#subscriptions.delete(`${sub.topic}\0${sub.key}`)
      const socket = this.#socket
      if (socket !== undefined && this.state === 'open' && socket.readyState === OPEN) {
        socket.send(JSON.stringify({ jsonrpc: '2.0', id: `${this.#callPrefix}${++this.#callSeq}`, method: '$/unsubscribe', params: { topic: sub.topic, key: sub.key } }))
      }
    },
    presence: (sub) => this.#answerTo(`${this.#callPrefix}${++this.#callSeq}`, '', this.#options.requestTimeout ?? 10_000, undefined,
      { timedOut: 'no answer to $/presence', aborted: '' }, (answer) => {
        if (isError(answer.error)) throw remoteErrorOf(answer.error)
        return answer.result as unknown[]
      }, undefined, { jsonrpc: '2.0', method: '$/presence', params: { topic: sub.topic, key: sub.key } })
  }

  constructor (contract: C, url: string | URL, options: ClientOptions<C, Tag> = {}) {
    const globals = globalThis as Globals
    const WebSocket = (options.WebSocket ?? globals.WebSocket) as WebSocketConstructor | undefined
    if (typeof WebSocket !== 'function') {
      throw new TypeError('No global WebSocket: pass one, e.g. connect(contract, url, { WebSocket }) with `ws`')
    }
    if (options.headers !== undefined && typeof globals.process?.versions?.node !== 'string') {
      throw new TypeError('headers: a browser\'s WebSocket cannot send headers; pass the token in query, a cookie, or protocols')
    }
    this.#WebSocket = WebSocket
    this.#options = options
    this.#tag = options.tag ?? 'type'
    this.#noReconnect = new Set([...FINAL_CODES, ...(options.noReconnect ?? [])])
    const parsed = new URL(String(url), globals.location?.href)
    if (parsed.protocol === 'http:') parsed.protocol = 'ws:'
    else if (parsed.protocol === 'https:') parsed.protocol = 'wss:'
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
      throw new TypeError(`A WebSocket URL is ws:, wss:, http: or https:, got ${parsed.protocol}`)
    }
    this.#url = parsed.href
    // The first attempt waits a microtask, so `query` and `protocols` may use the client.
    const start = options.validate === true ? this.#loadValidator(contract) : Promise.resolve()
    start.then(() => { if (this.state === 'connecting') this.#open() }, (err: Error) => {
      this.closeReason = `validate: true needs @sinclair/typebox: ${err.message}`
      this.#finish('closed')
    })
  }

  async #loadValidator (contract: C): Promise<void> {
    if (contract.outbound === undefined && contract.requests === undefined && contract.clientRequests === undefined) return
    const { Value } = await import('@sinclair/typebox/value')
    type Schema = Parameters<typeof Value.Check>[0]
    const checkOf = (schema: object, what: string) => (value: unknown): string | undefined => {
      if (Value.Check(schema as Schema, value)) return undefined
      const first = Value.Errors(schema as Schema, value).First()
      return first === undefined ? `does not match ${what}` : `${first.path || '/'} ${first.message}`
    }
    if (contract.outbound !== undefined) this.#check = checkOf(contract.outbound, 'outbound')
    // Call results and the params of the server's requests, by method.
    for (const [list, key] of [['requests', 'result'], ['clientRequests', 'params']] as const) {
      const methods = contract[list] ?? {}
      for (const [name, method] of Object.entries(methods)) {
        const schema = method[key]
        if (schema !== undefined) this.#rpcChecks.set(`${list}.${name}`, checkOf(schema, `the ${key} schema of ${name}`))
      }
    }
  }

  /** Sends a message now, or queues it while not open (throws `ClientQueueFullError` when full). */
  send (msg: InboundOf<C>): void {
    this.#write(JSON.stringify(msg))
  }

  /**
   * Sends `msg` with a unique `id` and resolves with the first server message carrying it.
   * Rejects with `TimeoutError`, `ConnectionClosedError` or `AbortError`.
   */
  request (msg: Distribute<InboundOf<C>, 'id'>, options: RequestOptions = {}): Promise<OutboundOf<C>> {
    const { signal } = options
    if (signal?.aborted === true) return Promise.reject(new AbortError('request aborted', signal.reason))
    const id = this.#requestPrefix + String(++this.#requestSeq)
    const text = JSON.stringify({ ...(msg as object), id })
    const timeout = options.timeout ?? this.#options.requestTimeout ?? 10_000
    return this.#answerTo(id, text, timeout, signal, { timedOut: `no answer to request ${id} within ${timeout} ms`, aborted: 'request aborted' },
      (answer) => answer as OutboundOf<C>)
  }

  /**
   * Calls one of the route's `requests` (JSON-RPC 2.0) and resolves with its result. Waits in the
   * offline queue while reconnecting; a call whose connection is lost after it went out rejects
   * with `ConnectionClosedError` and is never sent again. Rejects with `RemoteError`,
   * `TimeoutError`, `ConnectionClosedError` or `AbortError`; a timeout or an abort sends the cancellation.
   * @example const said = await client.call('history', { room: 'lobby' }, { timeout: 5_000 })
   */
  call<M extends keyof RequestsOf<C> & string> (method: M, ...[params, options = {}]: CallArgs<ParamsOf<RequestsOf<C>[M]>, RequestOptions>): Promise<ResultOf<RequestsOf<C>[M]>> {
    const { signal } = options
    if (signal?.aborted === true) return Promise.reject(new AbortError(`call of ${method} aborted`, signal.reason))
    const id = `${this.#callPrefix}${++this.#callSeq}`
    const text = params === undefined
      ? JSON.stringify({ jsonrpc: '2.0', id, method })
      : JSON.stringify({ jsonrpc: '2.0', id, method, params })
    const timeout = options.timeout ?? this.#options.requestTimeout ?? 10_000
    return this.#answerTo(id, text, timeout, signal, { timedOut: `no answer to ${method} within ${timeout} ms`, aborted: `call of ${method} aborted` },
      (answer) => {
        if (isError(answer.error)) throw remoteErrorOf(answer.error)
        const problem = this.#rpcChecks.get(`requests.${method}`)?.(answer.result)
        if (problem !== undefined) throw new InvalidServerMessageError(`the result of ${method} does not match its schema: ${problem}`, JSON.stringify(answer))
        return answer.result as ResultOf<RequestsOf<C>[M]>
      },
      (entry) => {
        // Gave up: a call that went out on this connection is cancelled, one still queued never goes.
        const socket = this.#socket
        if (entry.sentOn !== undefined && entry.sentOn === socket && socket.readyState === OPEN) {
          socket.send(JSON.stringify({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id } }))
        } else if (entry.sentOn === undefined) {
          this.#unqueue(id)
        }
      })
  }

  /**
   * Writes `text` (queued while reconnecting) and waits for the server message carrying `id`:
   * `answered` turns it into the result (or throws the error to reject with). A timeout, an
   * abort or a failed write rejects; `giveUp` runs first on a timeout or an abort.
   */
  #answerTo<T> (id: string, text: string, timeout: number, signal: AbortSignal | undefined, failures: { timedOut: string, aborted: string },
    answered: (answer: Record<string, unknown>) => T, giveUp?: (entry: Pending) => void, body?: Record<string, unknown>): Promise<T> {
    if (body !== undefined) text = JSON.stringify({ ...body, id })
    return new Promise((resolve, reject) => {
      const settle = (err: Error | undefined, answer?: Record<string, unknown>): void => {
        const entry = this.#pending.get(id)
        if (entry === undefined) return
        this.#pending.delete(id)
        entry.cleanup()
        if (err !== undefined) return reject(err)
        try {
          resolve(answered(answer as Record<string, unknown>))
        } catch (failed) {
          reject(failed)
        }
      }
      const stop = (err: Error): void => {
        const entry = this.#pending.get(id)
        if (entry === undefined) return
        giveUp?.(entry)
        settle(err)
      }
      const onAbort = (): void => stop(new AbortError(failures.aborted, signal?.reason))
      const entry: Pending = {
        resolve: (answer) => settle(undefined, answer as Record<string, unknown>),
        reject: (err) => settle(err),
        timer: setTimeout(() => stop(new TimeoutError(failures.timedOut)), timeout),
        sentOn: undefined,
        cleanup: () => {
          clearTimeout(entry.timer)
          signal?.removeEventListener('abort', onAbort)
        }
      }
      this.#pending.set(id, entry)
      signal?.addEventListener('abort', onAbort)
      try {
        this.#write(text, id)
      } catch (err) {
        settle(err as Error)
      }
    })
  }

  /**
   * Narrows a call's rejection to the errors of `method`: then `err.name` tells which app
   * error it is, and `err.data` has that error's type.
   * @example catch (err) { if (client.isRemoteError(err, 'join') && err.name === 'room_full') show(err.data.capacity) }
   */
  isRemoteError<M extends keyof RequestsOf<C> & string> (err: unknown, _method: M): err is RemoteErrorOf<RequestsOf<C>[M]> {
    return err instanceof RemoteError
  }

  /**
   * Answers the server's `socket.call(method)` (the contract's `clientRequests`). A thrown
   * `RemoteError` is answered with its code, message and data; anything else with -32603.
   * A method without a handler is answered -32601. Returns a function that removes the handler.
   * @example client.handle('confirm', async ({ question }) => window.confirm(question))
   */
  handle<M extends keyof ClientRequestsOf<C> & string> (method: M,
    fn: (params: ParamsOf<ClientRequestsOf<C>[M]>, context: HandleContext) => ResultOf<ClientRequestsOf<C>[M]> | Promise<ResultOf<ClientRequestsOf<C>[M]>>): () => void {
    const handler = fn as (params: unknown, context: HandleContext) => unknown
    this.#handlers.set(method, handler)
    return () => { if (this.#handlers.get(method) === handler) this.#handlers.delete(method) }
  }

  /**
   * Subscribes to `key` of one of the contract's `subscriptions`, over this connection, and keeps
   * it lossless: the client tracks its position and, on every reconnect, subscribes again from it
   * before the offline queue flushes; when the server cannot replay what was missed, `reset` fires
   * instead (take a snapshot). Throws when this client already holds a subscription to the key.
   * @example const sub = client.subscribe('rooms', 'lobby'); sub.on('message', (msg, { offset }) => show(msg))
   */
  subscribe<N extends keyof SubscriptionsOf<C> & string> (topic: N, key: string): Subscription<StaticOf<SubscriptionsOf<C>[N]>> {
    if (this.state === 'closed' || this.state === 'refused') {
      throw new ConnectionClosedError(`the client is ${this.state}`, this.closeCode, this.closeReason)
    }
    const name = `${topic}\0${key}`
    if (this.#subscriptions.has(name)) throw new TypeError(`already subscribed to ${topic} ${key}`)
    const sub = new Subscription<unknown>(this.#link, topic, key)
    this.#subscriptions.set(name, sub)
    const socket = this.#socket
    if (socket !== undefined && this.state === 'open' && socket.readyState === OPEN) this.#subscribe(sub)
    return sub as Subscription<StaticOf<SubscriptionsOf<C>[N]>>
  }

  /** Sends a subscription's `$/subscribe` on the open socket, from the position it holds. */
  #subscribe (sub: Subscription<unknown>): void {
    const socket = this.#socket as WebSocketLike
    const id = `${this.#callPrefix}${++this.#callSeq}`
    const params: Record<string, unknown> = { topic: sub.topic, key: sub.key }
    if (sub.position !== undefined) params.since = { epoch: sub.position.epoch, offset: sub.position.offset }
    sub.sending()
    this.#subscribing.set(id, { sub, socket })
    socket.send(JSON.stringify({ jsonrpc: '2.0', id, method: '$/subscribe', params }))
  }

  /** The answer to a `$/subscribe`. */
  #subscribed (sub: Subscription<unknown>, msg: Record<string, unknown>): void {
    if (!sub.active) return
    if (isError(msg.error)) {
      this.#subscriptions.delete(`${sub.topic}\0${sub.key}`)
      sub.end(remoteErrorOf(msg.error))
      return
    }
    const result = msg.result as Partial<SubscribeResult> | null
    sub.answered({ epoch: String(result?.epoch ?? ''), offset: Number(result?.offset ?? 0), recovered: result?.recovered === true })
  }

  /** A queued call that gave up before it went out: it never will. */
  #unqueue (id: string): void {
    const queue = this.#queue
    for (let i = 1; i < queue.length; i += 2) {
      if (queue[i] !== id) continue
      this.#queuedBytes -= utf8Length(queue[i - 1] as string)
      queue.splice(i - 1, 2)
      return
    }
  }

  /** A JSON-RPC message from the server: an answer to a call, a request, or a cancellation. */
  #rpc (msg: Record<string, unknown>): void {
    const { id, method } = msg
    if (typeof method !== 'string') {
      if (typeof id !== 'string') return
      const subscribing = this.#subscribing.get(id)
      if (subscribing === undefined) {
        this.#pending.get(id)?.resolve(msg)
        return
      }
      this.#subscribing.delete(id)
      this.#subscribed(subscribing.sub, msg)
      return
    }
    if (method === '$/message') {
      const params = msg.params as { topic?: unknown, key?: unknown, offset?: unknown, data?: unknown } | undefined
      if (typeof params?.offset !== 'number') return
      this.#subscriptions.get(`${String(params.topic)}\0${String(params.key)}`)?.deliver(params.offset, params.data)
      return
    }
    if (method === '$/cancelRequest') {
      const target = (msg.params as { id?: unknown } | undefined)?.id
      if (typeof target === 'string' || typeof target === 'number') this.#serving.get(target)?.controller.abort(new Error('Request cancelled'))
      return
    }
    if (typeof id !== 'string' && typeof id !== 'number') return
    const socket = this.#socket as WebSocketLike
    const answer = (body: Record<string, unknown>): void => {
      const serving = this.#serving.get(id)
      if (serving?.socket !== socket) return
      this.#serving.delete(id)
      // Answers go only on the connection the request came on.
      if (this.#socket === socket && socket.readyState === OPEN) socket.send(JSON.stringify({ jsonrpc: '2.0', id, ...body }))
    }
    const handler = this.#handlers.get(method)
    const controller = new AbortController()
    this.#serving.set(id, { controller, socket })
    if (handler === undefined) return answer({ error: { code: -32601, message: `Method not found: ${method}` } })
    const problem = this.#rpcChecks.get(`clientRequests.${method}`)?.(msg.params)
    if (problem !== undefined) return answer({ error: { code: -32602, message: `Invalid params: ${problem}` } })
    const failed = (err: unknown): void => answer({
      error: err instanceof RemoteError
        ? { code: err.code, message: err.message, ...(err.data === undefined ? {} : { data: err.data }) }
        : { code: -32603, message: 'Internal error' }
    })
    let result: unknown
    try {
      result = handler(msg.params, { id, method, signal: controller.signal })
    } catch (err) {
      return failed(err)
    }
    Promise.resolve(result).then((value) => answer({ result: value ?? null }), failed)
  }

  /** Listens for the connection's state. Returns a function that removes the listener. */
  on (event: 'state', fn: (state: ClientState, info: StateInfo) => void): () => void
  /** Listens for every server message. */
  on (event: 'message', fn: (msg: OutboundOf<C>) => void): () => void
  /** Server messages that are not JSON, or fail `outbound` with `validate: true`; they reach no other listener. */
  on (event: 'invalidMessage', fn: (err: InvalidServerMessageError) => void): () => void
  /** Listens for the server messages whose tag (`type` unless configured) is `tag`. */
  on<K extends TagOf<OutboundOf<C>, Tag>> (tag: K, fn: (msg: Tagged<OutboundOf<C>, Tag, K>) => void): () => void
  on (event: string, fn: Listener): () => void {
    let set = this.#listeners.get(event)
    if (set === undefined) this.#listeners.set(event, set = new Set())
    set.add(fn)
    return () => { set.delete(fn) }
  }

  /** Closes the connection for good: no reconnect, no timer left, queued sends dropped. */
  close (code: number = CloseCode.Normal, reason = ''): void {
    if (this.state === 'closed' || this.state === 'refused') return
    const socket = this.#detach()
    if (socket !== undefined) {
      try {
        socket.close(code, reason)
      } catch {
        socket.close()
      }
    }
    this.closeCode = code
    this.closeReason = reason
    this.#finish('closed')
  }

  #write (text: string, requestId?: string): void {
    if (this.state === 'closed' || this.state === 'refused') {
      throw new ConnectionClosedError(`the client is ${this.state}`, this.closeCode, this.closeReason)
    }
    const socket = this.#socket
    if (socket !== undefined && this.state === 'open' && socket.readyState === OPEN) {
      socket.send(text)
      if (requestId !== undefined) (this.#pending.get(requestId) as Pending).sentOn = socket
      return
    }
    const max = this.#options.maxQueue
    const bytes = utf8Length(text)
    if (this.#queue.length / 2 >= (max?.messages ?? 1000) || this.#queuedBytes + bytes > (max?.bytes ?? 1024 * 1024)) {
      throw new ClientQueueFullError(`the offline queue is full (${this.#queue.length / 2} messages, ${this.#queuedBytes} bytes)`)
    }
    this.#queue.push(text, requestId ?? '')
    this.#queuedBytes += bytes
  }

  #emit (event: string, ...args: unknown[]): void {
    const set = this.#listeners.get(event)
    if (set === undefined) return
    for (const fn of [...set]) (fn as (...a: unknown[]) => void)(...args)
  }

  #setState (state: ClientState): void {
    this.state = state
    this.#emit('state', state, {
      attempt: this.attempt,
      closeCode: this.closeCode,
      closeReason: this.closeReason,
      refusal: this.refusal
    } satisfies StateInfo)
  }

  #open (): void {
    this.#stopWatching()
    this.attempt++
    const options = this.#options
    const url = new URL(this.#url)
    const query = typeof options.query === 'function' ? options.query(this) : options.query
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value))
    }
    const protocols = typeof options.protocols === 'function' ? options.protocols(this) : options.protocols
    const headers = typeof options.headers === 'function' ? options.headers(this) : options.headers
    let socket: WebSocketLike
    try {
      socket = this.#create(url.href, protocols, headers)
    } catch (err) {
      // A malformed URL or subprotocol: retrying cannot fix it.
      this.closeReason = (err as Error).message
      this.#finish('closed')
      return
    }
    this.#socket = socket
    let opened = false
    socket.binaryType = 'arraybuffer'
    socket.onopen = () => {
      opened = true
      this.attempt = 0
      this.#hiddenRefusals = 0
      this.refusal = undefined
      // Subscriptions go first, from their positions, so that nothing queued acts on a key unsubscribed.
      for (const sub of this.#subscriptions.values()) this.#subscribe(sub)
      // What waited goes next, before anything sent once the state says open.
      const queue = this.#queue
      this.#queue = []
      this.#queuedBytes = 0
      for (let i = 0; i < queue.length; i += 2) {
        // The queue holds pairs: a message's text, then its request id or ''.
        socket.send(queue[i] as string)
        const id = queue[i + 1] as string
        const pending = id === '' ? undefined : this.#pending.get(id)
        if (pending !== undefined) pending.sentOn = socket
      }
      this.#startHeartbeat()
      this.#setState('open')
    }
    socket.onmessage = (event) => this.#receive(event.data)
    socket.onerror = () => {}
    socket.onclose = (event) => {
      if (!opened) {
        // Only the last connection that opened sets closeCode; a failed attempt says 1006 only.
        this.#detach()
        this.#failedBeforeOpen(url.href, headers)
        return
      }
      this.closeCode = event.code
      this.closeReason = event.reason
      if (event.code === CloseCode.InvalidPayload && this.#heartbeatSentAt !== 0 && /JSON/.test(event.reason)) {
        // The route parsed the heartbeat (an empty text message) as a message.
        this.closeReason = `${event.reason} (the route does not answer heartbeats: set heartbeat: true on it, or turn the client's heartbeat off)`
      }
      this.#detach()
      this.#lost(event.code)
    }
    if (this.state === 'reconnecting' || this.attempt > 1) return
    this.#setState('connecting')
  }

  /** A WebSocket for one attempt; with headers, in the form its class takes them. */
  #create (href: string, protocols: string | string[] | undefined, headers: Record<string, string> | undefined): WebSocketLike {
    const WebSocket = this.#WebSocket as unknown as new (...args: unknown[]) => WebSocketLike
    if (headers === undefined) return protocols === undefined ? new WebSocket(href) : new WebSocket(href, protocols)
    // `ws` takes (url, protocols, options); undici's (Node's global) takes (url, { protocols, headers }).
    if (typeof (WebSocket.prototype as { ping?: unknown }).ping === 'function') return new WebSocket(href, protocols ?? [], { headers })
    return new WebSocket(href, protocols === undefined ? { headers } : { protocols, headers })
  }

  #receive (data: unknown): void {
    if (typeof data !== 'string') return
    if (data === '') {
      if (this.#heartbeatSentAt !== 0) {
        this.rtt = Date.now() - this.#heartbeatSentAt
        this.#heartbeatSentAt = 0
        this.#scheduleHeartbeat()
      }
      return
    }
    let msg: Record<string, unknown>
    try {
      msg = JSON.parse(data)
    } catch (err) {
      this.#emit('invalidMessage', new InvalidServerMessageError(`a server message is not JSON: ${(err as Error).message}`, data))
      return
    }
    if (msg !== null && typeof msg === 'object' && msg.jsonrpc === '2.0') {
      this.#rpc(msg)
      return
    }
    if (this.#check !== undefined) {
      const problem = this.#check(msg)
      if (problem !== undefined) {
        this.#emit('invalidMessage', new InvalidServerMessageError(`a server message does not match outbound: ${problem}`, data))
        return
      }
    }
    const field = this.#options.offsetField
    if (field !== undefined && msg !== null && typeof msg[field] === 'number') {
      const key = this.#options.offsetKey?.(msg as OutboundOf<C>) ?? ''
      const offset = msg[field] as number
      if (!((this.offsets.get(key) ?? -Infinity) >= offset)) this.offsets.set(key, offset)
    }
    const id = msg?.id
    if (typeof id === 'string' && id.startsWith(this.#requestPrefix)) {
      // An answer to one of this client's requests; a late one (timed out, aborted) is dropped.
      this.#pending.get(id)?.resolve(msg)
      return
    }
    this.#emit('message', msg)
    const tag = msg?.[this.#tag]
    if (typeof tag === 'string' && tag !== 'state' && tag !== 'message' && tag !== 'invalidMessage') this.#emit(tag, msg)
  }

  #startHeartbeat (): void {
    this.rtt = undefined
    this.#scheduleHeartbeat()
  }

  #scheduleHeartbeat (): void {
    const option = this.#options.heartbeat
    if (option === undefined || option === false) return
    const { interval = 10_000, timeout = 5000 } = option === true ? {} : option
    clearTimeout(this.#heartbeatTimer)
    this.#heartbeatTimer = setTimeout(() => {
      const socket = this.#socket as WebSocketLike
      this.#heartbeatSentAt = Date.now()
      socket.send('')
      this.#heartbeatTimer = setTimeout(() => {
        // No answer: the link is dead even if the socket does not know it yet.
        const dead = this.#detach() as WebSocketLike & { terminate?: () => void }
        if (typeof dead.terminate === 'function') dead.terminate()
        else dead.close()
        this.closeCode = CloseCode.Abnormal
        this.closeReason = CloseReason.HeartbeatTimeout
        this.#lost(CloseCode.Abnormal)
      }, timeout)
    }, interval)
  }

  /** Forgets the current socket (its events are ignored from now on) and stops its timers. */
  #detach (): WebSocketLike | undefined {
    const socket = this.#socket
    clearTimeout(this.#heartbeatTimer)
    this.#heartbeatTimer = undefined
    this.#heartbeatSentAt = 0
    this.#socket = undefined
    if (socket !== undefined) {
      socket.onopen = socket.onmessage = socket.onclose = null
      // ws emits 'error' for a socket closed while connecting: keep a listener.
      socket.onerror = () => {}
      for (const [id, serving] of this.#serving) {
        if (serving.socket !== socket) continue
        this.#serving.delete(id)
        serving.controller.abort(new Error('The connection closed'))
      }
      for (const [id, subscribing] of this.#subscribing) {
        if (subscribing.socket !== socket) continue
        this.#subscribing.delete(id)
        subscribing.sub.sending()
      }
      for (const [id, pending] of this.#pending) {
        if (pending.sentOn === socket) {
          pending.reject(new ConnectionClosedError(`the connection closed before request ${id} was answered`, this.closeCode, this.closeReason))
        }
      }
    }
    return socket
  }

  #lost (code: number): void {
    if (this.#noReconnect.has(code) || this.#options.reconnect === false) {
      this.#finish('closed')
      return
    }
    this.#retry()
  }

  #retry (): void {
    const options = this.#options.reconnect === false ? undefined : this.#options.reconnect
    const { initialDelay = 500, maxDelay = 30_000, factor = 2, maxAttempts = Infinity } = options ?? {}
    if (this.#options.reconnect === false || this.attempt >= maxAttempts) {
      this.#finish('closed')
      return
    }
    // Full jitter: anywhere between 0 and the exponential bound.
    const bound = Math.min(maxDelay, initialDelay * factor ** Math.max(0, this.attempt - 1))
    const wait = Math.random() * bound
    this.#schedule(wait)
    if (wait > 2 * WATCH_INTERVAL) this.#watchServer(Date.now() + wait)
    if (this.state !== 'reconnecting') this.#setState('reconnecting')
  }

  #schedule (wait: number): void {
    clearTimeout(this.#retryTimer)
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#open()
    }, wait)
  }

  /**
   * A long backoff outlives a short outage (a restart): until the attempt is due, a plain GET
   * once per WATCH_INTERVAL tells when the server answers again, and the attempt is moved up.
   */
  #watchServer (due: number): void {
    const globals = globalThis as Globals
    const fetch = globals.fetch
    if (fetch === undefined) return
    const target = this.#url.replace(/^ws/, 'http')
    const page = globals.location === undefined ? undefined : new URL(globals.location.href).origin
    // From another origin only an opaque answer can be had: that it came at all.
    const opaque = page !== undefined && new URL(target).origin !== page
    this.#watchTimer = setTimeout(() => {
      this.#watchTimer = undefined
      const watch = this.#watch = new AbortController()
      const timer = setTimeout(() => watch.abort(), WATCH_INTERVAL)
      const init: ProbeInit = { signal: watch.signal, cache: 'no-store', credentials: 'same-origin' }
      if (opaque) init.mode = 'no-cors'
      const answered = (back: boolean): void => {
        clearTimeout(timer)
        if (this.#watch !== watch) return
        this.#watch = undefined
        if (this.#retryTimer === undefined) return
        // Back (a proxy's 502 or 503 is not the server): try soon, spread over one interval.
        if (back) this.#schedule(Math.random() * WATCH_INTERVAL)
        else if (due - Date.now() > 2 * WATCH_INTERVAL) this.#watchServer(due)
      }
      fetch(target, init).then(async (response) => {
        // read to the end, so that the connection is free again
        await response.text().catch(() => '')
        answered(opaque || response.status < 500)
      }, () => answered(false))
    }, WATCH_INTERVAL)
  }

  #stopWatching (): void {
    clearTimeout(this.#watchTimer)
    this.#watchTimer = undefined
    this.#watch?.abort()
    this.#watch = undefined
  }

  /**
   * The attempt closed before it opened: a browser shows only 1006. Fastify's hooks run
   * before the handshake checks, so a plain GET on the same URL learns their answer.
   */
  #failedBeforeOpen (href: string, headers: Record<string, string> | undefined): void {
    const globals = globalThis as Globals
    const fetch = globals.fetch
    if (fetch === undefined) return this.#retry()
    const probe = this.#probe = new AbortController()
    const timer = setTimeout(() => probe.abort(), this.#options.probeTimeout ?? 10_000)
    const target = href.replace(/^ws/, 'http')
    const page = globals.location === undefined ? undefined : new URL(globals.location.href).origin
    const crossOrigin = page !== undefined && new URL(target).origin !== page
    const done = (refusal: Refusal | undefined, hidden = false): void => {
      clearTimeout(timer)
      if (this.#probe !== probe) return
      this.#probe = undefined
      this.#hiddenRefusals = hidden ? this.#hiddenRefusals + 1 : 0
      if (hidden && this.#hiddenRefusals >= HIDDEN_REFUSALS) {
        // The same every time: the server answers plain requests but refuses this page's upgrade.
        const reason = `the server refused the WebSocket ${this.#hiddenRefusals} times in a row while answering plain requests: ` +
          `this page's origin (${page as string}) is most likely not allowed by the route's checkOrigin ` +
          '(a 403 that the browser does not show to another origin); allow it in checkOrigin on the server'
        refusal = { status: 0, body: '', reason }
        this.closeReason = reason
      }
      if (refusal === undefined) return this.#retry()
      this.refusal = refusal
      this.#finish('refused')
    }
    const init: ProbeInit = { signal: probe.signal, cache: 'no-store', credentials: 'same-origin' }
    if (headers !== undefined) init.headers = headers
    fetch(target, init).then(async (response) => {
      const { status } = response
      const body = await response.text().catch(() => '')
      // 400 and 426 are what a plain GET gets once the hooks let it through: then only the
      // upgrade's own checks refused it, and from another origin the origin check most likely.
      if (status === 400 || status === 426) return done(undefined, crossOrigin)
      // 5xx may pass.
      done(status < 400 || status >= 500 ? undefined : { status, body })
    }, () => {
      if (!crossOrigin) return done(undefined)
      // CORS hid the answer, or the network failed: an opaque (no-cors) request tells them apart.
      fetch(target, { ...init, mode: 'no-cors' }).then(() => done(undefined, true), () => done(undefined))
    })
  }

  #finish (state: 'closed' | 'refused'): void {
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    this.#stopWatching()
    this.#probe?.abort()
    this.#probe = undefined
    for (const [, pending] of this.#pending) {
      pending.reject(new ConnectionClosedError(`the client is ${state}`, this.closeCode, this.closeReason))
    }
    this.#queue = []
    this.#queuedBytes = 0
    for (const sub of this.#subscriptions.values()) sub.end()
    this.#subscriptions.clear()
    this.#setState(state)
  }
}

interface ErrorMember { code?: unknown, message?: unknown, data?: unknown, name?: unknown }

function isError (error: unknown): error is ErrorMember {
  return error !== null && typeof error === 'object'
}

function remoteErrorOf (error: ErrorMember): RemoteError {
  return new RemoteError(typeof error.code === 'number' ? error.code : -32603, typeof error.message === 'string' ? error.message : 'Remote error',
    error.data, typeof error.name === 'string' ? error.name : undefined)
}

/**
 * Opens a typed, reconnecting connection to a websocket route.
 * @example const client = connect({ inbound: ClientMsg, outbound: ServerMsg }, 'wss://example.com/chat/lobby', { heartbeat: true })
 */
export function connect<C extends Contract, Tag extends string = 'type'> (contract: C, url: string | URL, options?: ClientOptions<C, Tag>): Client<C, Tag> {
  return new Client(contract, url, options)
}
