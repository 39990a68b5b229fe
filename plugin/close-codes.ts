import type { CloseCode as PublicCloseCode, CloseReason as PublicCloseReason } from '../types'

/**
 * The close codes of RFC 6455 section 7.4.1, by name.
 * @example socket.close(CloseCode.PolicyViolation, 'quota exceeded')
 */
export const CloseCode = Object.freeze({
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  NoStatus: 1005,
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014
} as const) satisfies typeof PublicCloseCode

/**
 * The reasons this package closes a connection with, by name: the server's
 * (with the code each goes with) and the client's own.
 * @example if (event.reason === CloseReason.SendBufferFull) slowDown()
 */
export const CloseReason = Object.freeze({
  /** 1000: no pong within the keepalive timeout of a ping. */
  PingTimeout: 'ping timed out',
  /** 1001: the server is closing (`app.close()`). */
  ShuttingDown: 'server shutting down',
  /** 1003: a data message to a route without a message hook or requests. */
  NoMessages: 'this endpoint accepts no messages',
  /** 1003: a binary message to a route with `inbound` and without `binary: true`. */
  NoBinary: 'binary messages are not accepted',
  /** 1008: the peer does not read what it is sent (maxBufferedAmount, maxBufferedTotal). */
  SendBufferFull: 'send buffer full',
  /** 1008: past the route's rateLimit with action 'close'. */
  RateLimited: 'rate limit exceeded',
  /** 1009: a message larger than maxMessageSize. */
  MessageTooBig: 'message too big',
  /** 1011: a hook threw or rejected. */
  InternalError: 'internal error',
  /** 1012: a subscriber missed topic messages that history no longer holds. */
  MissedMessages: 'missed messages',
  /** The client's own (1006): no answer to its heartbeat in time. */
  HeartbeatTimeout: 'heartbeat timed out'
} as const) satisfies typeof PublicCloseReason

// A close frame's payload is at most 125 bytes, two of which hold the code.
export const MAX_REASON_BYTES = 123

/** Cuts `reason` to at most 123 UTF-8 bytes without splitting a character. */
export function truncateReason (reason: string): string {
  // Fast path: every UTF-16 unit takes at most 3 UTF-8 bytes.
  if (reason.length <= MAX_REASON_BYTES / 3) return reason
  const bytes = Buffer.from(reason, 'utf8')
  if (bytes.length <= MAX_REASON_BYTES) return reason
  let end = MAX_REASON_BYTES
  // Step back over continuation bytes (10xxxxxx) to the start of a character.
  while (((bytes[end] as number) & 0xc0) === 0x80) end--
  return bytes.toString('utf8', 0, end)
}
