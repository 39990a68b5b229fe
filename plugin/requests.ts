// JSON-RPC 2.0 over a route's socket, both ways, beside the `inbound` messages.
// The connection hands this engine every text message of a route that declares
// `requests` or `clientRequests` (receive), says when the socket is gone (closed),
// and exposes one method under kResumeRequests to start reading again.
import { tracingChannel } from 'node:diagnostics_channel'
import type { FastifyBaseLogger } from 'fastify'
import { FST_WS_INVALID_OUTBOUND, FST_WS_INVALID_RESULT, FST_WS_REQUEST_ABORTED, FST_WS_REQUEST_TIMEOUT, FST_WS_UNKNOWN_METHOD, WebSocketClosedError } from './errors'
import type { ClientMethod, ServerMethod } from './request-methods'
import { SubscriptionRefusal, type Subscriptions } from './subscriptions'
import type { WebSocketConnection } from './connection'

/** The standard error codes of JSON-RPC 2.0, and LSP's for a cancelled request. */
export const RpcCode = Object.freeze({
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  Cancelled: -32800
})

/** What `receive` did with a message. */
export const enum Taken {
  /** Not JSON-RPC: it goes through `inbound` as before. */
  No = 0,
  Yes = 1,
  /** Taken, and maxConcurrentRequests (or maxPendingBytes) is reached: stop reading until kResumeRequests. */
  Full = 2
}

/** Called by the engine once a connection that was Full may read again. */
export const kResumeRequests = Symbol('fastify-typed-websocket.resumeRequests')

/** What the engine needs of a connection. */
export interface RequestSocket {
  readonly isOpen: boolean
  readonly log: FastifyBaseLogger
  /** Writes a text frame; the frames of one tick leave in one write (answers to a burst of requests). */
  sendFrame (frame: Buffer, text: string): void
  [kResumeRequests] (): void
}

export interface RequestContext {
  socket: unknown
  method: string
  id: string | number
  params: unknown
  /** `result`, `app-error`, `invalid-result`, `error`, `cancelled`, `timeout` or `closed`. */
  outcome?: Outcome
  result?: unknown
  error?: unknown
}

/**
 * `tracingChannel('fastify-typed-websocket:request')` around every request handler:
 * `start`/`end` around the call, `error` when it throws or rejects, and `asyncStart`/`asyncEnd`
 * once its outcome is known (sync handlers too).
 */
export const requestChannel = tracingChannel<unknown, RequestContext>('fastify-typed-websocket:request')
const tracing = [requestChannel.start, requestChannel.end, requestChannel.asyncStart, requestChannel.asyncEnd, requestChannel.error]
function traced (): boolean {
  for (const sub of tracing) if (sub.hasSubscribers) return true
  return false
}

type Outcome = 'result' | 'app-error' | 'invalid-result' | 'error' | 'cancelled' | 'timeout' | 'closed'

/** Thrown by a handler (made by `socket.requestError()`): answered as the declared app error. */
export class RequestError extends Error {
  readonly data: unknown
  constructor (name: string, data: unknown, message?: string) {
    super(message ?? name)
    this.name = name
    this.data = data
  }
}

/** A JSON-RPC error answer to `socket.call()`: `code`, `message`, and for a declared app error its `name` and `data`. */
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

/** The handler's third argument: the request's id and method, and a signal that aborts on cancel, close or requestTimeout. */
class InboundRequest {
  readonly id: string | number
  readonly method: string
  #controller: AbortController | undefined = undefined
  #reason: unknown = undefined
  answered = false
  outcome: Outcome = 'result'
  readonly startedAt = performance.now()
  readonly bytes: number
  timer: ReturnType<typeof setTimeout> | undefined = undefined
  context: RequestContext | undefined = undefined

  constructor (id: string | number, method: string, bytes: number) {
    this.id = id
    this.method = method
    this.bytes = bytes
  }

  // Created on first use: most handlers never look at it.
  get signal (): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#reason !== undefined) this.#controller.abort(this.#reason)
    }
    return this.#controller.signal
  }

  /** Called once: by the answer -32800, or for a request still unanswered when the connection closes. */
  abort (reason: Error): void {
    this.#reason = reason
    this.#controller?.abort(reason)
  }
}

interface OutboundCall {
  method: ClientMethod
  resolve (value: unknown): void
  reject (err: Error): void
  timer: ReturnType<typeof setTimeout>
  signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
}

/** A connection's requests: made on its first JSON-RPC message or call. */
class Session {
  running = 0
  bytes = 0
  full = false
  readonly inflight = new Map<string | number, InboundRequest>()
  readonly calls = new Map<number, OutboundCall>()
  nextId = 0
  /** Ids of requests read while dispatch was held, not yet taken; those of them cancelled meanwhile. */
  readonly queued = new Set<string | number>()
  readonly cancelled = new Set<string | number>()
}

import type { CallOptions } from '../types'
export type { CallOptions }

export interface EngineSettings {
  methods: Map<string, ServerMethod>
  clientMethods: Map<string, ClientMethod>
  maxConcurrentRequests: number
  maxPendingBytes: number
  requestTimeout: number | undefined
  instance: unknown
  /** The route's `subscriptions`: `$/subscribe`, `$/unsubscribe` and `$/presence`. */
  subscriptions?: Subscriptions | undefined
}

const JSONRPC = Buffer.from('"jsonrpc"')
// A server → client call without a timeout of its own or a requestTimeout waits this long.
const DEFAULT_CALL_TIMEOUT = 30_000

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<unknown>).then === 'function'
}

function idText (id: string | number | null): string {
  return typeof id === 'number' ? String(id) : JSON.stringify(id)
}

function errorAnswer (id: string | number | null, code: number, message: string, data?: string, name?: string): string {
  let error = `{"code":${code},"message":${JSON.stringify(message)}`
  if (data !== undefined) error += `,"data":${data}`
  if (name !== undefined) error += `,"name":${JSON.stringify(name)}`
  return `{"jsonrpc":"2.0","id":${idText(id)},"error":${error}}}`
}

/** An unmasked text frame (RFC 6455 §5.2), header and payload in one buffer from the pool. */
function textFrame (text: string): Buffer {
  const length = Buffer.byteLength(text)
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10
  const frame = Buffer.allocUnsafe(header + length)
  frame[0] = 0x81
  if (length < 126) {
    frame[1] = length
  } else if (length < 65536) {
    frame[1] = 126
    frame.writeUInt16BE(length, 2)
  } else {
    frame[1] = 127
    frame.writeUInt32BE(Math.floor(length / 0x100000000), 2)
    frame.writeUInt32BE(length >>> 0, 6)
  }
  frame.write(text, header)
  return frame
}

function isId (value: unknown): value is string | number {
  return typeof value === 'string' || typeof value === 'number'
}

function debugEnabled (log: FastifyBaseLogger): boolean {
  return log.level === 'debug' || log.level === 'trace'
}

/** The JSON-RPC engine of one route, compiled once: per connection state lives in a Session. */
export class RequestEngine {
  readonly #settings: EngineSettings
  readonly #sessions = new WeakMap<RequestSocket, Session>()

  constructor (settings: EngineSettings) {
    this.#settings = settings
  }

  #session (socket: RequestSocket): Session {
    let session = this.#sessions.get(socket)
    if (session === undefined) this.#sessions.set(socket, session = new Session())
    return session
  }

  /**
   * A text message, in the connection's order. On a route with a `message` hook only
   * a JSON object with a `jsonrpc` member (or a batch of them) is taken; on a route
   * without one every text message is JSON-RPC.
   */
  receive (socket: RequestSocket, data: Buffer, hasMessage: boolean): Taken {
    if (hasMessage && data.indexOf(JSONRPC) === -1) return Taken.No
    // Received before the close, handled after it: nothing could be answered, so nothing runs.
    if (!socket.isOpen) return Taken.Yes
    let envelope: unknown
    try {
      envelope = JSON.parse(data.toString())
    } catch (err) {
      this.#send(socket, errorAnswer(null, RpcCode.ParseError, `Parse error: ${(err as Error).message}`))
      return Taken.Yes
    }
    if (Array.isArray(envelope)) {
      if (hasMessage && !envelope.some(e => e !== null && typeof e === 'object' && Object.hasOwn(e, 'jsonrpc'))) return Taken.No
      this.#send(socket, errorAnswer(null, RpcCode.InvalidRequest, 'Invalid request: batches are not supported'))
      return Taken.Yes
    }
    if (envelope === null || typeof envelope !== 'object' || !Object.hasOwn(envelope, 'jsonrpc')) {
      if (hasMessage) return Taken.No
      this.#send(socket, errorAnswer(null, RpcCode.InvalidRequest, 'Invalid request: not a JSON-RPC 2.0 object'))
      return Taken.Yes
    }
    return this.#take(socket, envelope as Record<string, unknown>, data.length)
  }

  /**
   * A text message that arrived while dispatch is held (a hook is running, or
   * the connection is at maxConcurrentRequests): an answer to one of the server's
   * pending calls, or a `$/cancelRequest` of a running request, is taken at once,
   * out of turn — the hook or handler holding dispatch may be the one waiting
   * for it. Anything else (false) waits its turn.
   */
  control (socket: RequestSocket, data: Buffer): boolean {
    if (data.indexOf(JSONRPC) === -1) return false
    let msg: Record<string, unknown>
    try {
      msg = JSON.parse(data.toString())
    } catch {
      return false
    }
    if (msg === null || typeof msg !== 'object' || msg.jsonrpc !== '2.0') return false
    const method = msg.method
    const session = this.#session(socket)
    if (method === undefined) {
      if (typeof msg.id !== 'number' || !session.calls.has(msg.id) || !(Object.hasOwn(msg, 'result') || Object.hasOwn(msg, 'error'))) return false
      this.#answered(socket, msg)
      return true
    }
    if (method !== '$/cancelRequest') {
      // A request that waits its turn: a cancellation may reach it before it runs.
      if (isId(msg.id)) session.queued.add(msg.id)
      return false
    }
    const target = (msg.params as { id?: unknown } | null | undefined)?.id
    if (Object.hasOwn(msg, 'id') || !isId(target)) return false
    if (session.inflight.has(target)) this.#cancel(socket, target)
    else if (session.queued.has(target)) session.cancelled.add(target)
    else return false
    return true
  }

  #invalid (socket: RequestSocket, id: unknown, why: string): Taken {
    this.#send(socket, errorAnswer(isId(id) ? id : null, RpcCode.InvalidRequest, `Invalid request: ${why}`))
    return Taken.Yes
  }

  #take (socket: RequestSocket, msg: Record<string, unknown>, bytes: number): Taken {
    const { id, method } = msg
    const hasId = Object.hasOwn(msg, 'id')
    // Read while dispatch was held (control): was it cancelled before its turn?
    const queued = isId(id) ? this.#sessions.get(socket) : undefined
    const cancelledEarly = queued !== undefined && queued.queued.delete(id as string | number) && queued.cancelled.delete(id as string | number)
    if (msg.jsonrpc !== '2.0') return this.#invalid(socket, id, 'jsonrpc must be "2.0"')
    if (method === undefined) {
      if (Object.hasOwn(msg, 'result') || Object.hasOwn(msg, 'error')) this.#answered(socket, msg)
      else this.#invalid(socket, id, 'no method, result or error')
      return Taken.Yes
    }
    if (typeof method !== 'string') return this.#invalid(socket, id, 'method must be a string')
    if (hasId && !isId(id)) return this.#invalid(socket, id, 'id must be a string or a number')
    const params = msg.params
    if (params !== undefined && (params === null || typeof params !== 'object')) return this.#invalid(socket, id, 'params must be an object or an array')
    if (method === '$/cancelRequest') {
      const target = (params as { id?: unknown } | undefined)?.id
      if (isId(target)) this.#cancel(socket, target)
      if (hasId) this.#send(socket, `{"jsonrpc":"2.0","id":${idText(id as string | number)},"result":null}`)
      return Taken.Yes
    }
    const subscriptions = this.#settings.subscriptions
    if (hasId && subscriptions !== undefined && (method === '$/subscribe' || method === '$/unsubscribe' || method === '$/presence')) {
      this.#subscription(socket, subscriptions, method, id as string | number, params)
      return Taken.Yes
    }
    // A notification is never answered (JSON-RPC 2.0 §4.1); only $/cancelRequest means something here.
    if (!hasId) {
      socket.log.debug({ method }, 'websocket notification ignored')
      return Taken.Yes
    }
    const requestId = id as string | number
    const session = this.#session(socket)
    if (cancelledEarly) {
      // Cancelled while it waited its turn: it never runs.
      this.#send(socket, errorAnswer(requestId, RpcCode.Cancelled, 'Request cancelled'))
      return Taken.Yes
    }
    if (session.inflight.has(requestId)) return this.#invalid(socket, requestId, `a request with id ${idText(requestId)} is still pending`)
    const settings = this.#settings
    const entry = settings.methods.get(method)
    if (entry === undefined) {
      this.#send(socket, errorAnswer(requestId, RpcCode.MethodNotFound, `Method not found: ${method}`))
      return Taken.Yes
    }
    if (entry.params !== undefined) {
      const problem = entry.params(params)
      if (problem !== undefined) {
        this.#send(socket, errorAnswer(requestId, RpcCode.InvalidParams, `Invalid params: ${problem}`))
        return Taken.Yes
      }
    }
    this.#run(socket, session, entry, requestId, params, bytes)
    if (session.running >= settings.maxConcurrentRequests || session.bytes >= settings.maxPendingBytes) {
      session.full = true
      return Taken.Full
    }
    return Taken.Yes
  }

  #run (socket: RequestSocket, session: Session, method: ServerMethod, id: string | number, params: unknown, bytes: number): void {
    const request = new InboundRequest(id, method.name, bytes)
    session.running++
    session.bytes += bytes
    session.inflight.set(id, request)
    const timeout = this.#settings.requestTimeout
    if (timeout !== undefined) {
      request.timer = setTimeout(() => this.#stop(socket, session, request, 'timeout', `Request timed out after ${timeout} ms`), timeout)
    }
    let result: unknown
    const instance = this.#settings.instance
    try {
      if (traced()) {
        const context: RequestContext = request.context = { socket, method: method.name, id, params }
        requestChannel.start.publish(context)
        try {
          result = method.handler.call(instance, socket, params, request)
        } finally {
          requestChannel.end.publish(context)
        }
      } else {
        result = method.handler.call(instance, socket, params, request)
      }
    } catch (err) {
      this.#settle(socket, session, method, request, undefined, err, true)
      return
    }
    if (isThenable(result)) {
      result.then(
        (value) => this.#settle(socket, session, method, request, value, undefined, false),
        (err: unknown) => this.#settle(socket, session, method, request, undefined, err, true))
    } else {
      this.#settle(socket, session, method, request, result, undefined, false)
    }
  }

  #settle (socket: RequestSocket, session: Session, method: ServerMethod, request: InboundRequest, value: unknown, err: unknown, failed: boolean): void {
    session.running--
    session.bytes -= request.bytes
    clearTimeout(request.timer)
    if (!request.answered) {
      request.answered = true
      session.inflight.delete(request.id)
      this.#send(socket, failed ? this.#failure(socket, method, request, err) : this.#success(socket, method, request, value))
    }
    const log = socket.log
    if (debugEnabled(log)) {
      log.debug({ method: method.name, id: request.id, durationMs: performance.now() - request.startedAt, outcome: request.outcome }, 'websocket request')
    }
    const context = request.context
    if (context !== undefined) {
      context.outcome = request.outcome
      if (failed) {
        context.error = err
        requestChannel.error.publish(context)
      } else {
        context.result = value
      }
      requestChannel.asyncStart.publish(context)
      requestChannel.asyncEnd.publish(context)
    }
    const settings = this.#settings
    if (session.full && session.running < settings.maxConcurrentRequests && session.bytes < settings.maxPendingBytes) {
      session.full = false
      socket[kResumeRequests]()
    }
  }

  #success (socket: RequestSocket, method: ServerMethod, request: InboundRequest, value: unknown): string {
    const problem = method.checkResult?.(value)
    let json: string | undefined
    if (problem === undefined) {
      try {
        json = method.result(value)
      } catch (err) {
        json = undefined
        this.#invalidResult(socket, request, (err as Error).message)
      }
    } else {
      this.#invalidResult(socket, request, problem)
    }
    if (json === undefined) return errorAnswer(request.id, RpcCode.InternalError, 'Internal error')
    return `{"jsonrpc":"2.0","id":${idText(request.id)},"result":${json}}`
  }

  /** A reserved subscription method: answered with its result, or its refusal; the socket stays open. */
  #subscription (socket: RequestSocket, subscriptions: Subscriptions, method: string, id: string | number, params: unknown): void {
    subscriptions.call(socket as unknown as WebSocketConnection, method, params).then(
      (json) => this.#send(socket, `{"jsonrpc":"2.0","id":${idText(id)},"result":${json}}`),
      (err: unknown) => {
        if (err instanceof SubscriptionRefusal) {
          this.#send(socket, errorAnswer(id, err.code, err.message, undefined, err.errorName))
          return
        }
        if (!socket.isOpen) return
        socket.log.error({ err, method, params }, 'websocket subscription failed')
        this.#send(socket, errorAnswer(id, RpcCode.InternalError, 'Internal error'))
      })
  }

  #invalidResult (socket: RequestSocket, request: InboundRequest, problem: string): void {
    request.outcome = 'invalid-result'
    socket.log.error({ err: new FST_WS_INVALID_OUTBOUND(problem), method: request.method, id: request.id }, 'websocket request result does not match its schema')
  }

  #failure (socket: RequestSocket, method: ServerMethod, request: InboundRequest, err: unknown): string {
    if (err instanceof RequestError) {
      const declared = method.errors.get(err.name)
      // (No data: the answer's optional data member is left out.)
      const data = err.data
      const problem = declared === undefined ? `"${err.name}" is not an error of ${method.name}` : data === undefined ? undefined : declared.check?.(data)
      if (declared !== undefined && problem === undefined) {
        let json: string | undefined
        try {
          json = data === undefined ? undefined : JSON.stringify(data)
        } catch (cause) {
          // A BigInt or a cycle in the data: the client gets -32603, the app's error is logged.
          request.outcome = 'error'
          socket.log.error({ err: new FST_WS_INVALID_OUTBOUND(`data of app error ${err.name}: ${(cause as Error).message}`), method: request.method, id: request.id }, 'websocket request failed')
          return errorAnswer(request.id, RpcCode.InternalError, 'Internal error')
        }
        request.outcome = 'app-error'
        return errorAnswer(request.id, declared.code, err.message, json, err.name)
      }
      request.outcome = 'error'
      socket.log.error({ err: new FST_WS_INVALID_OUTBOUND(`app error ${problem as string}`), method: request.method, id: request.id }, 'websocket request failed')
    } else {
      request.outcome = 'error'
      socket.log.error({ err, method: request.method, id: request.id }, 'websocket request failed')
    }
    return errorAnswer(request.id, RpcCode.InternalError, 'Internal error')
  }

  /** Answers -32800 now and aborts the handler's signal; the handler's own answer is dropped. */
  #stop (socket: RequestSocket, session: Session, request: InboundRequest, outcome: 'cancelled' | 'timeout', message: string): void {
    if (request.answered) return
    request.answered = true
    request.outcome = outcome
    session.inflight.delete(request.id)
    request.abort(new Error(message))
    this.#send(socket, errorAnswer(request.id, RpcCode.Cancelled, message))
  }

  #cancel (socket: RequestSocket, id: string | number): void {
    const session = this.#sessions.get(socket)
    const request = session?.inflight.get(id)
    if (request !== undefined) this.#stop(socket, session as Session, request, 'cancelled', 'Request cancelled')
  }

  #send (socket: RequestSocket, text: string): void {
    if (!socket.isOpen) return
    socket.sendFrame(textFrame(text), text)
  }

  /** An answer from the client to one of the server's calls. */
  #answered (socket: RequestSocket, msg: Record<string, unknown>): void {
    const id = msg.id
    const call = typeof id === 'number' ? this.#sessions.get(socket)?.calls.get(id) : undefined
    if (call === undefined) {
      socket.log.debug({ id }, 'websocket answer to no pending call ignored')
      return
    }
    this.#forget(socket, id as number, call)
    const error = msg.error as { code?: unknown, message?: unknown, data?: unknown, name?: unknown } | null
    if (Object.hasOwn(msg, 'error') && error !== null && typeof error === 'object') {
      const name = typeof error.name === 'string' && call.method.errors.has(error.name) ? error.name : undefined
      call.reject(new RemoteError(typeof error.code === 'number' ? error.code : RpcCode.InternalError,
        typeof error.message === 'string' ? error.message : 'Remote error', error.data, name))
      return
    }
    const problem = call.method.result?.(msg.result)
    if (problem !== undefined) call.reject(new FST_WS_INVALID_RESULT(call.method.name, problem))
    else call.resolve(msg.result)
  }

  #forget (socket: RequestSocket, id: number, call: OutboundCall): void {
    (this.#sessions.get(socket) as Session).calls.delete(id)
    clearTimeout(call.timer)
    if (call.onAbort !== undefined) call.signal?.removeEventListener('abort', call.onAbort)
  }

  /** `socket.call()`: a request to the client, answered by its `client.handle()`. */
  call (socket: RequestSocket, name: string, params: unknown, options: CallOptions | undefined): Promise<unknown> {
    const method = this.#settings.clientMethods.get(name)
    if (method === undefined) return Promise.reject(new FST_WS_UNKNOWN_METHOD(name))
    if (!socket.isOpen) return Promise.reject(new WebSocketClosedError('CLOSED'))
    const problem = method.params?.(params)
    if (problem !== undefined) return Promise.reject(new FST_WS_INVALID_OUTBOUND(`params of ${name}: ${problem}`))
    const signal = options?.signal
    if (signal?.aborted === true) return Promise.reject(new FST_WS_REQUEST_ABORTED(name, { cause: signal.reason }))
    let json: string | undefined
    try {
      json = params === undefined ? undefined : JSON.stringify(params)
    } catch (err) {
      // A BigInt or a cycle in the params: nothing is sent, the call rejects.
      return Promise.reject(new FST_WS_INVALID_OUTBOUND(`params of ${name}: ${(err as Error).message}`))
    }
    const session = this.#session(socket)
    const id = ++session.nextId
    const timeout = options?.timeout ?? this.#settings.requestTimeout ?? DEFAULT_CALL_TIMEOUT
    const text = json === undefined
      ? `{"jsonrpc":"2.0","id":${id},"method":${JSON.stringify(name)}}`
      : `{"jsonrpc":"2.0","id":${id},"method":${JSON.stringify(name)},"params":${json}}`
    return new Promise((resolve, reject) => {
      const giveUp = (err: Error): void => {
        this.#forget(socket, id, call)
        this.#send(socket, `{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":${id}}}`)
        reject(err)
      }
      const call: OutboundCall = {
        method,
        resolve,
        reject,
        timer: setTimeout(() => giveUp(new FST_WS_REQUEST_TIMEOUT(name, timeout)), timeout),
        signal,
        onAbort: signal === undefined ? undefined : () => giveUp(new FST_WS_REQUEST_ABORTED(name, { cause: signal.reason }))
      }
      session.calls.set(id, call)
      if (call.onAbort !== undefined) signal?.addEventListener('abort', call.onAbort)
      this.#send(socket, text)
    })
  }

  /** The connection is gone: every handler's signal aborts, nothing more is answered, calls reject. */
  closed (socket: RequestSocket): void {
    const session = this.#sessions.get(socket)
    if (session === undefined) return
    for (const request of session.inflight.values()) {
      request.answered = true
      request.outcome = 'closed'
      request.abort(new Error('The connection closed'))
    }
    session.inflight.clear()
    for (const [id, call] of session.calls) {
      this.#forget(socket, id, call)
      call.reject(new WebSocketClosedError('CLOSED'))
    }
    // The close hook need not wait for handlers that ignore their signal.
    if (session.full) {
      session.full = false
      socket[kResumeRequests]()
    }
  }
}
