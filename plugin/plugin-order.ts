import { subscribe } from 'node:diagnostics_channel'
import type { FastifyInstance, RouteOptions } from 'fastify'
import { FST_WS_PLUGIN_NOT_REGISTERED } from './errors'

// On the route options object, so that every copy of this module loaded in a process agrees.
const kTaken = Symbol.for('fastify-typed-websocket.route-taken')

type WebSocketRouteOptions = RouteOptions & { websocket?: unknown, [kTaken]?: true }

/** Marks a route whose `websocket` option the plugin has turned into a handshake. */
export function markTaken (routeOptions: object): void {
  (routeOptions as WebSocketRouteOptions)[kTaken] = true
}

function carriesWebsocket (routeOptions: WebSocketRouteOptions): boolean {
  return routeOptions.websocket !== undefined && routeOptions.websocket !== false
}

/**
 * A route declared before the plugin is loaded (registered after the route, or
 * without `await`) never reaches the plugin's onRoute hook and would be served as
 * plain HTTP. Every Fastify instance created after this module is loaded remembers
 * its websocket routes, and app.ready() fails on the first one the plugin did not take.
 */
function watch ({ fastify }: { fastify: FastifyInstance }): void {
  const routes: Array<{ options: WebSocketRouteOptions, instance: FastifyInstance }> = []
  fastify.addHook('onRoute', function (this: FastifyInstance, routeOptions: WebSocketRouteOptions) {
    if (carriesWebsocket(routeOptions)) routes.push({ options: routeOptions, instance: this })
  })
  fastify.addHook('onReady', async function () {
    // @fastify/websocket reads the same route option: its routes are not ours to claim.
    const missed = routes.find(r => r.options[kTaken] !== true && !r.instance.hasDecorator('websocketServer'))?.options
    if (missed !== undefined) throw new FST_WS_PLUGIN_NOT_REGISTERED(`${String(missed.method)} ${missed.url}`)
  })
}

/** Watches the Fastify instances created from now on; called once, when the plugin's module loads. */
export function watchPluginOrder (): void {
  subscribe('fastify.initialization', watch as (message: unknown) => void)
}
