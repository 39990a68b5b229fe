/** A connection that can hold bytes of the budget and be cut off for it. */
export interface BudgetMember {
  /** Bytes it holds, shared frames counted in full: who holds the most is cut first. */
  readonly budgetHeld: number
  /** Releases everything it holds and closes with 1008 `send buffer full`. */
  cutForBudget (budget: SendBudget): void
}

// What a queued write costs besides its bytes (Node's write request, the
// connection's own entry for it), counted for each socket that holds it.
const WRITE_COST = 128

/**
 * The server-wide budget for outbound bytes queued to readers that do not
 * keep up (`maxBufferedTotal`). Only writes made while a socket is already
 * behind count, until they are flushed: a reader that keeps up costs nothing
 * here. A frame shared by many sockets (a topic's message) counts once while
 * any of them holds it. Past the budget, the connections holding the most are
 * cut off first, until the total is back within it.
 */
export class SendBudget {
  readonly max: number
  /** Bytes counted now. */
  total = 0
  // Shared frames held, with how many writes hold each.
  readonly #frames = new Map<Buffer, number>()
  // Connections holding anything.
  readonly #members = new Set<BudgetMember>()

  constructor (max: number) {
    this.max = max
  }

  /** Counts a write's bytes (a shared frame once); returns what it holds for its connection. */
  hold (held: Buffer | number): number {
    if (typeof held === 'number') {
      this.total += held + WRITE_COST
      return held + WRITE_COST
    }
    const holders = this.#frames.get(held)
    if (holders === undefined) {
      this.#frames.set(held, 1)
      this.total += held.length + WRITE_COST
    } else {
      this.#frames.set(held, holders + 1)
      this.total += WRITE_COST
    }
    return held.length + WRITE_COST
  }

  /** The write is flushed (or failed); returns what it held for its connection. */
  release (held: Buffer | number): number {
    if (typeof held === 'number') {
      this.total -= held + WRITE_COST
      return held + WRITE_COST
    }
    const holders = this.#frames.get(held) as number
    if (holders === 1) {
      this.#frames.delete(held)
      this.total -= held.length + WRITE_COST
    } else {
      this.#frames.set(held, holders - 1)
      this.total -= WRITE_COST
    }
    return held.length + WRITE_COST
  }

  join (member: BudgetMember): void {
    this.#members.add(member)
  }

  leave (member: BudgetMember): void {
    this.#members.delete(member)
  }

  /** After a write that counts: past the budget, cut off the largest holders. */
  check (): void {
    if (this.total <= this.max) return
    const members = [...this.#members].sort((a, b) => b.budgetHeld - a.budgetHeld)
    for (const member of members) {
      if (this.total <= this.max) return
      member.cutForBudget(this)
    }
  }
}
