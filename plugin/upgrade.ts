import { type IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'

/** The raw connection of a request that arrived through the server's 'upgrade' event. */
export interface PendingUpgrade {
  socket: Duplex
  head: Buffer
  response: ServerResponse
}

/**
 * The raw connections of requests on their way to a 101, beside the request
 * rather than on it: every field added to an IncomingMessage would stay with
 * `socket.request.raw` for the connection's life.
 */
export const pendingUpgrades = new WeakMap<IncomingMessage, PendingUpgrade>()

const MISSING_HOST = 'Missing Host header.'

/** The socket's error listener until ws, after the 101, puts its own. */
export function destroyOnError (this: Duplex): void {
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
  return function onUpgrade (req: IncomingMessage, socket: Duplex, head: Buffer): void {
    shareHeaders(req.rawHeaders)
    if (req.httpVersion === HTTP_11) req.httpVersion = HTTP_11
    // An upgrade request has no trailers: one empty list for all of them.
    if (req.rawTrailers.length === 0) req.rawTrailers = NO_TRAILERS
    // A path without a query (one with a query may carry a token) is a route's.
    const url = req.url as string
    if (!url.includes('?')) req.url = shareValue(url)
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
    pendingUpgrades.set(req, { socket, head, response })
    routing(req, response)
  }
}

// Header names, and the values of these headers, are the same strings on most
// connections: one copy of each is shared (up to a bound) rather than one per
// connection, kept for its life by `socket.request.raw.rawHeaders` and `headers`.
// Values that identify a client or a session (keys, cookies, tokens) are not.
const sharedValues = new Set([
  'host', 'connection', 'upgrade', 'sec-websocket-version', 'sec-websocket-extensions',
  'sec-websocket-protocol', 'origin', 'user-agent', 'accept-encoding', 'accept-language',
  'cache-control', 'pragma'
])
const HTTP_11 = '1.1'
const NO_TRAILERS: string[] = Object.freeze([]) as unknown as string[]
const MAX_SHARED = 1024
const MAX_SHARED_LENGTH = 256
// Shared names, each with whether its values are shared too.
const names = new Map<string, { text: string, values: boolean }>()
const values = new Map<string, string>()

/** Replaces the header strings of a request with shared copies (equal strings: nothing visible changes). */
function shareHeaders (raw: string[]): void {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]
    let known = names.get(name)
    if (known !== undefined) {
      raw[i] = known.text
    } else {
      known = { text: name, values: sharedValues.has(name.toLowerCase()) }
      if (names.size < MAX_SHARED && name.length <= MAX_SHARED_LENGTH) names.set(name, known)
    }
    if (known.values) raw[i + 1] = shareValue(raw[i + 1])
  }
}

function shareValue (value: string): string {
  const same = values.get(value)
  if (same !== undefined) return same
  if (values.size < MAX_SHARED && value.length <= MAX_SHARED_LENGTH) values.set(value, value)
  return value
}
