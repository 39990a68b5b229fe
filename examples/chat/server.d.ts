import type { FastifyInstance } from 'fastify'
import type { TSchema } from '@sinclair/typebox'

export interface ChatServerOptions {
  /** lifetime of a login token in ms (default 1 hour) */
  tokenTtlMs?: number
  /** key that signs tokens (default: with `redisUrl`, one random key kept in Redis for every node; else the key in `secretFile`; else random, so tokens die with the process) */
  secret?: string
  /** a file that keeps the signing key across restarts, created with a random key when missing (`npm start` uses `examples/chat/.chat-secret`) */
  secretFile?: string
  /** Redis for several nodes, e.g. `redis://127.0.0.1:6379` (default: none, rooms in memory) */
  redisUrl?: string
  /** how long the members of a node that died stay listed, in ms (default 15 s) */
  presenceTtlMs?: number
  /** how often each node re-sends the members of its rooms to its sockets, in ms (default 5 s) */
  presenceRefreshMs?: number
  /** how often the page sends a heartbeat (default 10 s) */
  heartbeatIntervalMs?: number
  /** how long the page waits for its answer before reconnecting (default 5 s) */
  heartbeatTimeoutMs?: number
  /** names a room holds at most: `join` answers `room_full` beyond it, and the upgrade 409 (default 100) */
  roomCapacity?: number
  /** Fastify's `logger` option (default off) */
  logger?: boolean | object
}

export declare function buildChatServer (options?: ChatServerOptions): Promise<FastifyInstance>
export declare const ClientMessage: TSchema
export declare const ServerMessage: TSchema
/** A message in a room; its `id` is the offset the `rooms` topic gave it. */
export declare const Said: TSchema
export declare const TOKEN_EXPIRED: 4001
export declare const chat: {
  inbound: TSchema
  outbound: TSchema
  /** `history` (older messages of a room) and `join` (may the caller go there; app error `room_full`) */
  requests: {
    history: { params: TSchema, result: TSchema }
    join: { params: TSchema, result: TSchema, errors: { room_full: TSchema } }
  }
}
