// The typed client against real servers: a shared contract, the two WebSocket
// implementations it runs on in Node, and waits on its state.
import { Type } from '@sinclair/typebox'
import WsWebSocket from 'ws'
import { Agent, WebSocket as UndiciWebSocket } from 'undici'
import type { ClientState, WebSocketConstructor } from 'fastify-typed-websocket/client'

export const ClientMsg = Type.Union([
  Type.Object({ type: Type.Literal('say'), text: Type.String() }),
  Type.Object({ type: Type.Literal('ask'), id: Type.String(), delay: Type.Integer({ minimum: 0 }) }),
  Type.Object({ type: Type.Literal('bye'), code: Type.Integer(), reason: Type.String() })
])
export const ServerMsg = Type.Union([
  Type.Object({ type: Type.Literal('said'), text: Type.String() }),
  Type.Object({ type: Type.Literal('answer'), id: Type.String(), delay: Type.Integer() })
])
/** What a route spreads into `websocket` and `connect()` takes. */
export const echo = { inbound: ClientMsg, outbound: ServerMsg }

// undici's WebSocket with its own dispatcher, destroyed at close: a refused handshake may
// otherwise leave a pooled connection that keeps the process alive.
class IsolatedUndiciWebSocket extends UndiciWebSocket {
  constructor (url: string, protocols?: string | string[]) {
    const dispatcher = new Agent()
    super(url, { protocols, dispatcher })
    this.addEventListener('close', () => { dispatcher.destroy().catch(() => {}) }, { once: true })
  }
}

/** The implementations the client runs on in Node 20: `ws`, and undici's WHATWG WebSocket. */
export const implementations: Array<[string, WebSocketConstructor]> = [
  ['ws', WsWebSocket as unknown as WebSocketConstructor],
  ['undici', IsolatedUndiciWebSocket as unknown as WebSocketConstructor]
]

/** What these helpers need of a client, whatever its contract. */
export interface StateSource {
  readonly state: ClientState
  on (event: 'state', fn: (state: ClientState) => void): () => void
}

/** Records every state the client enters. */
export function recordStates (client: StateSource): ClientState[] {
  const states: ClientState[] = []
  client.on('state', (state) => { states.push(state) })
  return states
}

/** Resolves when the client enters `state` (or is already in it); fails after `ms`. */
export function waitState (client: StateSource, state: ClientState, ms = 10_000): Promise<void> {
  if (client.state === state) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`client did not become ${state} within ${ms} ms (it is ${client.state})`))
    }, ms)
    const off = client.on('state', (now) => {
      if (now !== state) return
      clearTimeout(timer)
      off()
      resolve()
    })
  })
}
