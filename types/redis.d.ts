import type { Redis } from 'ioredis'
import type { FastifyErrorConstructor } from '@fastify/error'
import type { Broker } from './broker'

export type { Broker, BrokerEntry, BrokerMessage, BrokerSink, BrokerTopic } from './broker'

export interface RedisBrokerOptions {
  /** An ioredis client, e.g. `app.redis` from `@fastify/redis`. The broker duplicates it for its own connections. */
  client: Redis
  /** Prepended to every Redis key and channel the broker uses. Default `'fastify-typed-websocket:'`. */
  prefix?: string | undefined
  /** Milliseconds a call waits for Redis before it rejects with `FST_WS_BROKER_UNAVAILABLE`. Default 5000. */
  brokerTimeout?: number | undefined
}

/**
 * A broker on Redis: offsets, history and presence live in Redis, so every node sees one order per key.
 * @example await app.register(fastifyTypedWebsocket, { broker: redisBroker({ client: app.redis }) })
 */
export declare function redisBroker (options: RedisBrokerOptions): Broker

/** A broker call that Redis did not answer within `brokerTimeout` rejects with it (also exported from the package's main entry). */
export declare const FST_WS_BROKER_UNAVAILABLE: FastifyErrorConstructor<{ code: 'FST_WS_BROKER_UNAVAILABLE', statusCode: 503 }, [problem: string]>
