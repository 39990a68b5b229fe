// The typed client: one WHATWG WebSocket at a time, owned by a small state machine
// (connecting → open → reconnecting → … → refused | closed) that also owns every timer.
// It imports nothing at runtime; TypeBox is loaded only for `validate: true`.

/** The static type of a TypeBox schema, `unknown` for anything else. */
export type StaticOf<S> = S extends { static: unknown } ? (S & { params: [] })['static'] : unknown

/** The object a route spreads into its `websocket` option: `{ inbound, outbound }`. */
export interface Contract {
  inbound?: object
  outbound?: object
}

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
  status: number
  body: string
}

type QueryValue = string | number | boolean | null | undefined
export type Query = Record<string, QueryValue>

export interface HeartbeatOptions {
  /** Milliseconds between heartbeats. Default 10000. */
  interval?: number
  /** Milliseconds to wait for the answer before reconnecting. Default 5000. */
  timeout?: number
}

export interface ReconnectOptions {
  /** Upper bound of the first delay in ms. Default 500. */
  initialDelay?: number
  /** Largest delay in ms. Default 30000. */
  maxDelay?: number
  /** Growth of the bound per attempt. Default 2. */
  factor?: number
  /** Give up (state `closed`) after this many attempts in a row. Default Infinity. */
  maxAttempts?: number
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
  WebSocket?: WebSocketConstructor | (new (...args: never[]) => object)
  /** Added to the URL's query string; a function is called before every attempt. */
  query?: Query | ((client: Client<C, Tag>) => Query)
  /** Subprotocols to offer; a function is called before every attempt. */
  protocols?: string | string[] | ((client: Client<C, Tag>) => string | string[] | undefined)
  /** The discriminator of the outbound union that `on(tag)` matches. Default `'type'`. */
  tag?: Tag
  /** Reconnect settings, or `false` never to reconnect. */
  reconnect?: ReconnectOptions | false
  /** Close codes after which the client does not reconnect (besides 1002, 1003, 1007–1010). */
  noReconnect?: number[]
  /** Send a heartbeat (needs `heartbeat: true` on the route). Default off; `true` = 10 s / 5 s. */
  heartbeat?: HeartbeatOptions | boolean
  /** Bounds of the queue of sends made while not open. Default 1000 messages, 1 MiB. */
  maxQueue?: { messages?: number, bytes?: number }
  /** Default timeout of `request()` in ms. Default 10000. */
  requestTimeout?: number
  /** The integer field holding a topic offset; the client keeps the highest seen per key. */
  offsetField?: string
  /** The key a message's offset belongs to. Default: one key, `''`. */
  offsetKey?: (msg: OutboundOf<C>) => string
  /** Check server messages against `outbound` with TypeBox (loaded on demand). Default `false`. */
  validate?: boolean
  /** How long the refusal probe (a plain GET) may take, in ms. Default 10000. */
  probeTimeout?: number
}

export interface RequestOptions {
  /** Milliseconds to wait for the answer; default the client's `requestTimeout`. */
  timeout?: number
  signal?: AbortSignal
}

class ClientError extends Error {
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
const FINAL_CODES = [1002, 1003, 1007, 1009, 1010]

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

interface Globals {
  WebSocket?: WebSocketConstructor
  location?: { href: string }
  fetch?: (url: string, init: { signal: AbortSignal, cache: string, credentials: string }) => Promise<{ status: number, text (): Promise<string> }>
}

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
  #requestSeq = 0
  #check: ((value: unknown) => string | undefined) | undefined = undefined

  constructor (contract: C, url: string | URL, options: ClientOptions<C, Tag> = {}) {
    const globals = globalThis as Globals
    const WebSocket = (options.WebSocket ?? globals.WebSocket) as WebSocketConstructor | undefined
    if (typeof WebSocket !== 'function') {
      throw new TypeError('No global WebSocket: pass one, e.g. connect(contract, url, { WebSocket }) with `ws`')
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
    if (contract.outbound === undefined) return
    const { Value } = await import('@sinclair/typebox/value')
    const schema = contract.outbound as Parameters<typeof Value.Check>[0]
    this.#check = (value) => {
      if (Value.Check(schema, value)) return undefined
      const first = Value.Errors(schema, value).First()
      return first === undefined ? 'does not match outbound' : `${first.path || '/'} ${first.message}`
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
    return new Promise((resolve, reject) => {
      const onAbort = (): void => settle(new AbortError('request aborted', signal?.reason))
      const settle = (err: Error | undefined, answer?: unknown): void => {
        const entry = this.#pending.get(id)
        if (entry === undefined) return
        this.#pending.delete(id)
        entry.cleanup()
        if (err === undefined) resolve(answer as OutboundOf<C>)
        else reject(err)
      }
      const entry: Pending = {
        resolve: (answer) => settle(undefined, answer),
        reject: (err) => settle(err),
        timer: setTimeout(() => settle(new TimeoutError(`no answer to request ${id} within ${timeout} ms`)), timeout),
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
  close (code = 1000, reason = ''): void {
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
    this.attempt++
    const options = this.#options
    const url = new URL(this.#url)
    const query = typeof options.query === 'function' ? options.query(this) : options.query
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value))
    }
    const protocols = typeof options.protocols === 'function' ? options.protocols(this) : options.protocols
    let socket: WebSocketLike
    try {
      socket = protocols === undefined ? new this.#WebSocket(url.href) : new this.#WebSocket(url.href, protocols)
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
      this.refusal = undefined
      // What waited goes first, before anything sent once the state says open.
      const queue = this.#queue
      this.#queue = []
      this.#queuedBytes = 0
      for (let i = 0; i < queue.length; i += 2) {
        socket.send(queue[i])
        const pending = queue[i + 1] === '' ? undefined : this.#pending.get(queue[i + 1])
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
        this.#failedBeforeOpen(url.href)
        return
      }
      this.closeCode = event.code
      this.closeReason = event.reason
      this.#detach()
      this.#lost(event.code)
    }
    if (this.state === 'reconnecting' || this.attempt > 1) return
    this.#setState('connecting')
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
        this.closeCode = 1006
        this.closeReason = 'heartbeat timed out'
        this.#lost(1006)
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
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined
      this.#open()
    }, Math.random() * bound)
    if (this.state !== 'reconnecting') this.#setState('reconnecting')
  }

  /**
   * The attempt closed before it opened: a browser shows only 1006. Fastify's hooks run
   * before the handshake checks, so a plain GET on the same URL learns their answer.
   */
  #failedBeforeOpen (href: string): void {
    const fetch = (globalThis as Globals).fetch
    if (fetch === undefined) return this.#retry()
    const probe = this.#probe = new AbortController()
    const timer = setTimeout(() => probe.abort(), this.#options.probeTimeout ?? 10_000)
    const done = (refusal: Refusal | undefined): void => {
      clearTimeout(timer)
      if (this.#probe !== probe) return
      this.#probe = undefined
      if (refusal === undefined) return this.#retry()
      this.refusal = refusal
      this.#finish('refused')
    }
    fetch(href.replace(/^ws/, 'http'), { signal: probe.signal, cache: 'no-store', credentials: 'same-origin' }).then(async (response) => {
      const { status } = response
      const body = await response.text().catch(() => '')
      // 400 and 426 are what a plain GET gets once the hooks let it through; 5xx may pass.
      done(status < 400 || status >= 500 || status === 400 || status === 426 ? undefined : { status, body })
    }, () => done(undefined))
  }

  #finish (state: 'closed' | 'refused'): void {
    clearTimeout(this.#retryTimer)
    this.#retryTimer = undefined
    this.#probe?.abort()
    this.#probe = undefined
    for (const [, pending] of this.#pending) {
      pending.reject(new ConnectionClosedError(`the client is ${state}`, this.closeCode, this.closeReason))
    }
    this.#queue = []
    this.#queuedBytes = 0
    this.#setState(state)
  }
}

/**
 * Opens a typed, reconnecting connection to a websocket route.
 * @example const client = connect({ inbound: ClientMsg, outbound: ServerMsg }, 'wss://example.com/chat/lobby', { heartbeat: true })
 */
export function connect<C extends Contract, Tag extends string = 'type'> (contract: C, url: string | URL, options?: ClientOptions<C, Tag>): Client<C, Tag> {
  return new Client(contract, url, options)
}
