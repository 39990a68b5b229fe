// The broker contract between topics and every broker, as plugin/broker.ts defines it.

/** A message as the broker stores and delivers it: its offset and its JSON text. */
export interface BrokerEntry {
  offset: number
  data: string
}

/** A message to publish: its text is `head + offset + body` when `head` is set, `body` alone otherwise. */
export interface BrokerMessage {
  head: string | undefined
  body: string
}

/** Per-topic settings the broker applies to every key of the topic. */
export interface BrokerTopic {
  name: string
  history: number
  historyTtl: number
  presenceTtl: number
}

/** What the broker calls back into: the node's topics. */
export interface BrokerSink {
  deliver (topic: string, key: string, entry: BrokerEntry): void
  lost (topic: string, key: string, offset: number): void
}

/** Assigns offsets, keeps history and presence, and carries messages to every node with subscribers. */
export interface Broker {
  start (sink: BrokerSink): Promise<void>
  close (): Promise<void>
  publish (topic: BrokerTopic, key: string, message: BrokerMessage): Promise<number>
  subscribe (topic: BrokerTopic, key: string): Promise<number>
  unsubscribe (topic: BrokerTopic, key: string): Promise<void>
  history (topic: BrokerTopic, key: string, options: { since?: number, limit?: number }): Promise<BrokerEntry[]>
  join (topic: BrokerTopic, key: string, id: string, data: string): Promise<void>
  leave (topic: BrokerTopic, key: string, id: string): Promise<void>
  presence (topic: BrokerTopic, key: string): Promise<string[]>
}
