import type { EventEmitter } from 'node:events'
import type { Writable } from 'node:stream'
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify'
import WebSocket from 'ws'
import { CloseCode, truncateReason } from './close-codes'
import type { Codec } from './codec'
import { Fifo } from './fifo'
import { WebSocketClosedError } from './errors'
import { kKeepaliveDue, kOnKeepalive, type KeepaliveClock, type KeepaliveMember } from './keepalive'
import type { ConnectionOptions, Handler, HandlerName } from './options'
import { callHook, closeChannel, dropChannel, invalidMessageChannel, messageChannel, openChannel, rateLimitChannel } from './diagnostics'
import { closeDetails, logsLifecycle, type CloseDetails, type ClosedBy, type Traffic, type WireCount } from './lifecycle-log'
import { TokenBucket } from './rate-limit'

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
// What a message waiting to be written costs besides its bytes (frame, write
// request, promise), for the maxBufferedAmount check.
const MESSAGE_COST = 512

// What sendFrame reads of ws's Sender (ws 8): its state (0 = idle, not
// compressing or reading a Blob), its queue, and whether a fragmented message is under way.
interface SenderState { _state: number, _queue: unknown[], _firstFragment: boolean }

// sendFrame's ticks: the first frame of a tick for a socket is written at once
// (one write, as a lone message needs anyway); the socket is corked for any
// further frames of the same tick, and every corked socket is uncorked in one
// callback at the end of the tick, so that a burst leaves in one more write.
let frameTick = 1
let tickScheduled = false
let corkedConnections: WebSocketConnection[] = []

function endFrameTick (): void {
  frameTick++
  tickScheduled = false
  const corked = corkedConnections
  if (corked.length === 0) return
  corkedConnections = []
  for (let i = 0; i < corked.length; i++) WebSocketConnection.uncork(corked[i])
}

type Payload = string | Buffer | ArrayBufferView | ArrayBuffer

/** The close code ws attached to a receiver error (under a symbol it does not export). */
function statusCodeOf (err: Error): number {
  for (const key of Object.getOwnPropertySymbols(err)) {
    if (key.description === 'status-code') return (err as unknown as Record<symbol, number>)[key]
  }
  return CloseCode.ProtocolError
}

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

// The connection a ws WebSocket (or its receiver) belongs to: ws's events are
// handled by shared functions rather than closures per connection.
const kConnection = Symbol('fastify-typed-websocket.connection')
type Tagged = { [kConnection]: WebSocketConnection }

// Opening: the open hook is running; Ready: messages flow; Failed: open threw.
const enum Phase { Opening, Ready, Failed }

/**
 * One accepted WebSocket, the `socket` every hook receives: Tornado's handler
 * instance. It runs the hooks one at a time, in order, and answers keepalive.
 */
export class WebSocketConnection implements KeepaliveMember {
  [kKeepaliveDue] = 0
  readonly request: FastifyRequest
  readonly log: FastifyBaseLogger
  readonly raw: WebSocket
  readonly #socket: Writable
  closeCode: number | undefined = undefined
  closeReason: string | undefined = undefined
  closedBy: ClosedBy | undefined = undefined
  serverCloseCode: number | undefined = undefined
  serverCloseReason: string | undefined = undefined

  #route: RouteRuntime
  #instance: FastifyInstance
  #registry: Registry
  #phase = Phase.Opening
  // A hook (open or message) is running; inbound messages wait in #queue.
  #busy = true
  // Waiting messages as pairs: data, isBinary.
  #queue: Fifo<Buffer | boolean> | undefined = undefined
  // Bytes of the messages received and not yet handled: those in #queue and
  // the one an async hook is handling (#inHook of them).
  #heldBytes = 0
  #inHook = 0
  #paused = false
  #gone = false
  #finished = false
  // Set when the server closed the connection because of bad input or a failed
  // hook: what is still queued is dropped rather than delivered.
  #discard = false
  #awaitingPong = false
  // The promises of sends not yet flushed, as triples: resolve, reject, promise.
  // Writes complete in order, so one callback serves them all.
  #unflushed: Fifo<unknown> | undefined = undefined
  #onFlushed: ((err?: Error | null) => void) | undefined = undefined
  readonly #traffic: Traffic
  readonly #logsLifecycle: boolean
  readonly #bucket: TokenBucket | undefined
  #closeDetails: CloseDetails | undefined = undefined
  // The net socket is corked until the end of the tick: further frames of this tick leave in one write.
  #corked = false
  // The tick (frameTick) of the last frame written by sendFrame.
  #frameTick = 0

  constructor (raw: WebSocket, socket: Writable, request: FastifyRequest, route: RouteRuntime, instance: FastifyInstance, registry: Registry) {
    this.raw = raw
    this.#socket = socket
    this.request = request
    this.log = request.log
    this.#route = route
    this.#instance = instance
    this.#registry = registry
    const wire = socket as WireCount
    this.#traffic = { openedAt: Date.now(), messagesIn: 0, messagesOut: 0, bytesRead: wire.bytesRead ?? 0, bytesWritten: wire.bytesWritten ?? 0 }
    this.#logsLifecycle = logsLifecycle(request)
    this.#bucket = route.options.rateLimit === undefined ? undefined : new TokenBucket(route.options.rateLimit)
    ;(raw as unknown as Tagged)[kConnection] = this
    raw.on('message', WebSocketConnection.#receive)
    raw.on('close', WebSocketConnection.#closed)
    raw.on('ping', WebSocketConnection.#pinged)
    raw.on('pong', WebSocketConnection.#ponged)
    raw.on('error', WebSocketConnection.#errored)
    // ws closes a connection that breaks the protocol with the right code but
    // no reason; answering first gives the peer a reason it can show.
    const receiver = (raw as unknown as { _receiver?: EventEmitter })._receiver
    if (receiver !== undefined) {
      ;(receiver as unknown as Tagged)[kConnection] = this
      receiver.prependListener('error', WebSocketConnection.#brokeProtocol)
    }
  }

  static #receive (this: WebSocket, data: Buffer, isBinary: boolean): void {
    (this as unknown as Tagged)[kConnection].#onMessage(data, isBinary)
  }

  static #closed (this: WebSocket, code: number, reason: Buffer): void {
    (this as unknown as Tagged)[kConnection].#onClose(code, reason)
  }

  static #pinged (this: WebSocket, data: Buffer): void {
    (this as unknown as Tagged)[kConnection].#onControl('ping', data)
  }

  static #ponged (this: WebSocket, data: Buffer): void {
    (this as unknown as Tagged)[kConnection].#onPong(data)
  }

  static #errored (this: WebSocket, err: Error): void {
    (this as unknown as Tagged)[kConnection].log.debug({ err }, 'websocket error')
  }

  static #brokeProtocol (this: EventEmitter, err: Error): void {
    const code = statusCodeOf(err)
    ;(this as unknown as Tagged)[kConnection].fail(code, code === CloseCode.MessageTooBig ? 'message too big' : err.message)
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
    this.#registry.add(this)
    this.#route.keepalive?.add(this)
    if (this.#logsLifecycle) this.log.info('websocket opened')
    if (openChannel.hasSubscribers) openChannel.publish({ socket: this, request: this.request })
    let result: unknown
    try {
      result = callHook('open', this.#route.open, this.#instance, this, this.request)
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
    const waiting = this.#unflushed === undefined ? 0 : this.#unflushed.length / 3
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
    this.#traffic.messagesOut++
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
      if (socket.writableLength === 0) return FLUSHED
      // The kernel took only part of it: an empty write behind it says when the rest is out.
      const sent = this.#whenFlushed()
      socket.write(EMPTY, this.#onFlushed)
      return sent
    }
    const sent = this.#whenFlushed()
    raw.send(payload, opts, this.#onFlushed)
    return sent
  }

  #overLimit (waiting: number): boolean {
    const raw = this.raw
    if (raw.bufferedAmount + waiting * MESSAGE_COST <= this.#route.options.maxBufferedAmount) return false
    this.log.warn({ bufferedAmount: raw.bufferedAmount, messages: waiting }, 'websocket peer is not reading; closing')
    if (dropChannel.hasSubscribers) dropChannel.publish({ socket: this, bufferedAmount: raw.bufferedAmount, messages: waiting })
    this.fail(CloseCode.PolicyViolation, 'send buffer full')
    return true
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
    if (this.#overLimit(this.#unflushed === undefined ? 0 : this.#unflushed.length / 3)) return
    this.#traffic.messagesOut++
    const sender = (raw as unknown as { _sender: SenderState })._sender
    if (raw.extensions !== '' || sender._state !== 0 || sender._queue.length > 0 || !sender._firstFragment) {
      raw.send(text, TEXT)
      return
    }
    const socket = this.#socket
    if (this.#frameTick !== frameTick) {
      this.#frameTick = frameTick
      if (!tickScheduled) {
        tickScheduled = true
        process.nextTick(endFrameTick)
      }
    } else if (!this.#corked) {
      this.#corked = true
      socket.cork()
      corkedConnections.push(this)
    }
    socket.write(frame)
  }

  static uncork (connection: WebSocketConnection): void {
    connection.#corked = false
    connection.#socket.uncork()
  }

  /** A promise settled by the next call of the flush callback not yet claimed. */
  #whenFlushed (): Promise<void> {
    const sent = new Promise<void>(capture)
    let unflushed = this.#unflushed
    if (unflushed === undefined) {
      unflushed = this.#unflushed = new Fifo()
      this.#onFlushed = (err) => this.#flushed(err)
    }
    unflushed.push(capturedResolve)
    unflushed.push(capturedReject)
    unflushed.push(sent)
    return sent
  }

  #flushed (err?: Error | null): void {
    const unflushed = this.#unflushed as Fifo<unknown>
    const resolve = unflushed.shift() as (value: void) => void
    const reject = unflushed.shift() as (reason: unknown) => void
    const sent = unflushed.shift() as Promise<void>
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
    this.serverCloseCode = code ?? CloseCode.NoStatus
    this.serverCloseReason = cut ?? ''
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
    this.#discard = true
    this.#queue = undefined
    this.#heldBytes = 0
    this.#inHook = 0
    // Read again, if paused, so that the peer's close frame arrives.
    this.#resume()
    this.close(code, reason)
  }

  #resume (): void {
    if (this.#paused) {
      this.#paused = false
      this.raw.resume()
    }
  }

  #opened (): void {
    this.#phase = Phase.Ready
    this.#drain()
  }

  #openFailed (err: unknown): void {
    this.#phase = Phase.Failed
    this.#busy = false
    this.#discard = true
    this.#queue = undefined
    this.#heldBytes = 0
    this.#inHook = 0
    this.#reportError(err, true)
    this.#finishIfGone()
  }

  #onMessage (data: Buffer, isBinary: boolean): void {
    if (this.#discard) return
    // The client's heartbeat: an empty text message, never valid JSON, answered
    // at once, like a ping, however busy the hooks are.
    if (data.length === 0 && !isBinary && this.#route.options.heartbeat) {
      this.raw.send(EMPTY_TEXT)
      return
    }
    this.#traffic.messagesIn++
    if (messageChannel.hasSubscribers) messageChannel.publish({ socket: this, direction: 'in', bytes: data.length, binary: isBinary })
    const bucket = this.#bucket
    if (bucket !== undefined && bucket.closes && !bucket.take(data.length)) {
      this.#rateLimited(bucket, data.length)
      return
    }
    // With action 'pause', tokens are taken when the message is delivered.
    let throttled = false
    if (!this.#busy) {
      if (bucket === undefined || bucket.closes || bucket.take(data.length)) {
        this.#deliver(data, isBinary)
        return
      }
      throttled = true
    }
    const queue = this.#queue ?? (this.#queue = new Fifo())
    queue.push(data)
    queue.push(isBinary)
    this.#heldBytes += data.length
    if (throttled) this.#rateLimited(bucket as TokenBucket, data.length)
    const options = this.#route.options
    if (!this.#paused && (queue.length >= 2 * options.maxPendingMessages ||
        this.#heldBytes >= (options.maxPendingBytes ?? options.maxMessageSize))) {
      // Stop reading: TCP backpressure reaches the client until the queue drains.
      this.#paused = true
      this.raw.pause()
    }
  }

  /** Delivers queued messages, one at a time, until a hook goes async or the queue is empty. */
  #drain (): void {
    this.#busy = false
    this.#heldBytes -= this.#inHook
    this.#inHook = 0
    let queue = this.#queue
    while (queue !== undefined && queue.length > 0) {
      const bucket = this.#bucket
      if (bucket !== undefined && !bucket.closes && !bucket.take((queue.peek() as Buffer).length)) {
        this.#rateLimited(bucket, (queue.peek() as Buffer).length)
        return
      }
      const data = queue.shift() as Buffer
      const isBinary = queue.shift() as boolean
      this.#heldBytes -= data.length
      this.#deliver(data, isBinary)
      if (this.#busy) return
      // A failure while dispatching drops the queue.
      queue = this.#queue
    }
    this.#resume()
    this.#finishIfGone()
  }

  /** Dispatches one message; while an async hook handles it, its bytes count as held. */
  #deliver (data: Buffer, isBinary: boolean): void {
    this.#dispatch(data, isBinary)
    if (this.#busy) {
      this.#inHook = data.length
      this.#heldBytes += data.length
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
    this.#busy = true
    if (!this.#paused) {
      this.#paused = true
      this.raw.pause()
    }
    setTimeout(() => this.#drain(), waitMs)
  }

  #dispatch (data: Buffer, isBinary: boolean): void {
    const route = this.#route
    const message = route.handlers.message
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
      result = callHook(name, hook, this.#instance, this, arg, extra)
    } catch (err) {
      this.#reportError(err, false)
      return
    }
    if (isThenable(result)) {
      this.#busy = true
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
      result = callHook('error', hook, this.#instance, this, err)
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
    if (hook === undefined || this.#phase === Phase.Failed) return
    let result: unknown
    try {
      result = callHook(name, hook, this.#instance, this, data)
    } catch (err) {
      this.#reportError(err, false)
      return
    }
    if (isThenable(result)) result.then(undefined, (err: unknown) => this.#reportError(err, false))
  }

  #onPong (data: Buffer): void {
    if (this.#awaitingPong) {
      this.#awaitingPong = false
      this[kKeepaliveDue] = Date.now() + (this.#route.keepalive as KeepaliveClock).interval
    }
    this.#onControl('pong', data)
  }

  /** The keepalive clock says this connection is due: ping it, or time it out. */
  [kOnKeepalive] (now: number): void {
    const raw = this.raw
    const clock = this.#route.keepalive as KeepaliveClock
    if (raw.readyState !== WebSocket.OPEN) return
    if (this.#awaitingPong && !this.#paused) {
      this.close(CloseCode.Normal, 'ping timed out')
      return
    }
    if (!this.#awaitingPong) {
      this.#awaitingPong = true
      raw.ping()
    }
    // While the socket is paused for backpressure the pong cannot be read yet:
    // the peer is not at fault, so the deadline moves on.
    this[kKeepaliveDue] = now + clock.timeout
  }

  #onClose (code: number, reason: Buffer): void {
    this.#gone = true
    this.closeCode = code
    this.closeReason = reason.toString()
    this.#route.keepalive?.delete(this)
    this.#registry.closed(this)
    const details = this.#closeDetails = closeDetails(code, this.closeReason, this.serverCloseCode, this.serverCloseReason, this.#traffic, this.#socket as WireCount)
    this.closedBy = details.closedBy
    if (this.#logsLifecycle) this.log.info(details, 'websocket closed')
    if (closeChannel.hasSubscribers) closeChannel.publish({ socket: this, ...details })
    this.#finishIfGone()
  }

  /**
   * Tornado's on_close: once, after the connection is gone and every queued
   * message was handled; only if open completed (a pending open is awaited).
   */
  #finishIfGone (): void {
    if (!this.#gone || this.#busy || this.#finished || this.#phase === Phase.Opening) return
    this.#finished = true
    const hook = this.#phase === Phase.Ready ? this.#route.handlers.close : undefined
    const done = (): void => this.#registry.finished(this)
    if (hook === undefined) return done()
    const failed = (err: unknown): void => {
      this.log.error({ err }, 'websocket close hook failed')
      done()
    }
    let result: unknown
    try {
      result = callHook('close', hook, this.#instance, this, this.closeCode, this.closeReason, this.#closeDetails)
    } catch (err) {
      return failed(err)
    }
    if (isThenable(result)) result.then(done, failed)
    else done()
  }
}
