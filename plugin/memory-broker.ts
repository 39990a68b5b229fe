import type { Broker, BrokerEntry, BrokerMessage, BrokerSink, BrokerTopic } from './broker'

interface KeyRecord {
  topic: BrokerTopic
  offset: number
  entries: BrokerEntry[]
  touched: number
  subscribed: boolean
  members: Map<string, string>
}

const NO_ENTRIES: BrokerEntry[] = []

/** The default broker: one process, offsets and history in memory. */
export class MemoryBroker implements Broker {
  #sink: BrokerSink | undefined = undefined
  readonly #keys = new Map<string, KeyRecord>()
  #sweep: NodeJS.Timeout | undefined = undefined
  #sweepAt = Infinity

  /** Keys held: those with a subscriber, a member, or a publish within their historyTtl. */
  get size (): number {
    return this.#keys.size
  }

  async start (sink: BrokerSink): Promise<void> {
    this.#sink = sink
  }

  async close (): Promise<void> {
    clearTimeout(this.#sweep)
    this.#sweep = undefined
    this.#sweepAt = Infinity
    this.#keys.clear()
  }

  #record (topic: BrokerTopic, key: string): KeyRecord {
    const id = topic.name + '\0' + key
    let record = this.#keys.get(id)
    if (record === undefined) {
      record = { topic, offset: 0, entries: [], touched: Date.now(), subscribed: false, members: new Map() }
      this.#keys.set(id, record)
    }
    return record
  }

  // Reads and leaves never create a key: an unknown key has no offset, history or members.
  #existing (topic: BrokerTopic, key: string): KeyRecord | undefined {
    return this.#keys.get(topic.name + '\0' + key)
  }

  async publish (topic: BrokerTopic, key: string, message: BrokerMessage): Promise<number> {
    const record = this.#record(topic, key)
    const offset = ++record.offset
    const data = message.head === undefined ? message.body : message.head + offset + message.body
    const entry = { offset, data }
    record.touched = Date.now()
    if (topic.history > 0) {
      record.entries.push(entry)
      if (record.entries.length > topic.history) record.entries.shift()
    }
    // Whatever the history: a key published once (a per-user inbox) must not be held for good.
    this.#schedule(topic.historyTtl)
    if (record.subscribed) (this.#sink as BrokerSink).deliver(topic.name, key, message.tag === undefined ? entry : { offset, data, tag: message.tag })
    return offset
  }

  // Idle keys are swept every quarter of the shortest ttl in use, so a key
  // outlives its historyTtl by at most a quarter of it. No timer while no key can expire.
  #schedule (ttl: number): void {
    const delay = Math.max(1, ttl / 4)
    const at = Date.now() + delay
    if (at >= this.#sweepAt) return
    clearTimeout(this.#sweep)
    this.#sweepAt = at
    this.#sweep = setTimeout(() => this.#sweepIdle(), delay).unref()
  }

  #sweepIdle (): void {
    this.#sweep = undefined
    this.#sweepAt = Infinity
    const now = Date.now()
    let shortest = Infinity
    for (const [id, record] of this.#keys) {
      const ttl = record.topic.historyTtl
      if (now - record.touched > ttl) {
        record.entries = []
        if (!record.subscribed && record.members.size === 0) {
          this.#keys.delete(id)
          continue
        }
      }
      // Still to expire: its history, or the key itself once nobody holds it.
      if (record.entries.length > 0 || (!record.subscribed && record.members.size === 0)) shortest = Math.min(shortest, ttl)
    }
    if (shortest !== Infinity) this.#schedule(shortest)
  }

  /** Nobody holds the key any more: it goes once idle for its historyTtl. */
  #released (record: KeyRecord): void {
    if (!record.subscribed && record.members.size === 0) this.#schedule(record.topic.historyTtl)
  }

  async subscribe (topic: BrokerTopic, key: string): Promise<number> {
    const record = this.#record(topic, key)
    record.subscribed = true
    return record.offset
  }

  async unsubscribe (topic: BrokerTopic, key: string): Promise<void> {
    const record = this.#existing(topic, key)
    if (record === undefined) return
    record.subscribed = false
    this.#released(record)
  }

  async history (topic: BrokerTopic, key: string, options: { since?: number, limit?: number }): Promise<BrokerEntry[]> {
    const entries = this.#existing(topic, key)?.entries ?? NO_ENTRIES
    const limit = options.limit ?? entries.length
    if (options.since !== undefined) {
      const since = options.since
      return entries.filter(e => e.offset > since).slice(0, limit)
    }
    return limit === 0 ? [] : entries.slice(-limit)
  }

  async join (topic: BrokerTopic, key: string, id: string, data: string): Promise<void> {
    this.#record(topic, key).members.set(id, data)
  }

  async leave (topic: BrokerTopic, key: string, id: string): Promise<void> {
    const record = this.#existing(topic, key)
    if (record === undefined) return
    record.members.delete(id)
    this.#released(record)
  }

  async presence (topic: BrokerTopic, key: string): Promise<string[]> {
    const record = this.#existing(topic, key)
    return record === undefined ? [] : [...record.members.values()]
  }
}
