import { CloseCode, CloseReason } from './close-codes'
import type { Registry, WebSocketConnection } from './connection'

/**
 * The open sockets of every route (`app.websocketClients`), and graceful
 * shutdown: close them all with 1001 and wait until their close hooks have run.
 */
export class ClientRegistry implements Registry {
  // Open right now: what users see, and what the keepalive clocks go through.
  readonly #open = new Set<WebSocketConnection>()
  // Closed and not finished: the close hook (if any) has not completed yet.
  // (Accepted and not finished: these and the open ones; one set entry per idle connection.)
  readonly #closing = new Set<WebSocketConnection>()
  readonly view: ReadonlySet<WebSocketConnection>
  #idle: (() => void) | undefined = undefined

  constructor () {
    const open = this.#open
    // A read-only view: users can iterate and count, never add or remove.
    const view: ReadonlySet<WebSocketConnection> = Object.freeze({
      get size () { return open.size },
      has: (socket: WebSocketConnection) => open.has(socket),
      forEach (fn: (value: WebSocketConnection, key: WebSocketConnection, set: ReadonlySet<WebSocketConnection>) => void, thisArg?: unknown) {
        for (const socket of open) fn.call(thisArg, socket, socket, view)
      },
      entries: () => open.entries(),
      keys: () => open.values(),
      values: () => open.values(),
      [Symbol.iterator]: () => open.values()
    })
    this.view = view
  }

  /** The open sockets. */
  get open (): ReadonlySet<WebSocketConnection> {
    return this.#open
  }

  add (socket: WebSocketConnection): void {
    this.#open.add(socket)
  }

  closed (socket: WebSocketConnection): void {
    this.#open.delete(socket)
    this.#closing.add(socket)
  }

  finished (socket: WebSocketConnection): void {
    this.#closing.delete(socket)
    if (this.#idle !== undefined && this.#closing.size === 0 && this.#open.size === 0) this.#idle()
  }

  /**
   * Closes every socket with 1001 and resolves once all are gone and their
   * close hooks have run. Sockets still open after `timeout` are destroyed
   * (their close hooks run with 1006); a hook that never settles is given up
   * on after another `timeout`.
   */
  shutdown (timeout: number): Promise<void> {
    return new Promise(resolve => {
      let timer = setTimeout(() => {
        for (const socket of [...this.#open, ...this.#closing]) socket.raw.terminate()
        timer = setTimeout(finish, timeout)
      }, timeout)
      const finish = (): void => {
        clearTimeout(timer)
        this.#idle = undefined
        resolve()
      }
      if (this.#open.size === 0 && this.#closing.size === 0) return finish()
      this.#idle = finish
      for (const socket of this.#open) socket.close(CloseCode.GoingAway, CloseReason.ShuttingDown)
    })
  }
}
