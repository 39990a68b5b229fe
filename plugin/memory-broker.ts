import type { Broker, BrokerEntry, BrokerMessage, BrokerSink, BrokerTopic } from './broker'

interface KeyRecord {
  topic: BrokerTopic
  offset: number
  entries: BrokerEntry[]
  touched: number
  subscribed: boolean
  members: Map<string, string>
}

/** The default broker: one process, offsets and history in memory. */
export class MemoryBroker implements Broker {
  #sink: BrokerSink | undefined = undefined
  readonly #keys = new Map<string, KeyRecord>()
  #sweep: NodeJS.Timeout | undefined = undefined

  async start (sink: BrokerSink): Promise<void> {
    this.#sink = sink
  }

  async close (): Promise<void> {
    clearTimeout(this.#sweep)
    this.#sweep = undefined
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

  async publish (topic: BrokerTopic, key: string, message: BrokerMessage): Promise<number> {
    const record = this.#record(topic, key)
    const offset = ++record.offset
    const data = message.head === undefined ? message.body : message.head + offset + message.body
    const entry = { offset, data }
    record.touched = Date.now()
    if (topic.history > 0) {
      record.entries.push(entry)
      if (record.entries.length > topic.history) record.entries.shift()
      this.#schedule(topic.historyTtl)
    }
    if (record.subscribed) (this.#sink as BrokerSink).deliver(topic.name, key, entry)
    return offset
  }

  // Idle keys are dropped by a sweep every quarter of the shortest ttl, so a key
  // outlives its historyTtl by at most a quarter of it.
  #schedule (ttl: number): void {
    if (this.#sweep !== undefined) return
    this.#sweep = setTimeout(() => {
      this.#sweep = undefined
      const now = Date.now()
      let shortest = Infinity
      for (const [id, record] of this.#keys) {
        if (now - record.touched > record.topic.historyTtl) {
          record.entries = []
          if (!record.subscribed && record.members.size === 0) this.#keys.delete(id)
        }
        if (record.entries.length > 0) shortest = Math.min(shortest, record.topic.historyTtl)
      }
      if (shortest !== Infinity) this.#schedule(shortest)
    }, Math.max(1, ttl / 4)).unref()
  }

  async subscribe (topic: BrokerTopic, key: string): Promise<number> {
    const record = this.#record(topic, key)
    record.subscribed = true
    return record.offset
  }

  async unsubscribe (topic: BrokerTopic, key: string): Promise<void> {
    this.#record(topic, key).subscribed = false
  }

  async history (topic: BrokerTopic, key: string, options: { since?: number, limit?: number }): Promise<BrokerEntry[]> {
    const entries = this.#record(topic, key).entries
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
    this.#record(topic, key).members.delete(id)
  }

  async presence (topic: BrokerTopic, key: string): Promise<string[]> {
    return [...this.#record(topic, key).members.values()]
  }
}
