import type { RateLimitOptions } from '../types'

/** A route's `rateLimit` option, checked. */
export type RateLimit = RateLimitOptions

/**
 * A token bucket per connection: it holds up to `messages` message tokens
 * (and `bytes` byte tokens) and refills them evenly over `interval`. A
 * message larger than the whole byte bucket passes once the bucket is full,
 * and leaves it in debt.
 */
export class TokenBucket {
  readonly closes: boolean
  readonly #limit: RateLimit
  #messages: number
  #bytes: number
  #at: number

  constructor (limit: RateLimit) {
    this.#limit = limit
    this.closes = limit.action === 'close'
    this.#messages = limit.messages
    this.#bytes = limit.bytes ?? 0
    this.#at = Date.now()
  }

  #refill (now: number): void {
    const limit = this.#limit
    const elapsed = now - this.#at
    if (elapsed <= 0) return
    this.#at = now
    this.#messages = Math.min(limit.messages, this.#messages + elapsed * limit.messages / limit.interval)
    if (limit.bytes !== undefined) this.#bytes = Math.min(limit.bytes, this.#bytes + elapsed * limit.bytes / limit.interval)
  }

  /** Takes the tokens of one message of `size` bytes; false (nothing taken) when there are too few. */
  take (size: number): boolean {
    this.#refill(Date.now())
    const limit = this.#limit
    if (this.#messages < 1) return false
    if (limit.bytes !== undefined) {
      if (this.#bytes < Math.min(size, limit.bytes)) return false
      this.#bytes -= size
    }
    this.#messages -= 1
    return true
  }

  /** Milliseconds until a message of `size` bytes can be taken. */
  wait (size: number): number {
    const limit = this.#limit
    let ms = (1 - this.#messages) * limit.interval / limit.messages
    if (limit.bytes !== undefined) {
      ms = Math.max(ms, (Math.min(size, limit.bytes) - this.#bytes) * limit.interval / limit.bytes)
    }
    return Math.max(1, Math.ceil(ms))
  }
}
