import type { FastifyInstance, FastifyPluginCallback } from 'fastify'
import fp from 'fastify-plugin'
import { CloseCode, CloseReason } from './close-codes'
import type { Broker } from './broker'
import * as errors from './errors'
import { FST_WS_INVALID_OPTION, WebSocketClosedError } from './errors'
import { MemoryBroker } from './memory-broker'
import { KeepaliveClocks } from './keepalive'
import { injectWS, type InjectWSOptions } from './inject'
import { resolveMaxBufferedTotal, resolvePluginOptions } from './options'
import { SendBudget } from './budget'
import { ClientRegistry } from './registry'
import { compileRoutes, ConnectionCount, createRouteHook, type PluginState } from './route'
import { TopicNode, type TopicOptions } from './topics'
import { createUpgradeListener } from './upgrade'
import { checkInternals } from './internals'
import { watchPluginOrder } from './plugin-order'

watchPluginOrder()
import { RemoteError, RpcCode } from './requests'

const fastifyTypedWebsocket: FastifyPluginCallback<Record<string, unknown>> = function (fastify, opts, done) {
  // Fastify passes its own register options (prefix, logLevel...) along with ours.
  const { prefix: _prefix, logLevel: _logLevel, logSerializers: _logSerializers, broker = new MemoryBroker(), maxBufferedTotal, ...ours } = opts
  let options
  let budget
  try {
    budget = new SendBudget(resolveMaxBufferedTotal(maxBufferedTotal))
    options = resolvePluginOptions(ours)
    checkBroker(broker)
  } catch (err) {
    return done(err as Error)
  }
  // Which private parts of ws and Fastify the fast paths may use (each has a public fallback).
  checkInternals(fastify.log)
  const topics = new TopicNode(broker as Broker)
  const registry = new ClientRegistry()
  const state: PluginState = {
    options,
    registry,
    closing: false,
    routes: [],
    openHandlers: new WeakSet(),
    maxCloseTimeout: 0,
    keepalive: new KeepaliveClocks(registry.open),
    connections: new ConnectionCount(options.maxConnections),
    budget,
    topics
  }
  state.maxCloseTimeout = state.options.closeTimeout

  // Read by fastify-typed-websocket/asyncapi to describe what each route does.
  fastify.decorate(Symbol.for('fastify-typed-websocket.options'), state.options)
  fastify.decorate('websocketClients', { getter: () => state.registry.view })
  fastify.decorate('injectWS', async function (this: FastifyInstance, path: string, options?: InjectWSOptions) {
    await this.ready()
    return injectWS(this.server, path, options)
  })

  // The public types describe a Topic's sockets as TypedWebSocket; at run time they are connections.
  fastify.decorate('websocketTopic', function (this: FastifyInstance, name: string, options: TopicOptions) {
    return topics.declare(name, options, this.getSchemas())
  } as never)
  fastify.decorate(Symbol.for('fastify-typed-websocket.topics'), { getter: () => topics.descriptions })

  fastify.addHook('onRoute', createRouteHook(state))
  fastify.addHook('onReady', async function () {
    compileRoutes(state)
    await topics.start()
  })

  const onUpgrade = createUpgradeListener(fastify.routing)
  fastify.server.on('upgrade', onUpgrade)

  fastify.addHook('preClose', function (closed) {
    state.closing = true
    state.registry.shutdown(state.maxCloseTimeout).then(() => {
      fastify.server.removeListener('upgrade', onUpgrade)
      closed()
    })
  })
  // After every socket is gone: the node leaves its keys, then the broker closes.
  fastify.addHook('onClose', () => topics.close())
  done()
}

const brokerMethods = ['start', 'close', 'publish', 'subscribe', 'unsubscribe', 'history', 'join', 'leave', 'presence']

function checkBroker (broker: unknown): void {
  const missing = brokerMethods.filter(m => typeof (broker as Record<string, unknown> | null)?.[m] !== 'function')
  if (missing.length > 0) throw new FST_WS_INVALID_OPTION('fastify-typed-websocket options', `broker must implement ${missing.join(', ')}`)
}

fp(fastifyTypedWebsocket, { name: 'fastify-typed-websocket', fastify: '5.x' })

// `require`, `import` default and `import { fastifyTypedWebsocket }` all get the plugin.
module.exports = fastifyTypedWebsocket
// On the function itself: the `__esModule` flag tsc sets is on the replaced
// exports object, so bundlers see a plain CommonJS module whose default is the plugin.
Object.assign(fastifyTypedWebsocket, { default: fastifyTypedWebsocket })
module.exports.fastifyTypedWebsocket = fastifyTypedWebsocket
module.exports.WebSocketClosedError = WebSocketClosedError
module.exports.CloseCode = CloseCode
module.exports.RemoteError = RemoteError
module.exports.RpcCode = RpcCode
module.exports.CloseReason = CloseReason
// Every error class, for `instanceof` (docs/reference.md, Errors).
module.exports.FST_WS_NOT_GET = errors.FST_WS_NOT_GET
module.exports.FST_WS_INVALID_OPTION = errors.FST_WS_INVALID_OPTION
module.exports.FST_WS_PLUGIN_NOT_REGISTERED = errors.FST_WS_PLUGIN_NOT_REGISTERED
module.exports.FST_WS_INVALID_SCHEMA = errors.FST_WS_INVALID_SCHEMA
module.exports.FST_WS_INVALID_MESSAGE = errors.FST_WS_INVALID_MESSAGE
module.exports.FST_WS_INVALID_OUTBOUND = errors.FST_WS_INVALID_OUTBOUND
module.exports.FST_WS_SUBPROTOCOL_NOT_OFFERED = errors.FST_WS_SUBPROTOCOL_NOT_OFFERED
module.exports.FST_WS_NO_UPGRADE_SOCKET = errors.FST_WS_NO_UPGRADE_SOCKET
module.exports.FST_WS_UPGRADE_REFUSED = errors.FST_WS_UPGRADE_REFUSED
module.exports.FST_WS_DUPLICATE_TOPIC = errors.FST_WS_DUPLICATE_TOPIC
module.exports.FST_WS_TOPIC_NOT_READY = errors.FST_WS_TOPIC_NOT_READY
module.exports.FST_WS_OUTBOUND_CANNOT_HOLD = errors.FST_WS_OUTBOUND_CANNOT_HOLD
module.exports.FST_WS_BROKER_UNAVAILABLE = errors.FST_WS_BROKER_UNAVAILABLE
module.exports.FST_WS_ASYNCAPI_SCHEMA = errors.FST_WS_ASYNCAPI_SCHEMA
module.exports.FST_WS_INVALID_PRESENCE = errors.FST_WS_INVALID_PRESENCE
module.exports.FST_WS_UNKNOWN_METHOD = errors.FST_WS_UNKNOWN_METHOD
module.exports.FST_WS_REQUEST_TIMEOUT = errors.FST_WS_REQUEST_TIMEOUT
module.exports.FST_WS_REQUEST_ABORTED = errors.FST_WS_REQUEST_ABORTED
module.exports.FST_WS_INVALID_RESULT = errors.FST_WS_INVALID_RESULT
