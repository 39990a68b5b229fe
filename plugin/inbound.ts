/*
 * The read side of a connection: what ws's receiver hands over (messages,
 * pings, pongs, protocol errors), the client's heartbeat, the queue of
 * messages waiting for the hook before them, pausing the socket when that
 * queue is full (TCP backpressure) and the rate limit. Messages leave the
 * queue one at a time, in order, for dispatch.ts.
 */
import type { EventEmitter } from 'node:events'
import type { Writable } from 'node:stream'
import type WebSocket from 'ws'
import { CloseCode, CloseReason } from './close-codes'
import { Fifo } from './fifo'
import { messageChannel, rateLimitChannel } from './diagnostics'
import type { KeepaliveClock } from './keepalive'
import { keepaliveNow, kKeepaliveDue } from './keepalive'
import type { TokenBucket } from './rate-limit'
import { closeCodeOf, keepSocket, receiverOf, replaceListener, wsListener } from './internals'
import type { WebSocketConnection } from './connection'
import { answerHeartbeat } from './outbound'
import { dispatch, finishIfGone, onControl } from './dispatch'
import { connectionOf, Flag, kBucket, kConnection, kFlags, kMessagesIn, kQueue, kRoute, type Tagged } from './state'

/**
 * Messages waiting, as pairs (data, isBinary), and the bytes of the messages
 * received and not yet handled: those waiting and the one an async hook is
 * handling (inHook of them).
 */
export class Inbound extends Fifo<Buffer | boolean> {
  held = 0
  inHook = 0
}

/**
 * Takes messages, pings and pongs from ws's receiver, by listeners that run
 * ours, then ws's, in ws's place: the WebSocket keeps two listeners, as few
 * as a bare ws app's (each one more makes its table of listeners grow). ws
 * answers pings itself: a ping listener only for a hook.
 */
export function listen (connection: WebSocketConnection, raw: WebSocket, socket: Writable): void {
  keepSocket(raw, socket)
  const route = connection[kRoute]
  const receiver = receiverOf(raw)
  // A ws whose receiver is not laid out as expected: the WebSocket's own events.
  if (receiver === undefined) {
    raw.on('message', receive)
    raw.on('ping', pinged)
    raw.on('pong', ponged)
    return
  }
  replaceListener(receiver, 'message', receivedMessage)
  // ws closes a connection that breaks the protocol with the right code but
  // no reason; answering first gives the peer a reason it can show.
  replaceListener(receiver, 'error', brokeProtocol)
  if (route.handlers.ping !== undefined) replaceListener(receiver, 'ping', receivedPing)
  if (route.keepalive !== undefined || route.handlers.pong !== undefined) replaceListener(receiver, 'pong', receivedPong)
}

function receivedMessage (this: EventEmitter, data: unknown, isBinary?: boolean): void {
  onMessage(connectionOf(this), data as Buffer, isBinary as boolean)
  wsListener('message').call(this, data, isBinary)
}

function receivedPing (this: EventEmitter, data: unknown): void {
  // ws answers with a pong first.
  wsListener('ping').call(this, data)
  onControl(connectionOf(this), 'ping', data as Buffer)
}

function receivedPong (this: EventEmitter, data: unknown): void {
  onPong(connectionOf(this), data as Buffer)
  wsListener('pong').call(this, data)
}

function brokeProtocol (this: EventEmitter, err: unknown): void {
  const error = err as Error
  const code = closeCodeOf(error)
  connectionOf(this).fail(code, code === CloseCode.MessageTooBig ? CloseReason.MessageTooBig : error.message)
  wsListener('error').call(this, err)
}

// For a ws whose receiver is not laid out as ws 8's.
function receive (this: WebSocket, data: Buffer, isBinary: boolean): void {
  onMessage((this as unknown as Tagged)[kConnection], data, isBinary)
}

function pinged (this: WebSocket, data: Buffer): void {
  onControl((this as unknown as Tagged)[kConnection], 'ping', data)
}

function ponged (this: WebSocket, data: Buffer): void {
  onPong((this as unknown as Tagged)[kConnection], data)
}

function onPong (connection: WebSocketConnection, data: Buffer): void {
  if ((connection[kFlags] & Flag.AwaitingPong) !== 0) {
    connection[kFlags] &= ~Flag.AwaitingPong
    connection[kKeepaliveDue] = keepaliveNow() + (connection[kRoute].keepalive as KeepaliveClock).interval
  }
  onControl(connection, 'pong', data)
}

function onMessage (connection: WebSocketConnection, data: Buffer, isBinary: boolean): void {
  const flags = connection[kFlags]
  if ((flags & Flag.Discard) !== 0) return
  const route = connection[kRoute]
  // The client's heartbeat: an empty text message, never valid JSON, answered
  // at once, like a ping, however busy the hooks are. It takes a token of the
  // rate limit when there is one; past the limit, 'close' closes and 'pause'
  // answers it all the same (a paused client is not a dead one).
  if (data.length === 0 && !isBinary && route.options.heartbeat) {
    const bucket = connection[kBucket]
    if (bucket === undefined || bucket.take(0) || !bucket.closes) {
      answerHeartbeat(connection)
      return
    }
    rateLimited(connection, bucket, 0)
    return
  }
  connection[kMessagesIn]++
  if (messageChannel.hasSubscribers) messageChannel.publish({ socket: connection, direction: 'in', bytes: data.length, binary: isBinary })
  const bucket = connection[kBucket]
  if (bucket !== undefined && bucket.closes && !bucket.take(data.length)) {
    rateLimited(connection, bucket, data.length)
    return
  }
  // While dispatch is held, an answer to the server's call or a cancellation
  // of a running request is taken out of turn: what holds dispatch may wait for it.
  if ((flags & Flag.Busy) !== 0 && !isBinary && route.requests?.control(connection, data) === true) return
  // With action 'pause', tokens are taken when the message is delivered.
  let throttled = false
  if ((flags & Flag.Busy) === 0) {
    if (bucket === undefined || bucket.closes || bucket.take(data.length)) {
      deliver(connection, data, isBinary)
      return
    }
    throttled = true
  }
  const queue = connection[kQueue] ?? (connection[kQueue] = new Inbound())
  queue.push(data)
  queue.push(isBinary)
  queue.held += data.length
  if (throttled) rateLimited(connection, bucket as TokenBucket, data.length)
  const options = route.options
  if ((connection[kFlags] & Flag.Paused) === 0 && (queue.length >= 2 * options.maxPendingMessages ||
      queue.held >= (options.maxPendingBytes ?? options.maxMessageSize))) {
    // Stop reading: TCP backpressure reaches the client until the queue drains.
    pause(connection)
  }
}

/** Delivers queued messages, one at a time, until a hook goes async or the queue is empty. */
export function drain (connection: WebSocketConnection): void {
  connection[kFlags] &= ~Flag.Busy
  let queue = connection[kQueue]
  if (queue !== undefined) {
    queue.held -= queue.inHook
    queue.inHook = 0
  }
  while (queue !== undefined && queue.length > 0) {
    const bucket = connection[kBucket]
    if (bucket !== undefined && !bucket.closes && !bucket.take((queue.peek() as Buffer).length)) {
      rateLimited(connection, bucket, (queue.peek() as Buffer).length)
      return
    }
    const data = queue.shift() as Buffer
    const isBinary = queue.shift() as boolean
    queue.held -= data.length
    deliver(connection, data, isBinary)
    if ((connection[kFlags] & Flag.Busy) !== 0) return
    // A failure while dispatching drops the queue.
    queue = connection[kQueue]
  }
  resume(connection)
  finishIfGone(connection)
}

/** Dispatches one message; while an async hook handles it, its bytes count as held. */
function deliver (connection: WebSocketConnection, data: Buffer, isBinary: boolean): void {
  dispatch(connection, data, isBinary)
  if ((connection[kFlags] & Flag.Busy) !== 0) {
    const queue = connection[kQueue] ?? (connection[kQueue] = new Inbound())
    queue.inHook = data.length
    queue.held += data.length
  }
}

/**
 * The bucket is empty. 'close': 1008. 'pause': stop reading (TCP
 * backpressure; nothing is dropped) and hold the queue until tokens return.
 */
function rateLimited (connection: WebSocketConnection, bucket: TokenBucket, size: number): void {
  const waitMs = bucket.closes ? 0 : bucket.wait(size)
  if (rateLimitChannel.hasSubscribers) rateLimitChannel.publish({ socket: connection, action: bucket.closes ? 'close' : 'pause', waitMs })
  if (bucket.closes) {
    connection.log.debug('websocket rate limit exceeded; closing')
    connection.fail(CloseCode.PolicyViolation, CloseReason.RateLimited)
    return
  }
  holdQueue(connection)
  setTimeout(() => drain(connection), waitMs)
}

/**
 * Holds the queue until drain(). Reading goes on: heartbeats, answers to the
 * server's calls and cancellations are taken as they come, and other messages
 * queue until maxPendingMessages or maxPendingBytes, where reading pauses.
 */
export function holdQueue (connection: WebSocketConnection): void {
  connection[kFlags] |= Flag.Busy
}

/** Drops what is queued: the server is closing the connection for bad input or a failed hook. */
export function discard (connection: WebSocketConnection): void {
  connection[kFlags] |= Flag.Discard
  connection[kQueue] = undefined
}

export function resume (connection: WebSocketConnection): void {
  if ((connection[kFlags] & Flag.Paused) !== 0) {
    connection[kFlags] &= ~Flag.Paused
    pausedBeats.delete(connection)
    connection.raw.resume()
  }
}

function pause (connection: WebSocketConnection): void {
  connection[kFlags] |= Flag.Paused
  connection.raw.pause()
  if (connection[kRoute].options.heartbeat) beatWhilePaused(connection)
}

/**
 * A client's heartbeat cannot be read while reading is paused: the server
 * answers for it, with an empty text message every PAUSED_BEAT_MS to each
 * connection of a heartbeat route it paused, so the client's heartbeat
 * timeout does not take a full queue for a dead link. One timer for all.
 */
export const PAUSED_BEAT_MS = 1000
const pausedBeats = new Set<WebSocketConnection>()
let beatTimer: NodeJS.Timeout | undefined

function beatWhilePaused (connection: WebSocketConnection): void {
  answerHeartbeat(connection)
  pausedBeats.add(connection)
  if (beatTimer === undefined) {
    beatTimer = setInterval(beatPaused, PAUSED_BEAT_MS)
    beatTimer.unref()
  }
}

function beatPaused (): void {
  for (const connection of pausedBeats) {
    if ((connection[kFlags] & (Flag.Paused | Flag.Gone)) !== Flag.Paused) pausedBeats.delete(connection)
    else answerHeartbeat(connection)
  }
  if (pausedBeats.size === 0) {
    clearInterval(beatTimer)
    beatTimer = undefined
  }
}
