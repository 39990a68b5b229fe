import type { IncomingMessage } from 'node:http'
import { Writable } from 'node:stream'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import WebSocket from 'ws'
import { Agent, WebSocket as WhatwgWebSocket } from 'undici'
import type { FastifyTypedWebsocketOptions } from 'fastify-typed-websocket'
import typedWebsocket from './plugin'

interface Teardown { teardown (fn: () => unknown): void }

export interface TestServer {
  app: FastifyInstance
  port: number
  /** ws://127.0.0.1:port + path */
  url (path: string): string
  /** What the app logged, one parsed JSON object per line. */
  logs: Array<Record<string, unknown>>
}

export interface StartOptions {
  plugin?: FastifyTypedWebsocketOptions
  fastify?: FastifyServerOptions
  /** Do not listen: for app.injectWS() and app.ready() tests. */
  listen?: boolean
}

/** A Fastify app with the plugin, its routes added by `routes`, listening on 127.0.0.1. Closed at teardown. */
export async function startServer (
  t: Teardown,
  routes: (app: FastifyInstance) => void | Promise<void>,
  options: StartOptions = {}
): Promise<TestServer> {
  const logs: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logs.push(JSON.parse(line))
      callback()
    }
  })
  const app = Fastify({ logger: { level: 'debug', stream }, ...options.fastify })
  await app.register(typedWebsocket, options.plugin ?? {})
  await routes(app)
  t.teardown(() => app.close())
  let port = 0
  if (options.listen === false) {
    await app.ready()
  } else {
    await app.listen({ host: '127.0.0.1', port: 0 })
    port = (app.server.address() as { port: number }).port
  }
  return { app, port, url: (path) => `ws://127.0.0.1:${port}${path}`, logs }
}

export interface Refused extends Error {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

export interface ConnectOptions extends WebSocket.ClientOptions {
  protocols?: string | string[]
  /** Sees the server's 101 response (its status and headers) before 'open'. */
  onUpgrade?: (response: IncomingMessage) => void
}

/** Opens a `ws` client; rejects with the HTTP status, headers and body when the upgrade is refused. */
export function connect (url: string, options: ConnectOptions = {}): Promise<WebSocket> {
  const { protocols, onUpgrade, ...clientOptions } = options
  const ws = new WebSocket(url, protocols, clientOptions)
  if (onUpgrade !== undefined) ws.once('upgrade', onUpgrade)
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws))
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const err = new Error(`refused with ${String(res.statusCode)}`) as Refused
        err.statusCode = res.statusCode as number
        err.headers = res.headers
        err.body = Buffer.concat(chunks).toString()
        reject(err)
        ws.terminate()
      })
    })
    ws.on('error', reject)
  })
}

export type WhatwgInit = ConstructorParameters<typeof WhatwgWebSocket>[1]

/** What undici's WHATWG WebSocket showed when it did not open: its events, in order, and the close event. */
export interface WhatwgRefused extends Error {
  events: string[]
  code: number
  reason: string
  wasClean: boolean
}

/**
 * Opens undici's WHATWG `WebSocket` (the browser API: it never shows the HTTP status).
 * Resolves once open; rejects with the events it fired when it closed first; fails after `ms`.
 */
export function connectWhatwg (url: string, init?: WhatwgInit, ms = 5000): Promise<InstanceType<typeof WhatwgWebSocket>> {
  const options = typeof init === 'string' || Array.isArray(init) ? { protocols: init } : { ...init }
  // Its own dispatcher, destroyed at close: after a refused handshake undici may
  // leave the unread connection open in a shared pool, keeping the process alive.
  let dispatcher: Agent | undefined
  if (options.dispatcher === undefined) options.dispatcher = dispatcher = new Agent()
  const ws = new WhatwgWebSocket(url, options)
  ws.addEventListener('close', () => { dispatcher?.destroy().catch(() => {}) }, { once: true })
  const events: string[] = []
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.close()
      reject(new Error(`WHATWG WebSocket neither opened nor closed within ${ms} ms`))
    }, ms)
    ws.addEventListener('open', () => {
      clearTimeout(timer)
      resolve(ws)
    }, { once: true })
    ws.addEventListener('error', () => { events.push('error') }, { once: true })
    ws.addEventListener('close', (event) => {
      clearTimeout(timer)
      events.push('close')
      const err = new Error(`closed with ${event.code} before opening`) as WhatwgRefused
      err.events = events
      err.code = event.code
      err.reason = event.reason
      err.wasClean = event.wasClean
      reject(err)
    }, { once: true })
  })
}

/** Resolves with the close event a WHATWG WebSocket fired; fails after `ms`. */
export function whatwgClosed (ws: InstanceType<typeof WhatwgWebSocket>, ms = 10_000): Promise<Closed & { wasClean: boolean }> {
  if (ws.readyState === WhatwgWebSocket.CLOSED) return Promise.reject(new Error('already closed'))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no close within ${ms} ms`)), ms)
    ws.addEventListener('close', (event) => {
      clearTimeout(timer)
      resolve({ code: event.code, reason: event.reason, wasClean: event.wasClean })
    }, { once: true })
  })
}

export interface Closed { code: number, reason: string }

/** Resolves with the close code and reason the client saw; fails after `ms`. */
export function closed (ws: WebSocket, ms = 10_000): Promise<Closed> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.reject(new Error('already closed'))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no close within ${ms} ms`)), ms)
    ws.once('close', (code: number, reason: Buffer) => {
      clearTimeout(timer)
      resolve({ code, reason: reason.toString() })
    })
  })
}

/** Collects the next `count` messages (text as string, binary as Buffer); fails after `ms`. */
export function messages (ws: WebSocket, count: number, ms = 10_000): Promise<Array<string | Buffer>> {
  return new Promise((resolve, reject) => {
    const got: Array<string | Buffer> = []
    const timer = setTimeout(() => {
      ws.off('message', onMessage)
      reject(new Error(`got ${got.length} of ${count} messages within ${ms} ms`))
    }, ms)
    function onMessage (data: Buffer, isBinary: boolean): void {
      got.push(isBinary ? data : data.toString())
      if (got.length === count) {
        clearTimeout(timer)
        ws.off('message', onMessage)
        resolve(got)
      }
    }
    ws.on('message', onMessage)
  })
}

/** The next message parsed as JSON. */
export async function nextJson (ws: WebSocket, ms?: number): Promise<unknown> {
  const [message] = await messages(ws, 1, ms)
  return JSON.parse(message.toString())
}

/** Resolves once `check()` is true, polling every 5 ms; fails after `ms`. */
export async function until (check: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

export function sleep (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/** A promise with its resolve function, for hooks that tests want to hold or observe. */
export function deferred<T = void> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>(_resolve => { resolve = _resolve })
  return { promise, resolve }
}

export const MiB = 1024 * 1024

/**
 * Adds a route whose socket, on any message, queues 200 MiB for a reader that
 * may not read, with `maxBufferedAmount` 1 MiB: a reader that stops is closed
 * with 1008 `send buffer full`.
 */
export function addSlowReaderRoute (app: FastifyInstance, path: string): void {
  app.get(path, {
    websocket: {
      maxBufferedAmount: MiB,
      message (socket) {
        const chunk = Buffer.alloc(MiB)
        for (let i = 0; i < 200 && socket.isOpen; i++) socket.send(chunk).catch(() => {})
      }
    }
  }, function open () {})
}
