import type { FastifyRequest } from 'fastify'
import { CloseCode } from './close-codes'
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

interface LogController { isLogDisabled (request: unknown): boolean }

const controllers = new WeakMap<object, LogController | null>()

// Fastify's log controller (5.8+) decides whether request lines are logged; it
// is not exported, so it is found by its symbol's name, once per instance.
function logControllerOf (instance: object): LogController | null {
  let controller = controllers.get(instance)
  if (controller !== undefined) return controller
  controller = null
  for (let o: object | null = instance; o !== null && controller === null; o = Object.getPrototypeOf(o) as object | null) {
    for (const key of Object.getOwnPropertySymbols(o)) {
      if (key.description === 'fastify.logController') controller = (o as Record<symbol, LogController>)[key]
    }
  }
  controllers.set(instance, controller)
  return controller
}

/**
 * Whether the request's lifecycle is logged, as Fastify decides for its own
 * request lines: `disableRequestLogging` (a boolean or a function of the
 * request) or a `logController`'s `isLogDisabled()`.
 */
export function logsLifecycle (request: FastifyRequest): boolean {
  const controller = logControllerOf(request.server)
  if (controller !== null) return !controller.isLogDisabled(request)
  // Fastify before the log controller.
  const disabled = (request.server.initialConfig as { disableRequestLogging?: boolean | ((req: unknown) => boolean) }).disableRequestLogging
  return typeof disabled === 'function' ? !disabled(request) : disabled !== true
}
