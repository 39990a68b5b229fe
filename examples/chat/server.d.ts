import type { FastifyInstance } from 'fastify'
import type { TSchema } from '@sinclair/typebox'

export interface ChatServerOptions {
  /** lifetime of a login token in ms (default 1 hour) */
  tokenTtlMs?: number
  /** key that signs tokens (default: random, so tokens die with the process) */
  secret?: string
  /** how often the page sends a heartbeat (default 10 s) */
  heartbeatIntervalMs?: number
  /** how long the page waits for its answer before reconnecting (default 5 s) */
  heartbeatTimeoutMs?: number
  /** Fastify's `logger` option (default off) */
  logger?: boolean | object
}

export declare function buildChatServer (options?: ChatServerOptions): Promise<FastifyInstance>
export declare const ClientMessage: TSchema
export declare const ServerMessage: TSchema
export declare const TOKEN_EXPIRED: 4001
export declare const chat: { inbound: TSchema, outbound: TSchema }
