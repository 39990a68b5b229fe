import type { Writable } from 'node:stream'
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify'
import type { SendBudget } from './budget'
import WebSocket from 'ws'
import { CloseCode, CloseReason, truncateReason } from './close-codes'
import type { Codec } from './codec'
import { FST_WS_UNKNOWN_METHOD, WebSocketClosedError } from './errors'
import { keepaliveNow, kKeepaliveClock, kKeepaliveDue, kOnKeepalive, type KeepaliveClock, type KeepaliveMember } from './keepalive'
import type { ConnectionOptions, Handler, HandlerName } from './options'
import type { SendOptions } from '../types'
import { closeChannel, openChannel } from './diagnostics'
import { closeDetails, logsLifecycle, type CloseDetails, type ClosedBy, type WireCount } from './lifecycle-log'
import { TokenBucket } from './rate-limit'
import { closeCodeOf, socketOf } from './internals'
import { kResumeRequests, RequestError, type CallOptions, type RequestEngine } from './requests'
import { budgetHeld, cutForBudget, releaseBudget, send, type Flush } from './outbound'
import { sendFrame } from './frame-writer'
import { discard, drain, listen, resume, type Inbound } from './inbound'
import { finishIfGone, runOpen } from './dispatch'
import {
  Flag, kBucket, kBytesRead, kBytesWritten, kClose, kConnection, kFlags, kFlush, kFrameTick, kMessagesIn, kMessagesOut,
  kOpenedAt, kQueue, kRoute, readyStates, type ServerClose, type Tagged
} from './state'

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

export type { SendOptions } from '../types'

/**
 * One accepted WebSocket, the `socket` every hook receives: Tornado's handler
 * instance. It runs the hooks one at a time, in order, and answers keepalive.
 *
 * Its state is kept under the symbols of state.ts, for the modules that work
 * on it: outbound.ts writes, frame-writer.ts writes topic frames, inbound.ts
 * reads and queues, dispatch.ts calls the hooks.
 */
export class WebSocketConnection implements KeepaliveMember {
  // Every field costs each idle connection 8 bytes: what can be read from the
  // route, the close details or a lazily created object is not kept here.
  [kKeepaliveDue] = 0
  readonly request: FastifyRequest
  readonly raw: WebSocket
  readonly [kRoute]: RouteRuntime;
  [kFlags]: number = Flag.Busy;
  // Waiting messages as pairs: data, isBinary.
  // (Created with the first message that waits or goes to an async hook.)
  [kQueue]: Inbound | undefined = undefined;
  [kFlush]: Flush | undefined = undefined;
  [kMessagesIn] = 0;
  [kMessagesOut] = 0
  // ms since the keepalive epoch, and the socket's byte counts, at the 101 (small integers).
  readonly [kOpenedAt]: number
  readonly [kBytesRead]: number
  readonly [kBytesWritten]: number
  readonly [kBucket]: TokenBucket | undefined;
  // What the server sent in its close frame; once the connection is gone, the close details.
  [kClose]: ServerClose | CloseDetails | undefined = undefined;
  // The tick (frameTick) of the last frame written by sendFrame.
  [kFrameTick] = 0

  constructor (raw: WebSocket, socket: Writable, request: FastifyRequest, route: RouteRuntime) {
    this.raw = raw
    this.request = request
    this[kRoute] = route
    const wire = socket as WireCount
    this[kOpenedAt] = keepaliveNow()
    this[kBytesRead] = wire.bytesRead ?? 0
    this[kBytesWritten] = wire.bytesWritten ?? 0
    if (logsLifecycle(request)) this[kFlags] |= Flag.LogsLifecycle
    this[kBucket] = route.options.rateLimit === undefined ? undefined : new TokenBucket(route.options.rateLimit)
    ;(raw as unknown as Tagged)[kConnection] = this
    raw.on('close', closed)
    raw.on('error', errored)
    listen(this, raw, socket)
  }

  get [kKeepaliveClock] (): KeepaliveClock | undefined {
    return this[kRoute].keepalive
  }

  get log (): FastifyBaseLogger {
    return this.request.log
  }

  get closeCode (): number | undefined {
    return (this[kFlags] & Flag.Gone) === 0 ? undefined : (this[kClose] as CloseDetails).peerCode
  }

  get closeReason (): string | undefined {
    return (this[kFlags] & Flag.Gone) === 0 ? undefined : (this[kClose] as CloseDetails).peerReason
  }

  get closedBy (): ClosedBy | undefined {
    return (this[kFlags] & Flag.Gone) === 0 ? undefined : (this[kClose] as CloseDetails).closedBy
  }

  get serverCloseCode (): number | undefined {
    return this[kClose]?.serverCode
  }

  get serverCloseReason (): string | undefined {
    return this[kClose]?.serverReason
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
    const route = this[kRoute]
    route.registry.add(this)
    route.keepalive?.add(this)
    if ((this[kFlags] & Flag.LogsLifecycle) !== 0) this.log.info('websocket opened')
    if (openChannel.hasSubscribers) openChannel.publish({ socket: this, request: this.request })
    runOpen(this)
  }

  send (data: unknown, options?: SendOptions): Promise<void> {
    return send(this, data, options)
  }

  /**
   * Writes a text frame built once for many sockets (a topic's message): the
   * same buffer goes to every subscriber (frame-writer.ts).
   */
  sendFrame (frame: Buffer, text: string): void {
    sendFrame(this, frame, text)
  }

  close (code?: number, reason?: string): void {
    const raw = this.raw
    if (raw.readyState === WebSocket.CLOSING || raw.readyState === WebSocket.CLOSED) return
    if (code !== undefined && !Number.isInteger(code)) throw new TypeError(`A close code is an integer, got ${code}`)
    const cut = reason === undefined ? undefined : truncateReason(reason)
    raw.close(code, cut)
    // ws validated the code; a close frame without one means 1005.
    this[kClose] = { serverCode: code ?? CloseCode.NoStatus, serverReason: cut ?? '' }
    releaseBudget(this)
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
    discard(this)
    // Read again, if paused, so that the peer's close frame arrives.
    resume(this)
    this.close(code, reason)
  }

  /** Bytes this connection holds of the server's send budget (shared frames in full); only asked of members. */
  get budgetHeld (): number {
    return budgetHeld(this)
  }

  /** Cut off by maxBufferedTotal (outbound.ts). */
  cutForBudget (budget: SendBudget): void {
    cutForBudget(this, budget)
  }

  /** plugin/requests.ts: a connection that reached maxConcurrentRequests may read again. */
  [kResumeRequests] (): void {
    drain(this)
  }

  /** A JSON-RPC request to the client, one of the route's `clientRequests` (plugin/requests.ts). */
  // (Its result is typed by the route's clientRequests, in types/.)
  call (method: string, params?: unknown, options?: CallOptions): Promise<never> {
    const requests = this[kRoute].requests
    if (requests === undefined) return Promise.reject(new FST_WS_UNKNOWN_METHOD(method))
    return requests.call(this, method, params, options) as Promise<never>
  }

  /** The error a request handler throws to answer with one of its declared app errors. */
  // (Typed by the method's errors, in types/.)
  requestError (name: string, data?: unknown, message?: string): never {
    return new RequestError(name, data, message) as never
  }

  /** The keepalive clock says this connection is due: ping it, or time it out. */
  [kOnKeepalive] (now: number): void {
    const raw = this.raw
    const clock = this[kRoute].keepalive as KeepaliveClock
    if (raw.readyState !== WebSocket.OPEN) return
    const flags = this[kFlags]
    if ((flags & Flag.AwaitingPong) !== 0 && (flags & Flag.Paused) === 0) {
      this.close(CloseCode.Normal, CloseReason.PingTimeout)
      return
    }
    if ((flags & Flag.AwaitingPong) === 0) {
      this[kFlags] |= Flag.AwaitingPong
      raw.ping()
    }
    // While the socket is paused for backpressure the pong cannot be read yet:
    // the peer is not at fault, so the deadline moves on.
    this[kKeepaliveDue] = now + clock.timeout
  }
}

function closed (this: WebSocket, code: number, reason: Buffer): void {
  const connection = (this as unknown as Tagged)[kConnection]
  connection[kFlags] |= Flag.Gone
  const route = connection[kRoute]
  route.keepalive?.delete(connection)
  route.registry.closed(connection)
  const wire = socketOf(connection.raw) as WireCount
  const server = connection[kClose] as ServerClose | undefined
  const details = connection[kClose] = closeDetails(code, reason.toString(), server?.serverCode, server?.serverReason, {
    durationMs: keepaliveNow() - connection[kOpenedAt],
    messagesIn: connection[kMessagesIn],
    messagesOut: connection[kMessagesOut],
    bytesIn: (wire.bytesRead ?? 0) - connection[kBytesRead],
    bytesOut: (wire.bytesWritten ?? 0) - connection[kBytesWritten]
  })
  if ((connection[kFlags] & Flag.LogsLifecycle) !== 0) connection.log.info(details, 'websocket closed')
  if (closeChannel.hasSubscribers) closeChannel.publish({ socket: connection, ...details })
  route.requests?.closed(connection)
  finishIfGone(connection)
}

function errored (this: WebSocket, err: Error): void {
  const connection = (this as unknown as Tagged)[kConnection]
  connection.log.debug({ err }, 'websocket error')
  // Without the receiver's listeners ws has already closed for a protocol
  // error, with the code and no reason: it was the server's close all the same.
  if (connection[kClose] === undefined && typeof (err as Error & { code?: unknown }).code === 'string') {
    discard(connection)
    connection[kClose] = { serverCode: closeCodeOf(err), serverReason: '' }
  }
}
