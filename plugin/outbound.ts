/*
 * The write side of a connection: `send()`, the write queue and the two
 * limits on what a reader that does not keep up may cost — its own
 * (`maxBufferedAmount`) and the server's (`maxBufferedTotal`, SendBudget) —
 * and the answers to client heartbeats, which are sends like any other.
 */
import type { SendBudget } from './budget'
import WebSocket from 'ws'
import { CloseCode, CloseReason } from './close-codes'
import { Fifo } from './fifo'
import { WebSocketClosedError } from './errors'
import { dropChannel, messageChannel } from './diagnostics'
import { socketOf } from './internals'
import type { WebSocketConnection } from './connection'
import type { SendOptions } from './connection'
import { Flag, kFlags, kFlush, kMessagesOut, kRoute, noop, readyStates } from './state'

export const TEXT = Object.freeze({ binary: false })
const BINARY = Object.freeze({ binary: true })
const FLUSHED = Promise.resolve()
const EMPTY = Buffer.alloc(0)
const EMPTY_TEXT = ''
// An empty text frame from the server: two bytes of header.
const HEARTBEAT_BYTES = 2
// What a message waiting to be written costs besides its bytes (frame, write
// request, promise), for the maxBufferedAmount check.
const MESSAGE_COST = 512

type Payload = string | Buffer | ArrayBufferView | ArrayBuffer

// new Promise(capture) hands its resolving functions over without a closure per send.
let capturedResolve: (value: void) => void = noop
let capturedReject: (reason: unknown) => void = noop
function capture (resolve: (value: void) => void, reject: (reason: unknown) => void): void {
  capturedResolve = resolve
  capturedReject = reject
}

/**
 * The writes of a connection not yet flushed (created on first use), four
 * entries each: what the write holds of the send budget (a shared frame, or
 * a count of bytes), then the resolve, reject and promise of a send (or
 * undefined for a frame). Writes complete in order, so one callback serves them all.
 */
export class Flush {
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

export function send (connection: WebSocketConnection, data: unknown, options?: SendOptions): Promise<void> {
  const raw = connection.raw
  if (raw.readyState !== WebSocket.OPEN) throw new WebSocketClosedError(readyStates[raw.readyState])
  // A backlog past the limit means the peer is not reading what it was sent:
  // cut it off rather than queue more. (Checked before queuing, so one large
  // message to a reader that keeps up is fine.) Each waiting message also
  // costs memory of its own, so it counts as at least MESSAGE_COST bytes.
  const waiting = waitingSends(connection)
  if (overLimit(connection, waiting)) throw new WebSocketClosedError(readyStates[raw.readyState])
  const route = connection[kRoute]
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
    payload = route.codec.encode(data)
    binary = options?.binary ?? false
  }
  const opts = binary ? BINARY : TEXT
  connection[kMessagesOut]++
  if (messageChannel.hasSubscribers) {
    const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength
    messageChannel.publish({ socket: connection, direction: 'out', bytes, binary })
  }
  // Fast path: nothing is waiting to be written, so the frame goes to the
  // network within this call; a callback per write would cost Node a closure
  // and a tick per writev.
  const socket = socketOf(raw)
  if (waiting === 0 && socket.writableLength === 0 && !route.compression) {
    raw.send(payload, opts)
    const left = socket.writableLength
    if (left === 0) return FLUSHED
    // The kernel took only part of it: an empty write behind it says when the rest is out.
    const flush = flushOf(connection)
    const sent = whenFlushed(connection, flush, left)
    socket.write(EMPTY, flush.callback)
    route.budget.check()
    return sent
  }
  const flush = flushOf(connection)
  const sent = whenFlushed(connection, flush, typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength)
  raw.send(payload, opts, flush.callback)
  route.budget.check()
  return sent
}

/**
 * Answers a client heartbeat with an empty text message. It is a send like
 * any other for the limits: past maxBufferedAmount the reader is cut off, and
 * while it is behind, the answer waits in the queue and counts for
 * maxBufferedAmount (as a message) and maxBufferedTotal.
 */
export function answerHeartbeat (connection: WebSocketConnection): void {
  const raw = connection.raw
  if (raw.readyState !== WebSocket.OPEN) return
  const waiting = waitingSends(connection)
  if (overLimit(connection, waiting)) return
  const socket = socketOf(raw)
  if (waiting === 0 && socket.writableLength === 0 && !connection[kRoute].compression) {
    raw.send(EMPTY_TEXT, TEXT)
    const left = socket.writableLength
    if (left === 0) return
    const flush = flushOf(connection)
    waitsAsSend(connection, flush, left)
    socket.write(EMPTY, flush.callback)
  } else {
    const flush = flushOf(connection)
    waitsAsSend(connection, flush, HEARTBEAT_BYTES)
    raw.send(EMPTY_TEXT, TEXT, flush.callback)
  }
  connection[kRoute].budget.check()
}

/** Sends waiting to be flushed, for the maxBufferedAmount check. */
export function waitingSends (connection: WebSocketConnection): number {
  const flush = connection[kFlush]
  return flush === undefined ? 0 : flush.sends
}

/** Past maxBufferedAmount: the reader is cut off, and true. */
export function overLimit (connection: WebSocketConnection, waiting: number): boolean {
  if (connection.raw.bufferedAmount + waiting * MESSAGE_COST <= connection[kRoute].options.maxBufferedAmount) return false
  cutOff(connection, 'maxBufferedAmount', waiting, undefined, 'websocket peer is not reading; closing')
  return true
}

/** Closes a reader that does not keep up with 1008 `send buffer full`, with a warning and a drop event naming the limit. */
function cutOff (connection: WebSocketConnection, limit: 'maxBufferedAmount' | 'maxBufferedTotal', messages: number,
  budget: SendBudget | undefined, warning: string): void {
  const bufferedAmount = connection.raw.bufferedAmount
  connection.log.warn(budget === undefined
    ? { bufferedAmount, messages }
    : { bufferedAmount, messages, bufferedTotal: budget.total, maxBufferedTotal: budget.max }, warning)
  if (dropChannel.hasSubscribers) dropChannel.publish({ socket: connection, bufferedAmount, messages, limit })
  connection.fail(CloseCode.PolicyViolation, CloseReason.SendBufferFull)
}

/** Bytes the connection holds of the server's send budget (shared frames in full); only asked of members. */
export function budgetHeld (connection: WebSocketConnection): number {
  return (connection[kFlush] as Flush).held
}

/**
 * Cut off by maxBufferedTotal: what it holds stops counting at once (nothing
 * more is written to it, and its link is destroyed within closeTimeout).
 */
export function cutForBudget (connection: WebSocketConnection, budget: SendBudget): void {
  cutOff(connection, 'maxBufferedTotal', (connection[kFlush] as Flush).sends, budget,
    'websocket send buffers over maxBufferedTotal; closing the connection holding the most')
  // (Closing already, at the peer's word: fail() left it as it was.)
  releaseBudget(connection)
}

/**
 * The server closed the connection: nothing more is written to it, and its
 * link is destroyed within closeTimeout, so what it holds stops counting in
 * the budget at once.
 */
export function releaseBudget (connection: WebSocketConnection): void {
  const flush = connection[kFlush]
  connection[kFlags] |= Flag.Released
  if (flush === undefined || flush.held === 0) return
  const budget = connection[kRoute].budget
  flush.entries.forEach((entry, i) => {
    if (i % 4 === 0) budget.release(entry as Buffer | number)
  })
  budget.leave(connection)
  flush.held = 0
}

export function flushOf (connection: WebSocketConnection): Flush {
  let flush = connection[kFlush]
  if (flush === undefined) flush = connection[kFlush] = new Flush((err) => flushed(connection, err))
  return flush
}

/** A write that holds bytes of the budget (a shared frame or a count), without a promise. */
export function hold (connection: WebSocketConnection, flush: Flush, held: Buffer | number): void {
  const entries = flush.entries
  entries.push(held)
  entries.push(undefined)
  entries.push(undefined)
  entries.push(undefined)
  count(connection, flush, held)
}

function count (connection: WebSocketConnection, flush: Flush, held: Buffer | number): void {
  // (Never after releaseBudget: a connection the server closed is not written to.)
  const budget = connection[kRoute].budget
  const bytes = budget.hold(held)
  if (flush.held === 0) budget.join(connection)
  flush.held += bytes
}

/** A write counted as a waiting send (maxBufferedAmount) that nobody awaits: no promise of its own. */
function waitsAsSend (connection: WebSocketConnection, flush: Flush, bytes: number): void {
  const entries = flush.entries
  entries.push(bytes)
  entries.push(noop)
  entries.push(noop)
  entries.push(FLUSHED)
  flush.sends++
  count(connection, flush, bytes)
}

/** A promise settled by the next call of the flush callback not yet claimed. */
function whenFlushed (connection: WebSocketConnection, flush: Flush, bytes: number): Promise<void> {
  const sent = new Promise<void>(capture)
  const entries = flush.entries
  entries.push(bytes)
  entries.push(capturedResolve)
  entries.push(capturedReject)
  entries.push(sent)
  flush.sends++
  count(connection, flush, bytes)
  return sent
}

function flushed (connection: WebSocketConnection, err?: Error | null): void {
  const flush = connection[kFlush] as Flush
  const entries = flush.entries
  const held = entries.shift() as Buffer | number
  const resolve = entries.shift() as ((value: void) => void) | undefined
  const reject = entries.shift() as (reason: unknown) => void
  const sent = entries.shift() as Promise<void>
  if ((connection[kFlags] & Flag.Released) === 0) {
    const budget = connection[kRoute].budget
    flush.held -= budget.release(held)
    if (flush.held === 0) budget.leave(connection)
  }
  if (resolve === undefined) return
  flush.sends--
  if (err === undefined || err === null) return resolve()
  // Nobody may be awaiting this send: a dead connection must not become an
  // unhandled rejection that takes the process down.
  sent.catch(noop)
  // The same error as a send on a closed socket, whatever the stream said.
  const closed = new WebSocketClosedError(readyStates[connection.raw.readyState])
  closed.cause = err
  reject(closed)
}
