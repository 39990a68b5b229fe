import type { IncomingHttpHeaders } from 'node:http'
import type { OriginOption } from './options'

/** An HTTP answer that refuses the upgrade. */
export interface Refusal {
  statusCode: number
  body: string
  headers?: Record<string, string>
}

export const refusals = Object.freeze({
  upgrade: { statusCode: 400, body: 'Can "Upgrade" only to "WebSocket".' },
  connection: { statusCode: 400, body: '"Connection" must be "Upgrade".' },
  origin: { statusCode: 403, body: 'Cross origin websockets not allowed' },
  version: {
    statusCode: 426,
    body: 'Sec-WebSocket-Version must be 13 or 8.',
    headers: { 'sec-websocket-version': '13, 8' }
  },
  key: { statusCode: 400, body: 'Missing or invalid Sec-WebSocket-Key header.' },
  protocol: { statusCode: 400, body: 'Invalid Sec-WebSocket-Protocol header.' }
} satisfies Record<string, Refusal>)

function hasToken (list: string | undefined, token: string): boolean {
  if (list === undefined) return false
  for (const item of list.split(',')) {
    if (item.trim().toLowerCase() === token) return true
  }
  return false
}

/**
 * Tornado's first two checks: `Upgrade: websocket`, then `Connection: upgrade`
 * (a comma-separated list, any case).
 */
export function checkUpgrade (method: string, headers: IncomingHttpHeaders): Refusal | undefined {
  if (method !== 'GET' || headers.upgrade?.toLowerCase() !== 'websocket') return refusals.upgrade
  if (!hasToken(headers.connection, 'upgrade')) return refusals.connection
  return undefined
}

// RFC 6455 section 4.2.1: the key is 16 random bytes, base64-encoded.
const keyPattern = /^[+/0-9A-Za-z]{22}==$/

/** Version (13 or 8, else 426), then key (else 400): Tornado's order. */
export function checkVersionAndKey (headers: IncomingHttpHeaders): Refusal | undefined {
  const version = headers['sec-websocket-version']
  if (version !== '13' && version !== '8') return refusals.version
  const key = headers['sec-websocket-key']
  if (key === undefined || !keyPattern.test(key)) return refusals.key
  return undefined
}

/** The origin a browser sent: `Origin`, or `Sec-WebSocket-Origin` from version 8 clients. */
export function requestOrigin (headers: IncomingHttpHeaders): string | undefined {
  const origin = headers.origin ?? headers['sec-websocket-origin']
  return Array.isArray(origin) ? origin[0] : origin
}

/**
 * Tornado's same-host rule, made correct: the origin's `host[:port]` must equal
 * the Host header, case-insensitively. `null` and scheme-less origins fail.
 */
export function isSameHost (origin: string, host: string | undefined): boolean {
  if (host === undefined) return false
  const schemeEnd = origin.indexOf('://')
  if (schemeEnd <= 0) return false
  let authority = origin.slice(schemeEnd + 3)
  const pathStart = authority.indexOf('/')
  if (pathStart !== -1) authority = authority.slice(0, pathStart)
  if (authority === '' || authority.includes('@')) return false
  const scheme = origin.slice(0, schemeEnd).toLowerCase()
  return withoutDefaultPort(authority, scheme) === withoutDefaultPort(host, scheme)
}

const defaultPorts: Record<string, string> = { http: '80', ws: '80', https: '443', wss: '443' }

function withoutDefaultPort (authority: string, scheme: string): string {
  const lower = authority.toLowerCase()
  const port = defaultPorts[scheme]
  return port !== undefined && lower.endsWith(':' + port) ? lower.slice(0, -port.length - 1) : lower
}

export type OriginVerdict = (origin: string, host: string | undefined, request: unknown) => boolean | Promise<boolean>

/** Turns the `checkOrigin` option into one function. */
export function compileOriginCheck (option: OriginOption | undefined): OriginVerdict {
  if (option === undefined) return (origin, host) => isSameHost(origin, host)
  if (option === true) return () => true
  if (typeof option === 'function') return (origin, _host, request) => option(origin, request)
  const exact = new Set<string>()
  const patterns: RegExp[] = []
  for (const allowed of option) {
    if (typeof allowed === 'string') exact.add(allowed.toLowerCase())
    else patterns.push(allowed)
  }
  // search() ignores lastIndex, so a RegExp with the g or y flag answers the same every time.
  return (origin) => exact.has(origin.toLowerCase()) || patterns.some(p => origin.search(p) !== -1)
}

// RFC 7230 token characters.
const tokenPattern = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * The subprotocols the client offered, in its order, or `null` when the header
 * is malformed (empty items, non-token characters, duplicates).
 */
const noSubprotocols: readonly string[] = Object.freeze([])

export function parseSubprotocols (header: string | undefined): readonly string[] | null {
  if (header === undefined) return noSubprotocols
  const offered: string[] = []
  for (const item of header.split(',')) {
    const name = item.trim()
    if (!tokenPattern.test(name) || offered.includes(name)) return null
    offered.push(name)
  }
  return offered
}

/** The first of the server's preferred subprotocols that the client offered. */
export function preferredSubprotocol (preference: readonly string[], offered: readonly string[]): string | undefined {
  return preference.find(p => offered.includes(p))
}
