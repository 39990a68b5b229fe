/*
 * Calling a connection's hooks: open, then each message (decoded and
 * validated, or to invalidMessage, or a JSON-RPC request for requests.ts),
 * ping and pong, and close once at the end — and what a failing hook means:
 * the `error` hook, or by default a log line and 1011 `internal error`.
 */
import { CloseCode, CloseReason } from './close-codes'
import { callHook, invalidMessageChannel } from './diagnostics'
import type { Handler, HandlerName } from './options'
import { Taken } from './requests'
import type { WebSocketConnection } from './connection'
import { discard, drain, holdQueue } from './inbound'
import { Flag, isThenable, kClose, kFlags, kRoute } from './state'

/** Runs the route handler (`open`); messages wait until it settles. */
export function runOpen (connection: WebSocketConnection): void {
  const route = connection[kRoute]
  let result: unknown
  try {
    result = callHook('open', route.open, route.instance, connection, connection.request)
  } catch (err) {
    openFailed(connection, err)
    return
  }
  if (isThenable(result)) {
    result.then(() => opened(connection), (err: unknown) => openFailed(connection, err))
  } else {
    opened(connection)
  }
}

function opened (connection: WebSocketConnection): void {
  connection[kFlags] = (connection[kFlags] & ~Flag.Phase) | Flag.Ready
  drain(connection)
}

function openFailed (connection: WebSocketConnection, err: unknown): void {
  connection[kFlags] = (connection[kFlags] & ~(Flag.Phase | Flag.Busy)) | Flag.Failed
  discard(connection)
  reportError(connection, err, true)
  finishIfGone(connection)
}

export function dispatch (connection: WebSocketConnection, data: Buffer, isBinary: boolean): void {
  const route = connection[kRoute]
  const message = route.handlers.message
  // JSON-RPC (plugin/requests.ts): a request starts here, in message order, and
  // runs beside what follows; at maxConcurrentRequests reading stops until one ends.
  const requests = route.requests
  if (requests !== undefined && !isBinary) {
    const taken = requests.receive(connection, data, message !== undefined)
    if (taken === Taken.Full) holdQueue(connection)
    if (taken !== Taken.No) return
  }
  if (message === undefined) {
    connection.fail(CloseCode.UnsupportedData, CloseReason.NoMessages)
    return
  }
  let msg: unknown
  if (isBinary) {
    if (route.inbound && !route.binary) {
      connection.fail(CloseCode.UnsupportedData, CloseReason.NoBinary)
      return
    }
    msg = data
  } else if (route.inbound) {
    const text = data.toString()
    try {
      msg = route.codec.decode(text)
    } catch (err) {
      invalid(connection, err as Error, text)
      return
    }
  } else {
    msg = data.toString()
  }
  runHook(connection, 'message', message, msg)
}

function invalid (connection: WebSocketConnection, err: Error, text: string): void {
  if (invalidMessageChannel.hasSubscribers) invalidMessageChannel.publish({ socket: connection, error: err, raw: text })
  const hook = connection[kRoute].handlers.invalidMessage
  if (hook === undefined) {
    connection.fail(CloseCode.InvalidPayload, err.message)
    return
  }
  runHook(connection, 'invalidMessage', hook, err, text)
}

/** Runs a message-ordered hook; an async one holds the queue until it settles. */
function runHook (connection: WebSocketConnection, name: HandlerName, hook: Handler, arg: unknown, extra?: unknown): void {
  let result: unknown
  try {
    result = callHook(name, hook, connection[kRoute].instance, connection, arg, extra)
  } catch (err) {
    reportError(connection, err, false)
    return
  }
  if (isThenable(result)) {
    connection[kFlags] |= Flag.Busy
    result.then(() => drain(connection), (err: unknown) => {
      reportError(connection, err, false)
      drain(connection)
    })
  }
}

/** A ping or pong hook: beside the messages, not in their order. */
export function onControl (connection: WebSocketConnection, name: 'ping' | 'pong', data: Buffer): void {
  // ws has already answered a ping with a pong.
  const route = connection[kRoute]
  const hook = route.handlers[name]
  if (hook === undefined || (connection[kFlags] & Flag.Phase) === Flag.Failed) return
  let result: unknown
  try {
    result = callHook(name, hook, route.instance, connection, data)
  } catch (err) {
    reportError(connection, err, false)
    return
  }
  if (isThenable(result)) result.then(undefined, (err: unknown) => reportError(connection, err, false))
}

/** The `error` hook, or by default: log and close 1011. */
function reportError (connection: WebSocketConnection, err: unknown, fromOpen: boolean): void {
  const route = connection[kRoute]
  const hook = route.handlers.error
  if (hook === undefined) return defaultError(connection, err)
  let result: unknown
  try {
    result = callHook('error', hook, route.instance, connection, err)
  } catch (hookErr) {
    return defaultError(connection, hookErr)
  }
  // A connection whose open failed cannot go on, whatever the hook did.
  const afterHook = (): void => { if (fromOpen) connection.fail(CloseCode.InternalError, CloseReason.InternalError) }
  if (isThenable(result)) result.then(afterHook, (hookErr: unknown) => defaultError(connection, hookErr))
  else afterHook()
}

function defaultError (connection: WebSocketConnection, err: unknown): void {
  connection.log.error({ err }, 'websocket handler failed')
  connection.fail(CloseCode.InternalError, CloseReason.InternalError)
}

/**
 * Tornado's on_close: once, after the connection is gone and every queued
 * message was handled; only if open completed (a pending open is awaited).
 */
export function finishIfGone (connection: WebSocketConnection): void {
  const flags = connection[kFlags]
  if ((flags & (Flag.Gone | Flag.Busy | Flag.Finished)) !== Flag.Gone || (flags & Flag.Phase) === Flag.Opening) return
  connection[kFlags] |= Flag.Finished
  const route = connection[kRoute]
  const hook = (flags & Flag.Phase) === Flag.Ready ? route.handlers.close : undefined
  const done = (): void => route.registry.finished(connection)
  if (hook === undefined) return done()
  const failed = (err: unknown): void => {
    connection.log.error({ err }, 'websocket close hook failed')
    done()
  }
  let result: unknown
  try {
    result = callHook('close', hook, route.instance, connection, connection.closeCode, connection.closeReason, connection[kClose])
  } catch (err) {
    return failed(err)
  }
  if (isThenable(result)) result.then(done, failed)
  else done()
}
