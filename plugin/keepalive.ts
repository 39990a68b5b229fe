export const kKeepaliveDue = Symbol('fastify-typed-websocket.keepaliveDue')
export const kOnKeepalive = Symbol('fastify-typed-websocket.onKeepalive')
export const kKeepaliveClock = Symbol('fastify-typed-websocket.keepaliveClock')

// Due times are milliseconds since the module loaded: a small integer is kept
// in the connection itself, where a Date.now() double would be a 16-byte heap
// number per connection. (Small integers for 24 days; doubles after that.)
const EPOCH = Date.now()
const MAX_SMALL = 0x7fffffff

/** Milliseconds since the keepalive epoch. */
export function keepaliveNow (): number {
  const now = Date.now() - EPOCH
  // A small integer for the first 24 days of uptime.
  return now < MAX_SMALL ? now | 0 : now
}

/** A connection that the keepalive clock pings. */
export interface KeepaliveMember {
  /** When (ms, from `keepaliveNow()`) the member is next due: ping, or time out. */
  [kKeepaliveDue]: number
  [kOnKeepalive] (now: number): void
  /** The clock it belongs to, if any. */
  readonly [kKeepaliveClock]: KeepaliveClock | undefined
}

// Ticks per shortest period: a ping or a timeout happens at most 1/8 of it late.
const TICKS_PER_PERIOD = 8

/**
 * One clock for every connection with the same ping interval and timeout,
 * instead of a timer per connection. It goes through the open connections
 * (a set the app keeps anyway) and answers those that are its members: a
 * member costs nothing more, and an idle app with no connections has no timer at all.
 */
export class KeepaliveClock {
  readonly interval: number
  readonly timeout: number
  readonly #open: Iterable<KeepaliveMember>
  #members = 0
  readonly #tick: number
  #timer: NodeJS.Timeout | undefined = undefined

  constructor (interval: number, timeout: number, open: Iterable<KeepaliveMember>) {
    this.interval = interval
    this.timeout = timeout
    this.#open = open
    this.#tick = Math.max(1, Math.floor(Math.min(interval, timeout) / TICKS_PER_PERIOD))
  }

  /** The member is open; it is pinged until delete(). */
  add (member: KeepaliveMember): void {
    member[kKeepaliveDue] = keepaliveNow() + this.interval
    this.#members++
    if (this.#timer === undefined) {
      this.#timer = setInterval(() => this.#onTick(), this.#tick)
      this.#timer.unref()
    }
  }

  delete (_member: KeepaliveMember): void {
    if (--this.#members === 0 && this.#timer !== undefined) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
  }

  #onTick (): void {
    const now = keepaliveNow()
    for (const member of this.#open) {
      if (member[kKeepaliveClock] === this && now >= member[kKeepaliveDue]) member[kOnKeepalive](now)
    }
  }
}

/** The clocks of an app, one per (interval, timeout) pair in use. */
export class KeepaliveClocks {
  readonly #clocks = new Map<string, KeepaliveClock>()
  readonly #open: Iterable<KeepaliveMember>

  /** `open`: the open connections, where each clock finds its members. */
  constructor (open: Iterable<KeepaliveMember>) {
    this.#open = open
  }

  get (interval: number, timeout: number): KeepaliveClock | undefined {
    if (interval === 0) return undefined
    const key = `${interval}/${timeout}`
    let clock = this.#clocks.get(key)
    if (clock === undefined) {
      clock = new KeepaliveClock(interval, timeout, this.#open)
      this.#clocks.set(key, clock)
    }
    return clock
  }
}
