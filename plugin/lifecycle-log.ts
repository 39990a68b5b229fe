import type { FastifyRequest } from 'fastify'
import { CloseCode } from './close-codes'

/** Who started the end of a connection: the server's close frame, the peer's, or neither (the link died). */
export type ClosedBy = 'server' | 'client' | 'network'

/** What the `close` hook gets as its 4th argument, the `websocket closed` log line and the close channel carry. */
export interface CloseDetails {
  closedBy: ClosedBy
  /** The code of the side that closed first (the peer's 1006 when the link died). */
  code: number
  reason: string
  /** What the server sent, if it sent a close frame. */
  serverCode: number | undefined
  serverReason: string | undefined
  /** What the peer sent (1005: a close frame without a code, 1006: none). */
  peerCode: number
  peerReason: string
  durationMs: number
  messagesIn: number
  messagesOut: number
  /** Bytes on the wire after the handshake, frames included. */
  bytesIn: number
  bytesOut: number
}

/** Bytes a socket has read and written so far; 0 for streams that do not count. */
export interface WireCount { bytesRead?: number, bytesWritten?: number }

export interface Traffic {
  openedAt: number
  messagesIn: number
  messagesOut: number
  bytesRead: number
  bytesWritten: number
}

export function closeDetails (
  peerCode: number, peerReason: string, serverCode: number | undefined, serverReason: string | undefined,
  traffic: Traffic, wire: WireCount
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
    durationMs: Date.now() - traffic.openedAt,
    messagesIn: traffic.messagesIn,
    messagesOut: traffic.messagesOut,
    bytesIn: (wire.bytesRead ?? 0) - traffic.bytesRead,
    bytesOut: (wire.bytesWritten ?? 0) - traffic.bytesWritten
  }
}

/** Whether the request's lifecycle is logged: Fastify's `disableRequestLogging` (a boolean or a function of the request). */
export function logsLifecycle (request: FastifyRequest): boolean {
  const disabled = (request.server.initialConfig as { disableRequestLogging?: boolean | ((req: unknown) => boolean) }).disableRequestLogging
  return typeof disabled === 'function' ? !disabled(request) : disabled !== true
}
