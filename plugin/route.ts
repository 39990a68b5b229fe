import { validateHeaderName, validateHeaderValue } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type Ajv from 'ajv'
import type { Duplex } from 'node:stream'
import { type WebSocket, WebSocketServer } from 'ws'
import { compileCodec, createAjv } from './codec'
import { WebSocketConnection, type RouteRuntime } from './connection'
import { FST_WS_INVALID_OPTION, FST_WS_NO_UPGRADE_SOCKET, FST_WS_NOT_GET, FST_WS_SUBPROTOCOL_NOT_OFFERED } from './errors'
import {
  checkUpgrade, checkVersionAndKey, compileOriginCheck, parseSubprotocols, preferredSubprotocol,
  refusals, requestOrigin, type OriginVerdict, type Refusal
} from './handshake'
import { resolveRouteOptions, type ConnectionOptions, type Handler, type SubprotocolSelector } from './options'
import type { KeepaliveClocks } from './keepalive'
import type { ClientRegistry } from './registry'
import type { SendBudget } from './budget'
import { destroyOnError, pendingUpgrades } from './upgrade'
import { markTaken } from './plugin-order'
import { routeOutbound, type RouteOutbound } from './outbound-fit'
import { compileMethods } from './request-methods'
import { RequestEngine } from './requests'
import { Subscriptions } from './subscriptions'
import type { TopicNode } from './topics'

/** What the plugin shares between its hooks. */
export interface PluginState {
  options: ConnectionOptions
  registry: ClientRegistry
  closing: boolean
  /** Routes seen by onRoute, compiled when the app is ready. */
  routes: WebSocketRoute[]
  /** The open handlers of websocket GET routes: Fastify's HEAD twin of such a route shares it. */
  openHandlers: WeakSet<object>
  /** The longest closeTimeout of any route: how long shutdown may take. */
  maxCloseTimeout: number
  keepalive: KeepaliveClocks
  /** Connections open on every route, for the plugin's maxConnections. */
  connections: ConnectionCount
  /** Bytes queued to slow readers on every route, for maxBufferedTotal. */
  budget: SendBudget
  /** The app's topics: what a route's `subscriptions` may name. */
  topics: TopicNode
}

/** Open connections, counted from the 101 to ws's 'close' (emitted exactly once). */
export class ConnectionCount {
  count = 0
  readonly max: number
  constructor (max: number | undefined) {
    this.max = max ?? Infinity
  }

  get full (): boolean {
    return this.count >= this.max
  }
}

interface CompiledRoute extends RouteRuntime {
  wss: WebSocketServer
  checkOrigin: OriginVerdict
  subprotocols: string[] | undefined
  selectSubprotocol: SubprotocolSelector | undefined
  connections: ConnectionCount
  http: Handler | undefined
  /** What topics check a subscriber's route against. */
  outbound: RouteOutbound
}

export interface WebSocketRoute {
  url: string
  instance: FastifyInstance
  input: unknown
  open: Handler
  compiled: CompiledRoute | undefined
}

// What a refused upgrade over maxConnections suggests before trying again.
const RETRY_AFTER_SECONDS = '5'

interface Accept {
  protocol: string | undefined
  headers: string[]
}

// What the 101 being written needs: ws calls handleProtocols and emits
// 'headers' synchronously within handleUpgrade, so it travels beside the
// request rather than on it (a field added to the IncomingMessage would stay
// with `socket.request.raw` for the connection's life).
let accepting: Accept | undefined

// Headers that the handshake itself owns; a hook's value would break the 101.
const handshakeHeaders = new Set([
  'connection', 'upgrade', 'content-length', 'content-type', 'transfer-encoding',
  'sec-websocket-accept', 'sec-websocket-protocol', 'sec-websocket-extensions'
])

/** Headers set by hooks with reply.header(), as lines for the 101. */
function hookHeaders (reply: FastifyReply): string[] {
  const lines: string[] = []
  const headers = reply.getHeaders()
  for (const name of Object.keys(headers)) {
    if (handshakeHeaders.has(name)) continue
    const value = headers[name]
    validateHeaderName(name)
    for (const item of Array.isArray(value) ? value : [String(value)]) {
      validateHeaderValue(name, item)
      lines.push(`${name}: ${item}`)
    }
  }
  return lines
}

function refuse (reply: FastifyReply, refusal: Refusal): undefined {
  if (refusal.headers !== undefined) reply.headers(refusal.headers)
  reply.code(refusal.statusCode).type('text/plain; charset=utf-8').send(refusal.body)
  return undefined
}

function methodsOf (routeOptions: RouteOptions): string[] {
  return Array.isArray(routeOptions.method) ? routeOptions.method : [routeOptions.method]
}

/** `onRoute`: a route with a `websocket` option gets the handshake as its handler. */
export function createRouteHook (state: PluginState) {
  return function onRoute (this: FastifyInstance, routeOptions: RouteOptions & { websocket?: unknown }): void {
    const input = routeOptions.websocket
    if (input === undefined || input === false) return
    markTaken(routeOptions)
    const methods = methodsOf(routeOptions)
    const handler = routeOptions.handler as unknown
    // (A broken handler fails app.ready() on its GET route; its twin need not throw too.)
    if (methods.every(m => m === 'HEAD') && (typeof handler !== 'function' || state.openHandlers.has(handler))) {
      // The HEAD twin Fastify adds for every GET route: it cannot upgrade, but the route's http may answer it.
      const http = (input as { http?: unknown } | null)?.http
      routeOptions.handler = function noUpgrade (request, reply) {
        if (typeof http === 'function' && request.headers.upgrade === undefined) return http.call(this, request, reply)
        return refuse(reply, refusals.upgrade)
      }
      return
    }
    const other = methods.includes('GET') ? methods.filter(m => m !== 'GET' && m !== 'HEAD') : methods
    if (other.length > 0) throw new FST_WS_NOT_GET(routeOptions.url, other.join(', '))
    if (typeof routeOptions.handler === 'function') state.openHandlers.add(routeOptions.handler)
    const route: WebSocketRoute = {
      url: routeOptions.url,
      instance: this,
      input,
      open: routeOptions.handler as unknown as Handler,
      compiled: undefined
    }
    state.routes.push(route)
    routeOptions.handler = createHandshake(state, route)
  }
}

/**
 * Compiles every websocket route's options and schemas, once, when the app is
 * ready. An error names the route and fails `app.ready()`.
 */
export function compileRoutes (state: PluginState): void {
  const ajvs = new Map<FastifyInstance, Ajv>()
  for (const route of state.routes) {
    const settings = resolveRouteOptions(state.options, route.input, route.url)
    const { options } = settings
    if (typeof route.open !== 'function') {
      throw new FST_WS_INVALID_OPTION(`Route "${route.url}"`, 'the route handler (open) must be a function')
    }
    const schemas = route.instance.getSchemas()
    const ajv = (): Ajv => {
      let ajv = ajvs.get(route.instance)
      if (ajv === undefined) {
        ajv = createAjv(schemas)
        ajvs.set(route.instance, ajv)
      }
      return ajv
    }
    const codec = compileCodec({
      url: route.url,
      inbound: settings.inbound,
      outbound: settings.outbound,
      validateOutbound: options.validateOutbound,
      schemas,
      ajv
    })
    let requests: RequestEngine | undefined
    const subscriptions = settings.subscriptions === undefined
      ? undefined
      : new Subscriptions(route.url, settings.subscriptions, state.topics, options.maxSubscriptions, route.instance)
    if (settings.requests !== undefined || settings.clientRequests !== undefined || settings.requestHandlers !== undefined || subscriptions !== undefined) {
      const methods = compileMethods({
        url: route.url,
        requests: settings.requests,
        handlers: settings.requestHandlers,
        clientRequests: settings.clientRequests,
        validateOutbound: options.validateOutbound,
        ajv,
        schemas
      })
      requests = new RequestEngine({
        methods: methods.server,
        clientMethods: methods.client,
        maxConcurrentRequests: options.maxConcurrentRequests,
        maxPendingBytes: options.maxPendingBytes ?? options.maxMessageSize,
        requestTimeout: options.requestTimeout,
        instance: route.instance,
        subscriptions
      })
    }
    const wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: options.maxMessageSize,
      perMessageDeflate: options.compression,
      // ws destroys the TCP link when the peer does not answer a close in time
      // (an option @types/ws does not list yet).
      ...{ closeTimeout: options.closeTimeout },
      handleProtocols: () => accepting?.protocol ?? false
    })
    wss.on('headers', (lines: string[]) => {
      for (const line of (accepting as Accept).headers) lines.push(line)
    })
    route.compiled = {
      options,
      codec,
      inbound: settings.inbound !== undefined,
      binary: settings.binary,
      open: route.open,
      handlers: settings.handlers,
      keepalive: state.keepalive.get(options.pingInterval, options.pingTimeout),
      compression: options.compression !== false,
      instance: route.instance,
      registry: state.registry,
      budget: state.budget,
      requests,
      wss,
      checkOrigin: compileOriginCheck(options.checkOrigin),
      subprotocols: options.subprotocols,
      selectSubprotocol: options.selectSubprotocol,
      connections: new ConnectionCount(options.maxConnections),
      http: settings.http,
      outbound: { url: route.url, codec }
    }
    state.maxCloseTimeout = Math.max(state.maxCloseTimeout, options.closeTimeout)
  }
}

function isThenable<T> (value: T | PromiseLike<T>): value is PromiseLike<T> {
  return typeof (value as PromiseLike<T> | null)?.then === 'function'
}

/**
 * Tornado's get(): the handshake checks in order, then the 101. It stays
 * synchronous unless checkOrigin or selectSubprotocol answer with a promise.
 */
function createHandshake (state: PluginState, route: WebSocketRoute) {
  return function websocketHandshake (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): unknown {
    const compiled = route.compiled as CompiledRoute
    const headers = request.raw.headers
    if (compiled.http !== undefined && headers.upgrade === undefined) return compiled.http.call(this, request, reply)
    const refusal = checkUpgrade(request.raw.method as string, headers)
    if (refusal !== undefined) return refuse(reply, refusal)
    const origin = requestOrigin(headers)
    if (origin === undefined) return checkHeaders(state, compiled, request, reply)
    const allowed = compiled.checkOrigin(origin, headers.host, request)
    if (isThenable(allowed)) {
      return allowed.then((ok) => ok ? checkHeaders(state, compiled, request, reply) : refuse(reply, refusals.origin))
    }
    return allowed ? checkHeaders(state, compiled, request, reply) : refuse(reply, refusals.origin)
  }
}

/** After the origin: version and key, then the subprotocol. */
function checkHeaders (state: PluginState, compiled: CompiledRoute, request: FastifyRequest, reply: FastifyReply): PromiseLike<void> | undefined {
  const headers = request.raw.headers
  const badHeaders = checkVersionAndKey(headers)
  if (badHeaders !== undefined) return refuse(reply, badHeaders)
  const offered = parseSubprotocols(headers['sec-websocket-protocol'])
  if (offered === null) return refuse(reply, refusals.protocol)
  if (compiled.selectSubprotocol !== undefined) {
    const selected = compiled.selectSubprotocol([...offered], request)
    if (isThenable(selected)) {
      return selected.then((protocol) => accept(state, compiled, request, reply, chosen(protocol, offered)))
    }
    return accept(state, compiled, request, reply, chosen(selected, offered))
  }
  const protocol = compiled.subprotocols === undefined ? undefined : preferredSubprotocol(compiled.subprotocols, offered)
  return accept(state, compiled, request, reply, protocol)
}

function chosen (selected: string | false | null | undefined, offered: readonly string[]): string | undefined {
  if (typeof selected !== 'string' || selected === '') return undefined
  if (!offered.includes(selected)) throw new FST_WS_SUBPROTOCOL_NOT_OFFERED(selected)
  return selected
}

/** Sends the 101 and hands the connection to a WebSocketConnection. */
function accept (state: PluginState, compiled: CompiledRoute, request: FastifyRequest, reply: FastifyReply, protocol: string | undefined): undefined {
  if (state.closing) {
    reply.code(503).header('connection', 'close').send({ error: 'Service Unavailable', message: 'Service Unavailable', statusCode: 503 })
    return undefined
  }
  const total = state.connections
  const onRoute = compiled.connections
  if (total.full || onRoute.full) {
    reply.code(503).header('retry-after', RETRY_AFTER_SECONDS).header('connection', 'close')
      .send({ error: 'Service Unavailable', message: 'Too many connections', statusCode: 503 })
    return undefined
  }
  const raw = request.raw
  const upgrade = pendingUpgrades.get(raw)
  if (upgrade === undefined) throw new FST_WS_NO_UPGRADE_SOCKET()
  pendingUpgrades.delete(raw)
  const headers = hookHeaders(reply)
  reply.hijack()
  upgrade.response.detachSocket(upgrade.socket as never)
  accepting = { protocol, headers }
  try {
    compiled.wss.handleUpgrade(raw, upgrade.socket, upgrade.head, (ws) => opened(state, compiled, request, upgrade.socket, ws))
  } finally {
    accepting = undefined
  }
  return undefined
}

/** ws has written the 101: the connection starts. */
function opened (state: PluginState, compiled: CompiledRoute, request: FastifyRequest, socket: Duplex, ws: WebSocket): void {
  // ws has its own error listener on the socket now.
  socket.removeListener('error', destroyOnError)
  const total = state.connections
  const onRoute = compiled.connections
  // This runs within handleUpgrade: a handshake ws aborts is never counted.
  if (total.max !== Infinity || onRoute.max !== Infinity) {
    total.count++
    onRoute.count++
    ws.once('close', () => {
      total.count--
      onRoute.count--
    })
  }
  routeOutbound.set(ws, compiled.outbound)
  new WebSocketConnection(ws, socket, request, compiled).start()
}
