/*
 * Every option's default, in one table: the code reads it, the tests read it,
 * and test/defaults.test.ts checks the option table of docs/reference.md against it.
 * Its keys are those of the public WebSocketOptions (types/index.d.ts): an
 * option added there and not here does not compile.
 */
import type { FastifyTypedWebsocketOptions, TopicOptions, WebSocketOptions } from '../types'
import type { RedisBrokerOptions } from '../types/redis'

const MiB = 1024 * 1024

// The options that have a value by default; the others are off (undefined) unless given.
type Valued = 'maxMessageSize' | 'pingInterval' | 'pingTimeout' | 'closeTimeout' | 'compression' | 'maxBufferedAmount' |
  'maxPendingMessages' | 'validateOutbound' | 'heartbeat' | 'maxConcurrentRequests' | 'maxSubscriptions'

/**
 * The options of a connection once resolved (the plugin's merged with a
 * route's): every key of the public WebSocketOptions, present.
 */
export type ConnectionOptions = {
  [K in OptionName]: K extends Valued ? Exclude<WebSocketOptions<unknown>[K], undefined> : WebSocketOptions<unknown>[K]
}
// (A mapped type over this union, not over `keyof`, keeps `undefined` in the values.)
type OptionName = keyof WebSocketOptions<unknown>

/** The plugin's and each route's options. */
export const connectionDefaults: Readonly<ConnectionOptions> = Object.freeze({
  maxMessageSize: 10 * MiB,
  pingInterval: 30_000,
  // (follows pingInterval unless given)
  pingTimeout: 30_000,
  closeTimeout: 5000,
  checkOrigin: undefined, // the same-host rule
  compression: false,
  maxBufferedAmount: 16 * MiB,
  maxPendingMessages: 1024,
  maxPendingBytes: undefined, // = maxMessageSize
  validateOutbound: true,
  heartbeat: false,
  subprotocols: undefined,
  selectSubprotocol: undefined,
  maxConnections: undefined,
  rateLimit: undefined,
  maxConcurrentRequests: 16,
  maxSubscriptions: 100,
  requestTimeout: undefined
} satisfies ConnectionOptions)

/** The plugin's own options, besides those of every route. */
export const pluginDefaults = Object.freeze({
  maxBufferedTotal: 512 * MiB
} satisfies Required<Pick<FastifyTypedWebsocketOptions, 'maxBufferedTotal'>>)

/** `app.websocketTopic(name, options)`. */
export const topicDefaults = Object.freeze({
  history: 0,
  historyTtl: 600_000,
  presenceTtl: 30_000
} satisfies Required<Pick<TopicOptions, 'history' | 'historyTtl' | 'presenceTtl'>>)

/** `redisBroker(options)`. */
export const redisDefaults = Object.freeze({
  prefix: 'fastify-typed-websocket:',
  brokerTimeout: 5000
} satisfies Required<Pick<RedisBrokerOptions, 'prefix' | 'brokerTimeout'>>)
