import type { EventEmitter } from 'node:events'
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify'
import WebSocket from 'ws'
import { CloseCode, truncateReason } from './close-codes'
import type { Codec } from './codec'
import { WebSocketClosedError } from './errors'
import type { ConnectionOptions, Handler, HandlerName } from './options'

/** What a connection needs from its route, compiled once per route. */
export interface RouteRuntime {
  options: ConnectionOptions
  codec: Codec
  inbound: boolean
  binary: boolean
  open: Handler
  handlers: Partial<Record<HandlerName, Handler>>
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

// Opening: the open hook is running; Ready: messages flow; Failed: open threw.
const enum Phase { Opening, Ready, Failed }

/**
 * One accepted WebSocket, the `socket` every hook receives: Tornado's handler
 * instance. It runs the hooks one at a time, in order, and owns keepalive.
 */
export class WebSocketConnection {
  readonly request: FastifyRequest
  readonly log: FastifyBaseLogger
  readonly raw: WebSocket
  closeCode: number | undefined = undefined
  closeReason: string | undefined = undefined

  #route: RouteRuntime
  #instance: FastifyInstance
  #registry: Registry
  #phase = Phase.Opening
  // A hook (open or message) is running; inbound messages wait in #queue.
  #busy = true
  #queue: Array<{ data: Buffer, isBinary: boolean }> = []
  #paused = false
  #gone = false
  #finished = false
  // Set when the server closed the connection because of bad input or a failed
  // hook: what is still queued is dropped rather than delivered.
  #discard = false
  #timer: NodeJS.Timeout | undefined = undefined
  #timerMs = 0
  #awaitingPong = false

  constructor (raw: WebSocket, request: FastifyRequest, route: RouteRuntime, instance: FastifyInstance, registry: Registry) {
    this.raw = raw
    this.request = request
    this.log = request.log
    this.#route = route
    this.#instance = instance
    this.#registry = registry
    raw.on('message', (data: Buffer, isBinary: boolean) => this.#onMessage(data, isBinary))
    raw.on('close', (code: number, reason: Buffer) => this.#onClose(code, reason))
    raw.on('ping', (data: Buffer) => this.#onControl('ping', data))
    raw.on('pong', (data: Buffer) => this.#onPong(data))
    raw.on('error', (err: Error) => this.log.debug({ err }, 'websocket error'))
    // ws closes a connection that breaks the protocol with the right code but
    // no reason; answering first gives the peer a reason it can show.
    const receiver = (raw as unknown as { _receiver?: EventEmitter })._receiver
    receiver?.prependListener('error', (err: Error) => this.#onProtocolError(err))
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
    this.#startKeepalive()
    const { open } = this.#route
    let result: unknown
    try {
      result = open.call(this.#instance, this, this.request)
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
    let payload: string | Buffer | ArrayBufferView | ArrayBuffer
    let binary: boolean
    // A backlog past the limit means the peer is not reading what it was sent:
    // cut it off rather than queue more. (Checked before queuing, so one large
    // message to a reader that keeps up is fine.)
    if (raw.bufferedAmount > this.#route.options.maxBufferedAmount) {
      this.log.warn({ bufferedAmount: raw.bufferedAmount }, 'websocket peer is not reading; closing')
      this.fail(CloseCode.PolicyViolation, 'send buffer full')
      throw new WebSocketClosedError(readyStates[raw.readyState])
    }
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
    const sent = new Promise<void>((resolve, reject) => {
      raw.send(payload, { binary }, (err) => {
        if (err === undefined || err === null) return resolve()
        // Nobody may be awaiting this send: a dead connection must not become
        // an unhandled rejection that takes the process down.
        sent.catch(noop)
        reject(err)
      })
    })
    return sent
  }

  close (code?: number, reason?: string): void {
    const raw = this.raw
    if (raw.readyState === WebSocket.CLOSING || raw.readyState === WebSocket.CLOSED) return
    raw.close(code, reason === undefined ? undefined : truncateReason(reason))
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
    this.#queue.length = 0
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

  #onProtocolError (err: Error): void {
    const code = statusCodeOf(err)
    this.fail(code, code === CloseCode.MessageTooBig ? 'message too big' : err.message)
  }

  #opened (): void {
    this.#phase = Phase.Ready
    this.#drain()
  }

  #openFailed (err: unknown): void {
    this.#phase = Phase.Failed
    this.#busy = false
    this.#discard = true
    this.#queue.length = 0
    this.#reportError(err, true)
    this.#finishIfGone()
  }

  #onMessage (data: Buffer, isBinary: boolean): void {
    if (this.#discard) return
    if (this.#busy) {
      this.#queue.push({ data, isBinary })
      if (this.#queue.length >= this.#route.options.maxPendingMessages && !this.#paused) {
        // Stop reading: TCP backpressure reaches the client until the queue drains.
        this.#paused = true
        this.raw.pause()
      }
      return
    }
    this.#dispatch(data, isBinary)
  }

  /** Delivers queued messages, one at a time, until a handler goes async or the queue is empty. */
  #drain (): void {
    this.#busy = false
    const queue = this.#queue
    while (queue.length > 0) {
      const { data, isBinary } = queue.shift() as { data: Buffer, isBinary: boolean }
      this.#dispatch(data, isBinary)
      if (this.#busy) return
    }
    this.#resume()
    this.#finishIfGone()
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
    this.#runHook(message, msg)
  }

  #invalid (err: Error, text: string): void {
    const hook = this.#route.handlers.invalidMessage
    if (hook === undefined) {
      this.fail(CloseCode.InvalidPayload, err.message)
      return
    }
    this.#runHook(hook, err, text)
  }

  /** Runs a message-ordered hook; an async one holds the queue until it settles. */
  #runHook (hook: Handler, arg: unknown, extra?: unknown): void {
    let result: unknown
    try {
      result = hook.call(this.#instance, this, arg, extra)
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
    if (hook !== undefined) {
      let result: unknown
      try {
        result = hook.call(this.#instance, this, err)
      } catch (hookErr) {
        this.#defaultError(hookErr)
        return
      }
      if (isThenable(result)) {
        result.then(() => { if (fromOpen) this.fail(CloseCode.InternalError, 'internal error') }, (hookErr: unknown) => this.#defaultError(hookErr))
      } else if (fromOpen) {
        // A connection whose open failed cannot go on, whatever the hook did.
        this.fail(CloseCode.InternalError, 'internal error')
      }
      return
    }
    this.#defaultError(err)
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
      result = hook.call(this.#instance, this, data)
    } catch (err) {
      this.#reportError(err, false)
      return
    }
    if (isThenable(result)) result.then(undefined, (err: unknown) => this.#reportError(err, false))
  }

  #onPong (data: Buffer): void {
    if (this.#awaitingPong) {
      this.#awaitingPong = false
      this.#arm(this.#route.options.pingInterval)
    }
    this.#onControl('pong', data)
  }

  #startKeepalive (): void {
    if (this.#route.options.pingInterval > 0) this.#arm(this.#route.options.pingInterval)
  }

  #arm (ms: number): void {
    if (this.#timer !== undefined && this.#timerMs === ms) {
      this.#timer.refresh()
      return
    }
    clearTimeout(this.#timer)
    this.#timerMs = ms
    this.#timer = setTimeout(() => this.#keepaliveTick(), ms)
    this.#timer.unref()
  }

  #keepaliveTick (): void {
    const raw = this.raw
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
    this.#arm(this.#route.options.pingTimeout)
  }

  #onClose (code: number, reason: Buffer): void {
    this.#gone = true
    this.closeCode = code
    this.closeReason = reason.toString()
    clearTimeout(this.#timer)
    this.#registry.closed(this)
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
      result = hook.call(this.#instance, this, this.closeCode, this.closeReason)
    } catch (err) {
      return failed(err)
    }
    if (isThenable(result)) result.then(done, failed)
    else done()
  }
}
