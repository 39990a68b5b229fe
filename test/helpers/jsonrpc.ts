// A JSON-RPC 2.0 peer that knows nothing of this package: hand-written envelopes over a raw `ws`.
import type WebSocket from 'ws'

export type Envelope = Record<string, unknown>

export class RawPeer {
  readonly ws: WebSocket
  /** Every JSON message received and not yet waited for, in order. */
  readonly received: Envelope[] = []
  /** Text messages that are not JSON. */
  readonly texts: string[] = []
  #waiters: Array<{ match: (msg: Envelope) => boolean, resolve: (msg: Envelope) => void }> = []

  constructor (ws: WebSocket) {
    this.ws = ws
    ws.on('message', (data: Buffer) => {
      let msg: Envelope
      try {
        msg = JSON.parse(data.toString()) as Envelope
      } catch {
        this.texts.push(data.toString())
        return
      }
      this.received.push(msg)
      const i = this.#waiters.findIndex(w => w.match(msg))
      if (i !== -1) this.#waiters.splice(i, 1)[0].resolve(msg)
    })
  }

  send (value: unknown): void {
    this.ws.send(typeof value === 'string' ? value : JSON.stringify(value))
  }

  /** The first message (already received or to come) that `match` accepts; fails after `ms`. */
  wait (match: (msg: Envelope) => boolean, ms = 5000, what = 'a message'): Promise<Envelope> {
    const seen = this.received.find(match)
    if (seen !== undefined) {
      this.received.splice(this.received.indexOf(seen), 1)
      return Promise.resolve(seen)
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (msg: Envelope) => {
          clearTimeout(timer)
          this.received.splice(this.received.indexOf(msg), 1)
          resolve(msg)
        }
      }
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1)
        reject(new Error(`no ${what} within ${ms} ms`))
      }, ms)
      this.#waiters.push(waiter)
    })
  }

  /** The answer carrying `id`. */
  answer (id: unknown, ms?: number): Promise<Envelope> {
    return this.wait(msg => msg.id === id && !('method' in msg), ms, `answer to ${JSON.stringify(id)}`)
  }

  /** Sends a request and resolves with its answer. */
  async ask (id: unknown, method: string, params?: unknown): Promise<Envelope> {
    const request: Envelope = { jsonrpc: '2.0', id, method }
    if (params !== undefined) request.params = params
    this.send(request)
    return await this.answer(id)
  }
}
