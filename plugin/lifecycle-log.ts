import type { FastifyRequest } from 'fastify'
import { CloseCode } from './close-codes'
import { requestLogGateOf } from './internals'
import type { ClosedBy, CloseDetails } from '../types'

export type { ClosedBy, CloseDetails } from '../types'

/** Bytes a socket has read and written so far; 0 for streams that do not count. */
export interface WireCount { bytesRead?: number, bytesWritten?: number }

/** What a connection counted while it was open. */
export interface Traffic {
  durationMs: number
  messagesIn: number
  messagesOut: number
  bytesIn: number
  bytesOut: number
}

export function closeDetails (
  peerCode: number, peerReason: string, serverCode: number | undefined, serverReason: string | undefined, traffic: Traffic
): CloseDetails {
  const closedBy: ClosedBy = serverCode !== undefined ? 'server' : peerCode === CloseCode.Abnormal ? 'network' : 'client'
  return {
    closedBy,
    code: serverCode ?? peerCode,
    reason: serverReason ?? peerReason,
    serverCode,
    serverReason,
    peerCode,
    peerReason,
    durationMs: traffic.durationMs,
    messagesIn: traffic.messagesIn,
    messagesOut: traffic.messagesOut,
    bytesIn: traffic.bytesIn,
    bytesOut: traffic.bytesOut
  }
}

/**
 * Whether the request's lifecycle is logged, as Fastify decides for its own
 * request lines: `disableRequestLogging` (a boolean or a function of the
 * request) or the `isLogDisabled()` of Fastify's log controller (5.8+).
 */
export function logsLifecycle (request: FastifyRequest): boolean {
  const controller = requestLogGateOf(request.server)
  if (controller !== null) return !controller.isLogDisabled(request)
  // Fastify before the log controller.
  const disabled = (request.server.initialConfig as { disableRequestLogging?: boolean | ((req: unknown) => boolean) }).disableRequestLogging
  return typeof disabled === 'function' ? !disabled(request) : disabled !== true
}
