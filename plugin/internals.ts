/*
 * Every private part of `ws` and Fastify this plugin reads, in one place.
 *
 * The fast paths use five things that neither package documents:
 *   receiver  ws's Receiver, its four listeners and the symbol that points back
 *             at the WebSocket: ours replace ws's, so a connection keeps as few
 *             listeners as a bare ws app's, and a protocol error is answered
 *             with a reason before ws closes
 *   sender    the Sender's `_state`, `_queue` and `_firstFragment`: a topic's
 *             pre-built frame may go straight to the net socket only while the
 *             Sender is idle, has nothing queued and is not inside a fragmented message
 *   socket    `WebSocket#_socket`, the net socket, not kept a second time per connection
 *   frame     `Sender.frame`, to build a topic's frame once for every subscriber
 *   logController  Fastify's (5.8+) decision whether a request's lines are logged
 *
 * Each is checked once, when the plugin is registered, on a WebSocket built over
 * an in-memory stream (and on the Fastify instance). What is not laid out as
 * expected falls back to the public API — the WebSocket's own events, ordinary
 * sends, a socket kept in a WeakMap, `disableRequestLogging` — with a warning
 * naming the ws version. Setting FASTIFY_TYPED_WEBSOCKET_INTERNALS=off takes
 * every fallback at once.
 */
import { PassThrough, type Writable } from 'node:stream'
import { EventEmitter } from 'node:events'
import type { FastifyBaseLogger } from 'fastify'
import WebSocket from 'ws'
import { CloseCode } from './close-codes'

export type ReceiverEvent = 'error' | 'message' | 'ping' | 'pong'
export type ReceiverListener = (this: EventEmitter, data: unknown, isBinary?: boolean) => void
const receiverEvents: ReceiverEvent[] = ['error', 'message', 'ping', 'pong']

interface SenderState { _state: number, _queue: unknown[], _firstFragment: boolean }
interface Internal { _receiver?: EventEmitter, _sender?: SenderState, _socket?: Writable }
type FrameBuilder = (data: Buffer, options: object) => Buffer[]

/** What the checks found: each access, usable or not. */
export interface Layout {
  receiver: boolean
  sender: boolean
  socket: boolean
  frame: boolean
}

export const ENV = 'FASTIFY_TYPED_WEBSOCKET_INTERNALS'
const FRAME_OPTIONS = { fin: true, opcode: 1, mask: false, readOnly: false, rsv1: false }

// ws's own receiver listeners, and the symbol under which a receiver points at its WebSocket.
let wsListeners: Record<ReceiverEvent, ReceiverListener> | undefined
let kWebSocket: symbol | undefined
let frameBuilder: FrameBuilder | undefined
let layout: Layout = { receiver: false, sender: false, socket: false, frame: false }
// Only when `socket` is off: the net socket of each WebSocket.
const sockets = new WeakMap<WebSocket, Writable>()

/** The version of the ws that is installed, as its package.json says. */
export function wsVersion (): string {
  try {
    return (require('ws/package.json') as { version: string }).version
  } catch {
    return 'unknown'
  }
}

/** A server-side WebSocket over an in-memory stream, as ws builds one after a handshake. */
function probe (): { ws: WebSocket, stream: PassThrough } {
  const stream = new PassThrough()
  const ws = new (WebSocket as unknown as new (address: null, protocols: undefined, options: object) => WebSocket)(null, undefined, {})
  ;(ws as unknown as { setSocket (socket: PassThrough, head: Buffer, options: object): void }).setSocket(stream, Buffer.alloc(0), { maxPayload: 0 })
  return { ws, stream }
}

function checkReceiver (ws: WebSocket): boolean {
  const receiver = (ws as unknown as Internal)._receiver
  if (!(receiver instanceof EventEmitter)) return false
  const key = Object.getOwnPropertySymbols(receiver).find(k => k.description === 'websocket' && (receiver as unknown as Record<symbol, unknown>)[k] === ws)
  if (key === undefined) return false
  const found: Partial<Record<ReceiverEvent, ReceiverListener>> = {}
  for (const name of receiverEvents) {
    const listeners = receiver.listeners(name)
    if (listeners.length !== 1) return false
    found[name] = listeners[0] as ReceiverListener
  }
  kWebSocket = key
  wsListeners = found as Record<ReceiverEvent, ReceiverListener>
  return true
}

function checkSender (ws: WebSocket): boolean {
  const sender = (ws as unknown as Internal)._sender
  return sender !== undefined && sender._state === 0 && Array.isArray(sender._queue) && sender._firstFragment === true
}

function checkFrame (): boolean {
  frameBuilder = undefined
  const frame = (WebSocket as unknown as { Sender?: { frame?: FrameBuilder } }).Sender?.frame
  if (typeof frame !== 'function') return false
  try {
    // A text frame of "{}": FIN + text, length 2, unmasked.
    const built = Buffer.concat(frame(Buffer.from('{}'), FRAME_OPTIONS))
    if (!built.equals(Buffer.from([0x81, 0x02, 0x7b, 0x7d]))) return false
  } catch {
    return false
  }
  frameBuilder = frame
  return true
}

/**
 * Runs the checks and warns about each fallback; returns the layout in force.
 * Called when the plugin is registered: the probe costs one WebSocket over a
 * stream, and ws is laid out the same for every app of a process.
 */
export function checkInternals (log: FastifyBaseLogger): Layout {
  let found: Layout = { receiver: false, sender: false, socket: false, frame: false }
  if (process.env[ENV] !== 'off') {
    const { ws, stream } = probe()
    found = {
      receiver: checkReceiver(ws),
      sender: checkSender(ws),
      socket: (ws as unknown as Internal)._socket === stream,
      frame: checkFrame()
    }
    // Dropped without closing: the probe's stream never carried a byte.
    stream.removeAllListeners()
    stream.destroy()
  }
  layout = found
  const missing = (Object.keys(layout) as Array<keyof Layout>).filter(k => !layout[k])
  if (missing.length > 0) {
    log.warn({ ws: wsVersion(), fallback: missing },
      process.env[ENV] === 'off'
        ? `${ENV}=off: ws internals are not used; public ws API only`
        : `ws ${wsVersion()} is not laid out as this plugin expects (${missing.join(', ')}); using its public API instead`)
  }
  return layout
}

/** The layout in force (all false until the plugin is registered). */
export function currentLayout (): Readonly<Layout> {
  return layout
}

/** ws's listener for a receiver event (only while `receiver` holds). */
export function wsListener (name: ReceiverEvent): ReceiverListener {
  return (wsListeners as Record<ReceiverEvent, ReceiverListener>)[name]
}

/** A WebSocket's receiver, when its listeners can be replaced; otherwise undefined: use the WebSocket's events. */
export function receiverOf (raw: WebSocket): EventEmitter | undefined {
  return layout.receiver ? (raw as unknown as Internal)._receiver : undefined
}

/** The WebSocket a receiver belongs to (only while `receiver` holds). */
export function webSocketOf (receiver: EventEmitter): WebSocket {
  return (receiver as unknown as Record<symbol, WebSocket>)[kWebSocket as symbol]
}

/** Puts `ours` in the place of ws's listener: one function per event rather than an array. */
export function replaceListener (receiver: EventEmitter, name: ReceiverEvent, ours: ReceiverListener): void {
  receiver.removeListener(name, wsListener(name))
  receiver.on(name, ours)
}

/** Called once per connection with the net socket from the upgrade: kept only when ws's copy cannot be read. */
export function keepSocket (raw: WebSocket, socket: Writable): void {
  if (!layout.socket) sockets.set(raw, socket)
}

export function socketOf (raw: WebSocket): Writable {
  return layout.socket ? (raw as unknown as Internal)._socket as Writable : sockets.get(raw) as Writable
}

/**
 * Whether a pre-built frame may be written to the net socket now, ahead of
 * nothing: ws's Sender is idle (not compressing, not reading a Blob), holds no
 * queued frame, and is not in the middle of a fragmented message. Without the
 * `sender` and `frame` checks, never: every frame then goes through ws in order.
 */
export function senderIdle (raw: WebSocket): boolean {
  if (!layout.sender || !layout.frame) return false
  const sender = (raw as unknown as Internal)._sender as SenderState
  return sender._state === 0 && sender._queue.length === 0 && sender._firstFragment
}

const NO_FRAME = Buffer.alloc(0)

/** One unmasked text frame of `data` (never empty), or an empty buffer when frames are not built here. */
export function buildFrame (data: string): Buffer {
  if (!layout.frame) return NO_FRAME
  return Buffer.concat((frameBuilder as FrameBuilder)(Buffer.from(data), FRAME_OPTIONS))
}

// ws's receiver errors carry a public `code`; the close code for each (RFC 6455 §7.4.1).
const closeCodes: Record<string, number> = {
  WS_ERR_INVALID_UTF8: CloseCode.InvalidPayload,
  WS_ERR_UNSUPPORTED_MESSAGE_LENGTH: CloseCode.MessageTooBig,
  WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH: CloseCode.MessageTooBig,
  WS_ERR_TOO_MANY_BUFFERED_PARTS: CloseCode.PolicyViolation
}

/** The close code for a ws receiver error, from its `code` (`WS_ERR_*`); a protocol error otherwise. */
export function closeCodeOf (err: Error): number {
  const code = (err as Error & { code?: unknown }).code
  return typeof code === 'string' && code in closeCodes ? closeCodes[code] : CloseCode.ProtocolError
}

interface LogController { isLogDisabled (request: unknown): boolean }
const controllers = new WeakMap<object, LogController | null>()

/**
 * Fastify's log controller (5.8+), which decides whether request lines are
 * logged; not exported, so found by its symbol's name, once per instance.
 * null: the caller reads `disableRequestLogging` instead.
 */
export function requestLogGateOf (instance: object): LogController | null {
  let controller = controllers.get(instance)
  if (controller !== undefined) return controller
  controller = null
  if (process.env[ENV] !== 'off') {
    for (let o: object | null = instance; o !== null && controller === null; o = Object.getPrototypeOf(o) as object | null) {
      for (const key of Object.getOwnPropertySymbols(o)) {
        const value = (o as Record<symbol, unknown>)[key]
        if (key.description === 'fastify.logController' && typeof (value as LogController | null)?.isLogDisabled === 'function') {
          controller = value as LogController
        }
      }
    }
  }
  controllers.set(instance, controller)
  return controller
}
