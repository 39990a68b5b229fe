import { type IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'

export const kUpgrade = Symbol('fastify-typed-websocket.upgrade')

/** The raw connection of a request that arrived through the server's 'upgrade' event. */
export interface PendingUpgrade {
  socket: Duplex
  head: Buffer
  response: ServerResponse
}

export type UpgradeRequest = IncomingMessage & { [kUpgrade]?: PendingUpgrade }

const MISSING_HOST = 'Missing Host header.'

function destroyOnError (this: Duplex): void {
  this.destroy()
}

function endConnection (this: ServerResponse): void {
  // Like Node's own server after a `Connection: close` response: flush, then close.
  const socket = this.socket as Partial<Socket> & Duplex
  if (typeof socket.destroySoon === 'function') socket.destroySoon()
  else socket.end()
}

/**
 * Dispatches every upgrade request through Fastify's router, so that all hooks
 * and schemas run before the 101. A request that is answered with plain HTTP
 * (a refusal, a 404, a hook's reply) gets that answer, then the connection closes.
 */
export function createUpgradeListener (routing: (req: IncomingMessage, res: ServerResponse) => void) {
  return function onUpgrade (req: UpgradeRequest, socket: Duplex, head: Buffer): void {
    // Node removes its own error listener before emitting 'upgrade'.
    socket.on('error', destroyOnError)
    const response = new ServerResponse(req)
    response.shouldKeepAlive = false
    response.assignSocket(socket as Socket)
    response.once('finish', endConnection)
    // RFC 6455 4.1 and RFC 9112 3.2: no Host, no upgrade. Node answers an
    // ordinary request without Host with 400 before routing it; so does this.
    if (req.headers.host === undefined || req.headers.host === '') {
      response.writeHead(400, {
        'content-type': 'text/plain; charset=utf-8',
        'content-length': MISSING_HOST.length,
        connection: 'close'
      })
      response.end(MISSING_HOST)
      return
    }
    req[kUpgrade] = { socket, head, response }
    routing(req, response)
  }
}
