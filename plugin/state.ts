/*
 * A connection's state, shared by the modules that work on it: connection.ts
 * (the socket API, lifecycle, keepalive), outbound.ts (the write queue and
 * both send budgets), frame-writer.ts (topic frames), inbound.ts (the read
 * queue, pause, rate gating) and dispatch.ts (hooks, the error policy).
 *
 * The state lives on the connection itself, under these symbols, and those
 * modules are plain functions over it: every field costs each idle connection
 * 8 bytes, and an object per concern would cost more.
 */
import type { EventEmitter } from 'node:events'
import { webSocketOf } from './internals'
import type { WebSocketConnection } from './connection'

// A connection's state, in one small integer. The low two bits are the phase:
// Opening (the open hook is running), Ready (messages flow), Failed (open threw).
export const enum Flag {
  Opening = 0,
  Ready = 1,
  Failed = 2,
  Phase = 3,
  // A hook (open or message) is running; inbound messages wait in the queue.
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

/** The route's compiled runtime (RouteRuntime). */
export const kRoute = Symbol('route')
/** Flag bits. */
export const kFlags = Symbol('flags')
/** inbound.ts: messages waiting (created with the first message that waits or goes to an async hook). */
export const kQueue = Symbol('queue')
/** outbound.ts: writes not yet flushed (created on first use). */
export const kFlush = Symbol('flush')
export const kMessagesIn = Symbol('messagesIn')
export const kMessagesOut = Symbol('messagesOut')
/** ms since the keepalive epoch, and the socket's byte counts, at the 101 (small integers). */
export const kOpenedAt = Symbol('openedAt')
export const kBytesRead = Symbol('bytesRead')
export const kBytesWritten = Symbol('bytesWritten')
/** The rate limit's token bucket, if the route has one. */
export const kBucket = Symbol('bucket')
/** What the server sent in its close frame; once the connection is gone, the close details. */
export const kClose = Symbol('close')
/** frame-writer.ts: the tick of the last frame written by sendFrame. */
export const kFrameTick = Symbol('frameTick')

// The connection a ws WebSocket belongs to: ws's events are handled by shared
// functions rather than closures per connection.
export const kConnection = Symbol('fastify-typed-websocket.connection')
export interface Tagged { [kConnection]: WebSocketConnection }

export function connectionOf (receiver: EventEmitter): WebSocketConnection {
  return (webSocketOf(receiver) as unknown as Tagged)[kConnection]
}

// What the server said in its close frame (the names of the close details).
export interface ServerClose { serverCode: number, serverReason: string }

export const readyStates = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']

export function noop (): void {}

export function isThenable (value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as PromiseLike<unknown>).then === 'function'
}
