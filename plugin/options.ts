import { FST_WS_INVALID_OPTION } from './errors'
import type { RateLimit } from './rate-limit'
import { connectionDefaults, pluginDefaults, type ConnectionOptions } from './defaults'

export type { ConnectionOptions } from './defaults'
export type OriginOption = NonNullable<ConnectionOptions['checkOrigin']>
export type SubprotocolSelector = NonNullable<ConnectionOptions['selectSubprotocol']>
export const defaults = connectionDefaults

const handlerNames = ['message', 'close', 'ping', 'pong', 'error', 'invalidMessage'] as const
export type HandlerName = typeof handlerNames[number]
/** A user's hook, called with the Fastify instance as `this`. */
export type Handler = (this: unknown, ...args: unknown[]) => unknown

const routeOnly = new Set(['inbound', 'outbound', 'binary', 'http', 'requests', 'clientRequests', 'handlers', 'subscriptions', ...handlerNames])

type Input = Record<string, unknown>

function fail (where: string, message: string): never {
  throw new FST_WS_INVALID_OPTION(where, message)
}

/** Edits (insert, delete, replace, swap two neighbours) from one name to another, case aside. */
function distance (a: string, b: string): number {
  a = a.toLowerCase()
  b = b.toLowerCase()
  const rows: number[][] = []
  for (let i = 0; i <= a.length; i++) {
    const row = [i]
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j)
        continue
      }
      const up = rows[i - 1] as number[]
      let best = Math.min(up[j] as number + 1, row[j - 1] as number + 1, up[j - 1] as number + (a[i - 1] === b[j - 1] ? 0 : 1))
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, (rows[i - 2] as number[])[j - 2] as number + 1)
      row.push(best)
    }
    rows.push(row)
  }
  return (rows[a.length] as number[])[b.length] as number
}

/** `unknown option "x"`, with the closest known name when one is near enough to be a typo. */
function unknownOption (name: string, known: Iterable<string>): string {
  let closest: string | undefined
  let best = Math.max(2, Math.floor(name.length / 4)) + 1
  for (const candidate of known) {
    const d = distance(name, candidate)
    if (d < best) {
      best = d
      closest = candidate
    }
  }
  return `unknown option "${name}"` + (closest === undefined ? '' : `; did you mean "${closest}"?`)
}

function checkCount (where: string, name: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    fail(where, `${name} must be an integer >= ${min}, got ${String(value)}`)
  }
  return value
}

function checkOption (where: string, name: string, value: unknown): void {
  switch (name) {
    case 'maxMessageSize':
    case 'maxPendingMessages':
    case 'maxPendingBytes':
    case 'closeTimeout':
    case 'maxBufferedAmount':
    case 'maxConnections':
    case 'maxConcurrentRequests':
    case 'maxSubscriptions':
    case 'requestTimeout':
      checkCount(where, name, value, 1)
      return
    case 'rateLimit':
      checkRateLimit(where, value)
      return
    case 'pingInterval':
    case 'pingTimeout':
      checkCount(where, name, value, 0)
      return
    case 'checkOrigin':
      if (value === true || typeof value === 'function') return
      if (value === false) fail(where, 'checkOrigin: false is ambiguous; leave it out for the same-host rule, or pass true to allow every origin')
      if (Array.isArray(value) && value.every(o => typeof o === 'string' || o instanceof RegExp)) return
      fail(where, 'checkOrigin must be a boolean, an array of strings and RegExps, or a function')
      break
    case 'compression':
      if (typeof value !== 'boolean' && (value === null || typeof value !== 'object')) {
        fail(where, 'compression must be a boolean or a permessage-deflate options object')
      }
      return
    case 'validateOutbound':
    case 'heartbeat':
    case 'binary':
      if (typeof value !== 'boolean') fail(where, `${name} must be a boolean`)
      return
    case 'subprotocols':
      if (!Array.isArray(value) || value.length === 0 || !value.every(p => typeof p === 'string' && p !== '')) {
        fail(where, 'subprotocols must be a non-empty array of strings')
      }
      return
    case 'inbound':
    case 'outbound':
      if (value === null || typeof value !== 'object') fail(where, `${name} must be a schema object`)
      return
    case 'requests':
    case 'clientRequests':
    case 'handlers':
    case 'subscriptions':
      if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(where, `${name} must be an object keyed by method name`)
      return
    default:
      // selectSubprotocol, http and the lifecycle hooks
      if (typeof value !== 'function') fail(where, `${name} must be a function`)
  }
}

/** Checks the plugin's maxBufferedTotal (a plugin option only: it bounds the whole server). */
export function resolveMaxBufferedTotal (value: unknown, where = 'fastify-typed-websocket options'): number {
  if (value === undefined) return pluginDefaults.maxBufferedTotal
  return checkCount(where, 'maxBufferedTotal', value, 1)
}

const rateLimitKeys = new Set(['messages', 'bytes', 'interval', 'action'])

function checkRateLimit (where: string, value: unknown): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    fail(where, 'rateLimit must be an object { messages, bytes?, interval, action }')
  }
  const limit = value as Record<string, unknown>
  for (const key of Object.keys(limit)) {
    if (!rateLimitKeys.has(key)) fail(where, `rateLimit: ${unknownOption(key, rateLimitKeys)}`)
  }
  checkCount(where, 'rateLimit.messages', limit.messages, 1)
  if (limit.bytes !== undefined) checkCount(where, 'rateLimit.bytes', limit.bytes, 1)
  checkCount(where, 'rateLimit.interval', limit.interval, 1)
  if (limit.action !== 'pause' && limit.action !== 'close') {
    fail(where, `rateLimit.action must be 'pause' or 'close', got ${String(limit.action)}`)
  }
}

const knownPluginOptions = new Set(Object.keys(defaults))
// What a typo among the plugin's options may have meant: also the options index.ts takes first.
const pluginOptionNames = [...knownPluginOptions, 'broker', 'maxBufferedTotal']

// Resolved options whose pingTimeout was set explicitly rather than following pingInterval.
const explicitPingTimeout = new WeakSet<ConnectionOptions>()

/**
 * Checks the plugin's options and merges them over the defaults.
 * `where` names the source in error messages.
 */
export function resolvePluginOptions (input: Input | undefined, where = 'fastify-typed-websocket options'): ConnectionOptions {
  const resolved: ConnectionOptions = { ...defaults }
  if (input === undefined) return resolved
  return mergeOptions(resolved, input, where, knownPluginOptions)
}

function mergeOptions (base: ConnectionOptions, input: Input, where: string, known: Set<string>): ConnectionOptions {
  const merged: Record<string, unknown> = { ...base }
  for (const name of Object.keys(input)) {
    const value = input[name]
    if (value === undefined) continue
    if (name === 'maxBufferedTotal') fail(where, 'maxBufferedTotal is an option of the plugin, for the whole server, not of a route')
    if (!known.has(name)) fail(where, unknownOption(name, known === knownPluginOptions ? pluginOptionNames : known))
    checkOption(where, name, value)
    if (name === 'rateLimit') {
      const { messages, bytes, interval, action } = value as RateLimit
      merged[name] = { messages, bytes, interval, action }
    } else if (knownPluginOptions.has(name)) merged[name] = value
  }
  const result = merged as unknown as ConnectionOptions
  // pingTimeout follows pingInterval unless it was given, here or by the plugin.
  if (input.pingTimeout !== undefined || explicitPingTimeout.has(base)) {
    explicitPingTimeout.add(result)
  } else {
    result.pingTimeout = result.pingInterval
  }
  if (result.pingInterval > 0 && result.pingTimeout === 0) {
    fail(where, 'pingTimeout must be > 0 while pingInterval is on')
  }
  if (input.subprotocols !== undefined && input.selectSubprotocol !== undefined) {
    fail(where, 'give either subprotocols or selectSubprotocol, not both')
  }
  // A route that sets one of them replaces the plugin's other one.
  if (input.subprotocols !== undefined) result.selectSubprotocol = undefined
  if (input.selectSubprotocol !== undefined) result.subprotocols = undefined
  return result
}

export interface RouteSettings {
  options: ConnectionOptions
  inbound: object | undefined
  outbound: object | undefined
  binary: boolean
  /** The answer to a plain GET or HEAD without an upgrade. */
  http?: Handler
  handlers: Partial<Record<HandlerName, Handler>>
  /** JSON-RPC methods the client may call, their handlers, and the methods the server may call. */
  requests: Record<string, unknown> | undefined
  requestHandlers: Record<string, unknown> | undefined
  clientRequests: Record<string, unknown> | undefined
  /** Topics the client may subscribe to (`$/subscribe`), by name. */
  subscriptions: Record<string, unknown> | undefined
}

const knownRouteOptions = new Set([...knownPluginOptions, ...routeOnly])

/** Checks a route's `websocket` option (`true` or an object) and merges it over the plugin's options. */
export function resolveRouteOptions (base: ConnectionOptions, input: unknown, url: string): RouteSettings {
  const where = `Route "${url}"`
  if (input === true) {
    return { options: base, inbound: undefined, outbound: undefined, binary: false, handlers: {}, requests: undefined, requestHandlers: undefined, clientRequests: undefined, subscriptions: undefined }
  }
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    fail(where, 'the websocket option must be true or an object')
  }
  const route = input as Input
  const options = mergeOptions(base, route, where, knownRouteOptions)
  const handlers: RouteSettings['handlers'] = {}
  for (const name of handlerNames) {
    if (route[name] !== undefined) handlers[name] = route[name] as Handler
  }
  return {
    options,
    inbound: route.inbound as object | undefined,
    outbound: route.outbound as object | undefined,
    binary: route.binary === true,
    http: route.http as Handler | undefined,
    handlers,
    requests: route.requests as Record<string, unknown> | undefined,
    requestHandlers: route.handlers as Record<string, unknown> | undefined,
    clientRequests: route.clientRequests as Record<string, unknown> | undefined,
    subscriptions: route.subscriptions as Record<string, unknown> | undefined
  }
}
