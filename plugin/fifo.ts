/**
 * A first-in first-out queue with O(1) push and shift at any length
 * (Array.prototype.shift copies the whole array once it is large).
 */
export class Fifo<T> {
  #items: Array<T | undefined> = []
  #head = 0

  get length (): number {
    return this.#items.length - this.#head
  }

  push (item: T): void {
    this.#items.push(item)
  }

  /** The oldest item, left in place; the queue must not be empty. */
  peek (): T {
    return this.#items[this.#head] as T
  }

  /** Calls `fn` with every item, oldest first, and its position (0 for the oldest). */
  forEach (fn: (item: T, index: number) => void): void {
    const items = this.#items
    for (let i = this.#head; i < items.length; i++) fn(items[i] as T, i - this.#head)
  }

  /** The oldest item; the queue must not be empty. */
  shift (): T {
    const items = this.#items
    const item = items[this.#head] as T
    items[this.#head++] = undefined
    if (this.#head === items.length) {
      items.length = 0
      this.#head = 0
    } else if (this.#head >= 1024 && this.#head * 2 >= items.length) {
      // Drop the consumed half now and then: amortized O(1).
      items.splice(0, this.#head)
      this.#head = 0
    }
    return item
  }
}
