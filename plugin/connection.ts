import type { EventEmitter } from 'node:events'
import type { Writable } from 'node:stream'
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify'
import type { SendBudget } from './budget'
import WebSocket from 'ws'
import { CloseCode, truncateReason } from './close-codes'
import type { Codec } from './codec'
import { Fifo } from './fifo'
import { FST_WS_UNKNOWN_METHOD, WebSocketClosedError } from './errors'
import { keepaliveNow, kKeepaliveClock, kKeepaliveDue, kOnKeepalive, type KeepaliveClock, type KeepaliveMember } from './keepalive'
import type { ConnectionOptions, Handler, HandlerName } from './options'
import { callHook, closeChannel, dropChannel, invalidMessageChannel, messageChannel, openChannel, rateLimitChannel } from './diagnostics'
import { closeDetails, logsLifecycle, type CloseDetails, type ClosedBy, type WireCount } from './lifecycle-log'
import { TokenBucket } from './rate-limit'
import { closeCodeOf, keepSocket, receiverOf, replaceListener, senderIdle, socketOf, webSocketOf, wsListener } from './internals'
import { kResumeRequests, RequestError, Taken, type CallOptions, type RequestEngine } from './requests'

/** What a connection needs from its route, compiled once per route. */
export interface RouteRuntime {
  options: ConnectionOptions
  codec: Codec
  inbound: boolean
  binary: boolean
  open: Handler
  handlers: Partial<Record<HandlerName, Handler>>
  keepalive: KeepaliveClock | undefined
  /** permessage-deflate is on: ws may hold frames back while it compresses. */
  compression: boolean
  /** The Fastify instance the route was declared on: `this` in every hook. */
  instance: FastifyInstance
  registry: Registry
  /** The server-wide budget for queued outbound bytes (maxBufferedTotal). */
  budget: SendBudget
  /** JSON-RPC: set when the route declares `requests` or `clientRequests`. */
  requests: RequestEngine | undefined
}

/** Where open connections are tracked (`app.websocketClients`) and shutdown waits. */
export interface Registry {
  /** Accepted: open, and not finished. */
  add (socket: WebSocketConnection): void
  /** The connection is gone; its close hook may still be due. */
  closed (socket: WebSocketConnection): void
  /** The close hook has completed, or will never run. */
  finished (socket: WebSocketConnection): void
}

export interface SendOptions {
  binary?: boolean
}

const readyStates = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']
const TEXT = Object.freeze({ binary: false })
const BINARY = Object.freeze({ binary: true })
const FLUSHED = Promise.resolve()
const EMPTY = Buffer.alloc(0)
const EMPTY_TEXT = ''
// An empty text frame from the server: two bytes of header.
const HEARTBEAT_BYTES = 2
// What a message waiting to be written costs besides its bytes (frame, write
// request, promise), for the maxBufferedAmount check.
const MESSAGE_COST = 512

// sendFrame's ticks: the first frame of a tick for a socket is written at once
// (one write, as a lone message needs anyway); the socket is corked for any
// further frames of the same tick, and every corked socket is uncorked in one
// callback at the end of the tick, so that a burst leaves in one more write.
let frameTick = 1
let tickScheduled = false
let corkedConnections: WebSocketConnection[] = []

function endFrameTick (): void {
  // Stays a small integer (a wrap to 0 only corks a fresh socket's first frame).
  frameTick = (frameTick + 1) & 0x3fffffff
  tickScheduled = false
  const corked = corkedConnections
  if (corked.length === 0) return
  corkedConnections = []
  for (let i = 0; i < corked.length; i++) WebSocketConnection.uncork(corked[i])
}

type Payload = string | Buffer | ArrayBufferView | ArrayBuffer

function noop (): void {}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<unknown>).then === 'function'
}

// new Promise(capture) hands its resolving functions over without a closure per send.
let capturedResolve: (value: void) => void = noop
let capturedReject: (reason: unknown) => void = noop
function capture (resolve: (value: void) => void, reject: (reason: unknown) => void): void {
  capturedResolve = resolve
  capturedReject = reject
}

// The connection a ws WebSocket belongs to: ws's events are handled by shared
// functions rather than closures per connection.
const kConnection = Symbol('fastify-typed-websocket.connection')
type Tagged = { [kConnection]: WebSocketConnection }

function connectionOf (receiver: EventEmitter): WebSocketConnection {
  return (webSocketOf(receiver) as unknown as Tagged)[kConnection]
}

// A connection's state, in one small integer. The low two bits are the phase:
// Opening (the open hook is running), Ready (messages flow), Failed (open threw).
const enum Flag {
  Opening = 0,
  Ready = 1,
  Failed = 2,
  Phase = 3,
  // A hook (open or message) is running; inbound messages wait in #queue.
  Busy = 1 << 2,
  Paused = 1 << 3,
  Gone = 1 << 4,
  Finished = 1 << 5,
  // Set when the server closed the connection because of bad input or a failed
  // hook: what is still queued is dropped rather than delivered.
  Discard = 1 << 6,
  AwaitingPong = 1 << 7,
  // The net socket is corked until the end of the tick: further frames of this tick leave in one write.
  Corked = 1 << 8,
  // The socket held bytes when this tick's frames began: they count in the budget.
  Behind = 1 << 9,
  LogsLifecycle = 1 << 10,
  // Closed by the server: its queued bytes no longer count in the budget.
  Released = 1 << 11
}

// What the server said in its close frame (the names of the close details).
interface ServerClose { serverCode: number, serverReason: string }

/**
 * Messages waiting, as pairs (data, isBinary), and the bytes of the messages
 * received and not yet handled: those waiting and the one an async hook is
 * handling (inHook of them).
 */
class Inbound extends Fifo<Buffer | boolean> {
  held = 0
  inHook = 0
}

/**
 * The writes of a connection not yet flushed (created on first use), four
 * entries each: what the write holds of the send budget (a shared frame, or
 * a count of bytes), then the resolve, reject and promise of a send (or
 * undefined for a frame). Writes complete in order, so one callback serves them all.
 */
class Flush {
  readonly entries = new Fifo<unknown>()
  /** Writes that are sends, with a promise: the maxBufferedAmount check counts them. */
  sends = 0
  /** Bytes this connection holds of the budget, shared frames counted in full. */
  held = 0
  readonly callback: (err?: Error | null) => void
  constructor (callback: (err?: Error | null) => void) {
    this.callback = callback
  }
}

/**
 * One accepted WebSocket, the `socket` every hook receives: Tornado's handler
 * instance. It runs the hooks one at a time, in order, and answers keepalive.
 */
export class WebSocketConnection implements KeepaliveMember {
  // Every field costs each idle connection 8 bytes: what can be read from the
  // route, the close details or a lazily created object is not kept here.
  [kKeepaliveDue] = 0
  readonly request: FastifyRequest
  readonly raw: WebSocket
  readonly #route: RouteRuntime
  #flags = Flag.Busy
  // Waiting messages as pairs: data, isBinary.
  // (Created with the first message that waits or goes to an async hook.)
  #queue: Inbound | undefined = undefined
  #flush: Flush | undefined = undefined
  #messagesIn = 0
  #messagesOut = 0
  // ms since the keepalive epoch, and the socket's byte counts, at the 101 (small integers).
  readonly #openedAt: number
  readonly #bytesRead: number
  readonly #bytesWritten: number
  readonly #bucket: TokenBucket | undefined
  // What the server sent in its close frame; once the connection is gone, the close details.
  #close: ServerClose | CloseDetails | undefined = undefined
  // The tick (frameTick) of the last frame written by sendFrame.
  #frameTick = 0

  constructor (raw: WebSocket, socket: Writable, request: FastifyRequest, route: RouteRuntime) {
    this.raw = raw
    this.request = request
    this.#route = route
    const wire = socket as WireCount
    this.#openedAt = keepaliveNow()
    this.#bytesRead = wire.bytesRead ?? 0
    this.#bytesWritten = wire.bytesWritten ?? 0
    if (logsLifecycle(request)) this.#flags |= Flag.LogsLifecycle
    this.#bucket = route.options.rateLimit === undefined ? undefined : new TokenBucket(route.options.rateLimit)
    ;(raw as unknown as Tagged)[kConnection] = this
    raw.on('close', WebSocketConnection.#closed)
    raw.on('error', WebSocketConnection.#errored)
    // Messages, pings and pongs are taken from ws's receiver, by listeners
    // that run ours, then ws's, in ws's place: the WebSocket keeps two
    // listeners, as few as a bare ws app's (each one more makes its table of
    // listeners grow). ws answers pings itself: a ping listener only for a hook.
    keepSocket(raw, socket)
    const receiver = receiverOf(raw)
    // A ws whose receiver is not laid out as expected: the WebSocket's own events.
    if (receiver === undefined) {
      raw.on('message', WebSocketConnection.#receive)
      raw.on('ping', WebSocketConnection.#pinged)
      raw.on('pong', WebSocketConnection.#ponged)
      return
    }
    replaceListener(receiver, 'message', WebSocketConnection.#receivedMessage)
    // ws closes a connection that breaks the protocol with the right code but
    // no reason; answering first gives the peer a reason it can show.
    replaceListener(receiver, 'error', WebSocketConnection.#brokeProtocol)
    if (route.handlers.ping !== undefined) replaceListener(receiver, 'ping', WebSocketConnection.#receivedPing)
    if (route.keepalive !== undefined || route.handlers.pong !== undefined) replaceListener(receiver, 'pong', WebSocketConnection.#receivedPong)
  }

  static #receivedMessage (this: EventEmitter, data: unknown, isBinary?: boolean): void {
    connectionOf(this).#onMessage(data as Buffer, isBinary as boolean)
    wsListener('message').call(this, data, isBinary)
  }

  static #receivedPing (this: EventEmitter, data: unknown): void {
    // ws answers with a pong first.
    wsListener('ping').call(this, data)
    connectionOf(this).#onControl('ping', data as Buffer)
  }

  static #receivedPong (this: EventEmitter, data: unknown): void {
    connectionOf(this).#onPong(data as Buffer)
    wsListener('pong').call(this, data)
  }

  get [kKeepaliveClock] (): KeepaliveClock | undefined {
    return this.#route.keepalive
  }

  get log (): FastifyBaseLogger {
    return this.request.log
  }

  get closeCode (): number | undefined {
    return (this.#flags & Flag.Gone) === 0 ? undefined : (this.#close as CloseDetails).peerCode
  }

  get closeReason (): string | undefined {
    return (this.#flags & Flag.Gone) === 0 ? undefined : (this.#close as CloseDetails).peerReason
  }

  get closedBy (): ClosedBy | undefined {
    return (this.#flags & Flag.Gone) === 0 ? undefined : (this.#close as CloseDetails).closedBy
  }

  get serverCloseCode (): number | undefined {
    return this.#close?.serverCode
  }

  get serverCloseReason (): string | undefined {
    return this.#close?.serverReason
  }

  static #closed (this: WebSocket, code: number, reason: Buffer): void {
    (this as unknown as Tagged)[kConnection].#onClose(code, reason)
  }

  // For a ws whose receiver is not laid out as ws 8's.
  static #receive (this: WebSocket, data: Buffer, isBinary: boolean): void {
    (this as unknown as Tagged)[kConnection].#onMessage(data, isBinary)
  }

  static #pinged (this: WebSocket, data: Buffer): void {
    (this as unknown as Tagged)[kConnection].#onControl('ping', data)
  }

  static #ponged (this: WebSocket, data: Buffer): void {
    (this as unknown as Tagged)[kConnection].#onPong(data)
  }

  static #errored (this: WebSocket, err: Error): void {
    const connection = (this as unknown as Tagged)[kConnection]
    connection.log.debug({ err }, 'websocket error')
    // Without the receiver's listeners ws has already closed for a protocol
    // error, with the code and no reason: it was the server's close all the same.
    if (connection.#close === undefined && typeof (err as Error & { code?: unknown }).code === 'string') {
      connection.#flags |= Flag.Discard
      connection.#queue = undefined
      connection.#close = { serverCode: closeCodeOf(err), serverReason: '' }
    }
  }

  static #brokeProtocol (this: EventEmitter, err: unknown): void {
    const error = err as Error
    const code = closeCodeOf(error)
    connectionOf(this).fail(code, code === CloseCode.MessageTooBig ? 'message too big' : error.message)
    wsListener('error').call(this, err)
  }

  get protocol (): string {
    return this.raw.protocol
  }

  get isOpen (): boolean {
    return this.raw.readyState === WebSocket.OPEN
  }

  get bufferedAmount (): number {
    return this.raw.bufferedAmount
  }

  /** Runs the route handler (`open`); messages wait until it settles. */
  start (): void {
    const route = this.#route
    route.registry.add(this)
    route.keepalive?.add(this)
    if ((this.#flags & Flag.LogsLifecycle) !== 0) this.log.info('websocket opened')
    if (openChannel.hasSubscribers) openChannel.publish({ socket: this, request: this.request })
    let result: unknown
    try {
      result = callHook('open', route.open, route.instance, this, this.request)
    } catch (err) {
      this.#openFailed(err)
      return
    }
    if (isThenable(result)) {
      result.then(() => this.#opened(), (err: unknown) => this.#openFailed(err))
    } else {
      this.#opened()
    }
  }

  send (data: unknown, options?: SendOptions): Promise<void> {
    const raw = this.raw
    if (raw.readyState !== WebSocket.OPEN) throw new WebSocketClosedError(readyStates[raw.readyState])
    // A backlog past the limit means the peer is not reading what it was sent:
    // cut it off rather than queue more. (Checked before queuing, so one large
    // message to a reader that keeps up is fine.) Each waiting message also
    // costs memory of its own, so it counts as at least MESSAGE_COST bytes.
    const waiting = this.#flush === undefined ? 0 : this.#flush.sends
    if (this.#overLimit(waiting)) throw new WebSocketClosedError(readyStates[raw.readyState])
    let payload: Payload
    let binary: boolean
    if (typeof data === 'string') {
      payload = data
      binary = options?.binary ?? false
    } else if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) {
      payload = data
      binary = options?.binary ?? true
    } else {
      if (data === undefined || typeof data === 'function' || typeof data === 'symbol') {
        throw new TypeError(`Cannot send ${typeof data}: send an object, a string or a Buffer`)
      }
      payload = this.#route.codec.encode(data)
      binary = options?.binary ?? false
    }
    const opts = binary ? BINARY : TEXT
    this.#messagesOut++
    if (messageChannel.hasSubscribers) {
      const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength
      messageChannel.publish({ socket: this, direction: 'out', bytes, binary })
    }
    // Fast path: nothing is waiting to be written, so the frame goes to the
    // network within this call; a callback per write would cost Node a closure
    // and a tick per writev.
    const socket = this.#socket
    if (waiting === 0 && socket.writableLength === 0 && !this.#route.compression) {
      raw.send(payload, opts)
      const left = socket.writableLength
      if (left === 0) return FLUSHED
      // The kernel took only part of it: an empty write behind it says when the rest is out.
      const flush = this.#flushOf()
      const sent = this.#whenFlushed(flush, left)
      socket.write(EMPTY, flush.callback)
      this.#route.budget.check()
      return sent
    }
    const flush = this.#flushOf()
    const sent = this.#whenFlushed(flush, typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength)
    raw.send(payload, opts, flush.callback)
    this.#route.budget.check()
    return sent
  }

  /**
   * Answers a client heartbeat with an empty text message. It is a send like
   * any other for the limits: past maxBufferedAmount the reader is cut off, and
   * while it is behind, the answer waits in the queue and counts for
   * maxBufferedAmount (as a message) and maxBufferedTotal.
   */
  #answerHeartbeat (): void {
    const raw = this.raw
    if (raw.readyState !== WebSocket.OPEN) return
    const waiting = this.#flush === undefined ? 0 : this.#flush.sends
    if (this.#overLimit(waiting)) return
    const socket = this.#socket
    if (waiting === 0 && socket.writableLength === 0 && !this.#route.compression) {
      raw.send(EMPTY_TEXT, TEXT)
      const left = socket.writableLength
      if (left === 0) return
      const flush = this.#flushOf()
      this.#waitsAsSend(flush, left)
      socket.write(EMPTY, flush.callback)
    } else {
      const flush = this.#flushOf()
      this.#waitsAsSend(flush, HEARTBEAT_BYTES)
      raw.send(EMPTY_TEXT, TEXT, flush.callback)
    }
    this.#route.budget.check()
  }

  #overLimit (waiting: number): boolean {
    if (this.raw.bufferedAmount + waiting * MESSAGE_COST <= this.#route.options.maxBufferedAmount) return false
    this.#cutOff('maxBufferedAmount', waiting, undefined, 'websocket peer is not reading; closing')
    return true
  }

  /** Closes a reader that does not keep up with 1008 `send buffer full`, with a warning and a drop event naming the limit. */
  #cutOff (limit: 'maxBufferedAmount' | 'maxBufferedTotal', messages: number, budget: SendBudget | undefined, warning: string): void {
    const bufferedAmount = this.raw.bufferedAmount
    this.log.warn(budget === undefined
      ? { bufferedAmount, messages }
      : { bufferedAmount, messages, bufferedTotal: budget.total, maxBufferedTotal: budget.max }, warning)
    if (dropChannel.hasSubscribers) dropChannel.publish({ socket: this, bufferedAmount, messages, limit })
    this.fail(CloseCode.PolicyViolation, 'send buffer full')
  }

  /** Bytes this connection holds of the server's send budget (shared frames in full); only asked of members. */
  get budgetHeld (): number {
    return (this.#flush as Flush).held
  }

  /**
   * Cut off by maxBufferedTotal: what it holds stops counting at once (nothing
   * more is written to it, and its link is destroyed within closeTimeout).
   */
  cutForBudget (budget: SendBudget): void {
    this.#cutOff('maxBufferedTotal', (this.#flush as Flush).sends, budget,
      'websocket send buffers over maxBufferedTotal; closing the connection holding the most')
    // (Closing already, at the peer's word: fail() left it as it was.)
    this.#releaseBudget()
  }

  /**
   * The server closed the connection: nothing more is written to it, and its
   * link is destroyed within closeTimeout, so what it holds stops counting in
   * the budget at once.
   */
  #releaseBudget (): void {
    const flush = this.#flush
    this.#flags |= Flag.Released
    if (flush === undefined || flush.held === 0) return
    const budget = this.#route.budget
    flush.entries.forEach((entry, i) => {
      if (i % 4 === 0) budget.release(entry as Buffer | number)
    })
    budget.leave(this)
    flush.held = 0
  }

  /**
   * Writes a text frame built once for many sockets (a topic's message): the
   * same buffer goes to every subscriber. Frames written in one tick leave in
   * one write. Where the pre-built frame is not safe (compression negotiated,
   * ws's sender busy or holding frames, a fragmented message half sent) the
   * payload goes through ws as an ordinary send, in order.
   */
  sendFrame (frame: Buffer, text: string): void {
    const raw = this.raw
    if (raw.readyState !== WebSocket.OPEN) return
    if (this.#overLimit(this.#flush === undefined ? 0 : this.#flush.sends)) return
    this.#messagesOut++
    if (messageChannel.hasSubscribers) messageChannel.publish({ socket: this, direction: 'out', bytes: Buffer.byteLength(text), binary: false })
    const socket = this.#socket
    let flags = this.#flags
    if (this.#frameTick !== frameTick) {
      // The first frame of this tick for this socket: written at once. Bytes
      // still waiting from before: this reader is behind, and what it is sent
      // now counts in the server's budget until it is flushed.
      this.#frameTick = frameTick
      if (!tickScheduled) {
        tickScheduled = true
        process.nextTick(endFrameTick)
      }
      flags = this.#flags = raw.bufferedAmount > 0 || (this.#flush !== undefined && this.#flush.entries.length > 0)
        ? flags | Flag.Behind
        : flags & ~Flag.Behind
    } else if ((flags & Flag.Corked) === 0) {
      flags = this.#flags = flags | Flag.Corked
      socket.cork()
      corkedConnections.push(this)
    }
    if (raw.extensions !== '' || !senderIdle(raw)) {
      if ((flags & Flag.Behind) === 0) {
        raw.send(text, TEXT)
        return
      }
      const flush = this.#flushOf()
      this.#hold(flush, Buffer.byteLength(text))
      raw.send(text, TEXT, flush.callback)
    } else if ((flags & Flag.Behind) === 0) {
      socket.write(frame)
      return
    } else {
      const flush = this.#flushOf()
      this.#hold(flush, frame)
      socket.write(frame, flush.callback)
    }
    this.#route.budget.check()
  }

  // ws's WebSocket keeps the net socket: not kept twice (see internals.ts).
  get #socket (): Writable {
    return socketOf(this.raw)
  }

  static uncork (connection: WebSocketConnection): void {
    connection.#flags &= ~Flag.Corked
    connection.#socket.uncork()
  }

  #flushOf (): Flush {
    let flush = this.#flush
    if (flush === undefined) flush = this.#flush = new Flush((err) => this.#flushed(err))
    return flush
  }

  /** A write that holds bytes of the budget (a shared frame or a count), without a promise. */
  #hold (flush: Flush, held: Buffer | number): void {
    const entries = flush.entries
    entries.push(held)
    entries.push(undefined)
    entries.push(undefined)
    entries.push(undefined)
    this.#count(flush, held)
  }

  #count (flush: Flush, held: Buffer | number): void {
    // (Never after #releaseBudget: a connection the server closed is not written to.)
    const budget = this.#route.budget
    const bytes = budget.hold(held)
    if (flush.held === 0) budget.join(this)
    flush.held += bytes
  }

  /** A write counted as a waiting send (maxBufferedAmount) that nobody awaits: no promise of its own. */
  #waitsAsSend (flush: Flush, bytes: number): void {
    const entries = flush.entries
    entries.push(bytes)
    entries.push(noop)
    entries.push(noop)
    entries.push(FLUSHED)
    flush.sends++
    this.#count(flush, bytes)
  }

  /** A promise settled by the next call of the flush callback not yet claimed. */
  #whenFlushed (flush: Flush, bytes: number): Promise<void> {
    const sent = new Promise<void>(capture)
    const entries = flush.entries
    entries.push(bytes)
    entries.push(capturedResolve)
    entries.push(capturedReject)
    entries.push(sent)
    flush.sends++
    this.#count(flush, bytes)
    return sent
  }

  #flushed (err?: Error | null): void {
    const flush = this.#flush as Flush
    const entries = flush.entries
    const held = entries.shift() as Buffer | number
    const resolve = entries.shift() as ((value: void) => void) | undefined
    const reject = entries.shift() as (reason: unknown) => void
    const sent = entries.shift() as Promise<void>
    if ((this.#flags & Flag.Released) === 0) {
      const budget = this.#route.budget
      flush.held -= budget.release(held)
      if (flush.held === 0) budget.leave(this)
    }
    if (resolve === undefined) return
    flush.sends--
    if (err === undefined || err === null) return resolve()
    // Nobody may be awaiting this send: a dead connection must not become an
    // unhandled rejection that takes the process down.
    sent.catch(noop)
    // The same error as a send on a closed socket, whatever the stream said.
    const closed = new WebSocketClosedError(readyStates[this.raw.readyState])
    closed.cause = err
    reject(closed)
  }

  close (code?: number, reason?: string): void {
    const raw = this.raw
    if (raw.readyState === WebSocket.CLOSING || raw.readyState === WebSocket.CLOSED) return
    if (code !== undefined && !Number.isInteger(code)) throw new TypeError(`A close code is an integer, got ${code}`)
    const cut = reason === undefined ? undefined : truncateReason(reason)
    raw.close(code, cut)
    // ws validated the code; a close frame without one means 1005.
    this.#close = { serverCode: code ?? CloseCode.NoStatus, serverReason: cut ?? '' }
    this.#releaseBudget()
  }

  ping (data?: string | Buffer): void {
    if (this.raw.readyState !== WebSocket.OPEN) throw new WebSocketClosedError(readyStates[this.raw.readyState])
    if (data !== undefined && Buffer.byteLength(data) > 125) {
      throw new RangeError('A ping payload is at most 125 bytes')
    }
    this.raw.ping(data)
  }

  /** Closes because of bad input or a failed hook; what is still queued is dropped. */
  fail (code: number, reason: string): void {
    this.#flags |= Flag.Discard
    this.#queue = undefined
    // Read again, if paused, so that the peer's close frame arrives.
    this.#resume()
    this.close(code, reason)
  }

  #resume (): void {
    if ((this.#flags & Flag.Paused) !== 0) {
      this.#flags &= ~Flag.Paused
      this.raw.resume()
    }
  }

  #pause (): void {
    this.#flags |= Flag.Paused
    this.raw.pause()
  }

  #opened (): void {
    this.#flags = (this.#flags & ~Flag.Phase) | Flag.Ready
    this.#drain()
  }

  #openFailed (err: unknown): void {
    this.#flags = (this.#flags & ~(Flag.Phase | Flag.Busy)) | Flag.Failed | Flag.Discard
    this.#queue = undefined
    this.#reportError(err, true)
    this.#finishIfGone()
  }

  #onMessage (data: Buffer, isBinary: boolean): void {
    const flags = this.#flags
    if ((flags & Flag.Discard) !== 0) return
    // The client's heartbeat: an empty text message, never valid JSON, answered
    // at once, like a ping, however busy the hooks are — within the rate limit
    // (with 'pause', past it, it waits its turn like a message).
    if (data.length === 0 && !isBinary && this.#route.options.heartbeat) {
      const bucket = this.#bucket
      if (bucket === undefined || bucket.take(0)) {
        this.#answerHeartbeat()
        return
      }
      if (bucket.closes) {
        this.#rateLimited(bucket, 0)
        return
      }
    }
    this.#messagesIn++
    if (messageChannel.hasSubscribers) messageChannel.publish({ socket: this, direction: 'in', bytes: data.length, binary: isBinary })
    const bucket = this.#bucket
    if (bucket !== undefined && bucket.closes && !bucket.take(data.length)) {
      this.#rateLimited(bucket, data.length)
      return
    }
    // With action 'pause', tokens are taken when the message is delivered.
    let throttled = false
    if ((flags & Flag.Busy) === 0) {
      if (bucket === undefined || bucket.closes || bucket.take(data.length)) {
        this.#deliver(data, isBinary)
        return
      }
      throttled = true
    }
    const queue = this.#queue ?? (this.#queue = new Inbound())
    queue.push(data)
    queue.push(isBinary)
    queue.held += data.length
    if (throttled) this.#rateLimited(bucket as TokenBucket, data.length)
    const options = this.#route.options
    if ((this.#flags & Flag.Paused) === 0 && (queue.length >= 2 * options.maxPendingMessages ||
        queue.held >= (options.maxPendingBytes ?? options.maxMessageSize))) {
      // Stop reading: TCP backpressure reaches the client until the queue drains.
      this.#pause()
    }
  }

  /** Delivers queued messages, one at a time, until a hook goes async or the queue is empty. */
  #drain (): void {
    this.#flags &= ~Flag.Busy
    let queue = this.#queue
    if (queue !== undefined) {
      queue.held -= queue.inHook
      queue.inHook = 0
    }
    while (queue !== undefined && queue.length > 0) {
      const bucket = this.#bucket
      if (bucket !== undefined && !bucket.closes && !bucket.take((queue.peek() as Buffer).length)) {
        this.#rateLimited(bucket, (queue.peek() as Buffer).length)
        return
      }
      const data = queue.shift() as Buffer
      const isBinary = queue.shift() as boolean
      queue.held -= data.length
      this.#deliver(data, isBinary)
      if ((this.#flags & Flag.Busy) !== 0) return
      // A failure while dispatching drops the queue.
      queue = this.#queue
    }
    this.#resume()
    this.#finishIfGone()
  }

  /** Dispatches one message; while an async hook handles it, its bytes count as held. */
  #deliver (data: Buffer, isBinary: boolean): void {
    this.#dispatch(data, isBinary)
    if ((this.#flags & Flag.Busy) !== 0) {
      const queue = this.#queue ?? (this.#queue = new Inbound())
      queue.inHook = data.length
      queue.held += data.length
    }
  }

  /**
   * The bucket is empty. 'close': 1008. 'pause': stop reading (TCP
   * backpressure; nothing is dropped) and hold the queue until tokens return.
   */
  #rateLimited (bucket: TokenBucket, size: number): void {
    const waitMs = bucket.closes ? 0 : bucket.wait(size)
    if (rateLimitChannel.hasSubscribers) rateLimitChannel.publish({ socket: this, action: bucket.closes ? 'close' : 'pause', waitMs })
    if (bucket.closes) {
      this.log.debug('websocket rate limit exceeded; closing')
      this.fail(CloseCode.PolicyViolation, 'rate limit exceeded')
      return
    }
    this.#flags |= Flag.Busy
    if ((this.#flags & Flag.Paused) === 0) this.#pause()
    setTimeout(() => this.#drain(), waitMs)
  }

  #dispatch (data: Buffer, isBinary: boolean): void {
    const route = this.#route
    // A heartbeat that waited for the rate limit.
    if (data.length === 0 && !isBinary && route.options.heartbeat) return this.#answerHeartbeat()
    const message = route.handlers.message
    // JSON-RPC (plugin/requests.ts): a request starts here, in message order, and
    // runs beside what follows; at maxConcurrentRequests reading stops until one ends.
    const requests = route.requests
    if (requests !== undefined && !isBinary) {
      const taken = requests.receive(this, data, message !== undefined)
      if (taken === Taken.Full) {
        this.#flags |= Flag.Busy
        if ((this.#flags & Flag.Paused) === 0) this.#pause()
      }
      if (taken !== Taken.No) return
    }
    if (message === undefined) {
      this.fail(CloseCode.UnsupportedData, 'this endpoint accepts no messages')
      return
    }
    let msg: unknown
    if (isBinary) {
      if (route.inbound && !route.binary) {
        this.fail(CloseCode.UnsupportedData, 'binary messages are not accepted')
        return
      }
      msg = data
    } else if (route.inbound) {
      const text = data.toString()
      try {
        msg = route.codec.decode(text)
      } catch (err) {
        this.#invalid(err as Error, text)
        return
      }
    } else {
      msg = data.toString()
    }
    this.#runHook('message', message, msg)
  }

  /** plugin/requests.ts: a connection that reached maxConcurrentRequests may read again. */
  [kResumeRequests] (): void {
    this.#drain()
  }

  /** A JSON-RPC request to the client, one of the route's `clientRequests` (plugin/requests.ts). */
  // (Its result is typed by the route's clientRequests, in types/.)
  call (method: string, params?: unknown, options?: CallOptions): Promise<never> {
    const requests = this.#route.requests
    if (requests === undefined) return Promise.reject(new FST_WS_UNKNOWN_METHOD(method))
    return requests.call(this, method, params, options) as Promise<never>
  }

  /** The error a request handler throws to answer with one of its declared app errors. */
  // (Typed by the method's errors, in types/.)
  requestError (name: string, data?: unknown, message?: string): never {
    return new RequestError(name, data, message) as never
  }

  #invalid (err: Error, text: string): void {
    if (invalidMessageChannel.hasSubscribers) invalidMessageChannel.publish({ socket: this, error: err, raw: text })
    const hook = this.#route.handlers.invalidMessage
    if (hook === undefined) {
      this.fail(CloseCode.InvalidPayload, err.message)
      return
    }
    this.#runHook('invalidMessage', hook, err, text)
  }

  /** Runs a message-ordered hook; an async one holds the queue until it settles. */
  #runHook (name: HandlerName, hook: Handler, arg: unknown, extra?: unknown): void {
    let result: unknown
    try {
      result = callHook(name, hook, this.#route.instance, this, arg, extra)
    } catch (err) {
      this.#reportError(err, false)
      return
    }
    if (isThenable(result)) {
      this.#flags |= Flag.Busy
      result.then(() => this.#drain(), (err: unknown) => {
        this.#reportError(err, false)
        this.#drain()
      })
    }
  }

  /** The `error` hook, or by default: log and close 1011. */
  #reportError (err: unknown, fromOpen: boolean): void {
    const hook = this.#route.handlers.error
    if (hook === undefined) return this.#defaultError(err)
    let result: unknown
    try {
      result = callHook('error', hook, this.#route.instance, this, err)
    } catch (hookErr) {
      return this.#defaultError(hookErr)
    }
    // A connection whose open failed cannot go on, whatever the hook did.
    const afterHook = (): void => { if (fromOpen) this.fail(CloseCode.InternalError, 'internal error') }
    if (isThenable(result)) result.then(afterHook, (hookErr: unknown) => this.#defaultError(hookErr))
    else afterHook()
  }

  #defaultError (err: unknown): void {
    this.log.error({ err }, 'websocket handler failed')
    this.fail(CloseCode.InternalError, 'internal error')
  }

  #onControl (name: 'ping' | 'pong', data: Buffer): void {
    // ws has already answered a ping with a pong.
    const hook = this.#route.handlers[name]
    if (hook === undefined || (this.#flags & Flag.Phase) === Flag.Failed) return
    let result: unknown
    try {
      result = callHook(name, hook, this.#route.instance, this, data)
    } catch (err) {
      this.#reportError(err, false)
      return
    }
    if (isThenable(result)) result.then(undefined, (err: unknown) => this.#reportError(err, false))
  }

  #onPong (data: Buffer): void {
    if ((this.#flags & Flag.AwaitingPong) !== 0) {
      this.#flags &= ~Flag.AwaitingPong
      this[kKeepaliveDue] = keepaliveNow() + (this.#route.keepalive as KeepaliveClock).interval
    }
    this.#onControl('pong', data)
  }

  /** The keepalive clock says this connection is due: ping it, or time it out. */
  [kOnKeepalive] (now: number): void {
    const raw = this.raw
    const clock = this.#route.keepalive as KeepaliveClock
    if (raw.readyState !== WebSocket.OPEN) return
    const flags = this.#flags
    if ((flags & Flag.AwaitingPong) !== 0 && (flags & Flag.Paused) === 0) {
      this.close(CloseCode.Normal, 'ping timed out')
      return
    }
    if ((flags & Flag.AwaitingPong) === 0) {
      this.#flags |= Flag.AwaitingPong
      raw.ping()
    }
    // While the socket is paused for backpressure the pong cannot be read yet:
    // the peer is not at fault, so the deadline moves on.
    this[kKeepaliveDue] = now + clock.timeout
  }

  #onClose (code: number, reason: Buffer): void {
    this.#flags |= Flag.Gone
    const route = this.#route
    route.keepalive?.delete(this)
    route.registry.closed(this)
    const wire = this.#socket as WireCount
    const server = this.#close as ServerClose | undefined
    const details = this.#close = closeDetails(code, reason.toString(), server?.serverCode, server?.serverReason, {
      durationMs: keepaliveNow() - this.#openedAt,
      messagesIn: this.#messagesIn,
      messagesOut: this.#messagesOut,
      bytesIn: (wire.bytesRead ?? 0) - this.#bytesRead,
      bytesOut: (wire.bytesWritten ?? 0) - this.#bytesWritten
    })
    if ((this.#flags & Flag.LogsLifecycle) !== 0) this.log.info(details, 'websocket closed')
    if (closeChannel.hasSubscribers) closeChannel.publish({ socket: this, ...details })
    route.requests?.closed(this)
    this.#finishIfGone()
  }

  /**
   * Tornado's on_close: once, after the connection is gone and every queued
   * message was handled; only if open completed (a pending open is awaited).
   */
  #finishIfGone (): void {
    const flags = this.#flags
    if ((flags & (Flag.Gone | Flag.Busy | Flag.Finished)) !== Flag.Gone || (flags & Flag.Phase) === Flag.Opening) return
    this.#flags |= Flag.Finished
    const route = this.#route
    const hook = (flags & Flag.Phase) === Flag.Ready ? route.handlers.close : undefined
    const done = (): void => route.registry.finished(this)
    if (hook === undefined) return done()
    const failed = (err: unknown): void => {
      this.log.error({ err }, 'websocket close hook failed')
      done()
    }
    let result: unknown
    try {
      result = callHook('close', hook, route.instance, this, this.closeCode, this.closeReason, this.#close)
    } catch (err) {
      return failed(err)
    }
    if (isThenable(result)) result.then(done, failed)
    else done()
  }
}
