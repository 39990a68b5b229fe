import { CloseCode } from './close-codes'
import type { Registry, WebSocketConnection } from './connection'

/**
 * The open sockets of every route (`app.websocketClients`), and graceful
 * shutdown: close them all with 1001 and wait until they are gone.
 */
export class ClientRegistry implements Registry {
  readonly #clients = new Set<WebSocketConnection>()
  readonly #closing = new Set<PromiseLike<unknown>>()
  readonly view: ReadonlySet<WebSocketConnection>
  #idle: (() => void) | undefined = undefined

  constructor () {
    const clients = this.#clients
    // A read-only view: users can iterate and count, never add or remove.
    this.view = Object.freeze({
      get size () { return clients.size },
      has: (socket: WebSocketConnection) => clients.has(socket),
      forEach: (fn: (value: WebSocketConnection, key: WebSocketConnection, set: ReadonlySet<WebSocketConnection>) => void, thisArg?: unknown) => {
        for (const socket of clients) fn.call(thisArg, socket, socket, this.view)
      },
      entries: () => clients.entries(),
      keys: () => clients.keys(),
      values: () => clients.values(),
      [Symbol.iterator]: () => clients.values()
    }) as ReadonlySet<WebSocketConnection>
  }

  add (socket: WebSocketConnection): void {
    this.#clients.add(socket)
  }

  delete (socket: WebSocketConnection): void {
    this.#clients.delete(socket)
    this.#checkIdle()
  }

  track (closing: PromiseLike<unknown>): void {
    this.#closing.add(closing)
    closing.then(() => {
      this.#closing.delete(closing)
      this.#checkIdle()
    })
  }

  #checkIdle (): void {
    if (this.#idle !== undefined && this.#clients.size === 0 && this.#closing.size === 0) this.#idle()
  }

  /**
   * Closes every socket with 1001 and resolves once all are gone and their
   * close hooks have run, or after `timeout`, when the rest are destroyed.
   */
  shutdown (timeout: number): Promise<void> {
    return new Promise(resolve => {
      const timer = setTimeout(() => {
        for (const socket of this.#clients) socket.raw.terminate()
        finish()
      }, timeout)
      const finish = (): void => {
        clearTimeout(timer)
        this.#idle = undefined
        resolve()
      }
      this.#idle = finish
      for (const socket of this.#clients) socket.close(CloseCode.GoingAway, 'server shutting down')
      this.#checkIdle()
    })
  }
}
