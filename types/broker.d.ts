// The broker contract between topics and every broker (the in-memory default, redisBroker, or your own).

/**
 * The broker behind topics: how a published message gets its offset and reaches
 * every node that has subscribers for its key. Topics talk only to this
 * interface; the in-memory broker (default) and `redisBroker` both implement it.
 *
 * One broker serves one node (one Fastify app). Keys are always addressed as a
 * (topic name, key) pair.
 */

/** A message as the broker stores and delivers it: its offset and its JSON text. */
export interface BrokerEntry {
  offset: number
  data: string
  /** The `tag` of the publish, on a live delivery of a message published with one. */
  tag?: string
}

/**
 * A message to publish, already validated and serialized by the topic. Its text
 * is `head + offset + body` when `head` is set (the topic's `offsetField` is
 * written by the broker, in the same atomic step that assigns the offset), and
 * `body` alone otherwise.
 */
export interface BrokerMessage {
  head: string | undefined
  body: string
  /**
   * Set when the publish skips a socket (`except`): unique to this publish, and
   * handed back on its live delivery (`BrokerEntry.tag`) so the node that
   * published knows its own message before the offset is known. History need not keep it.
   * Letters and digits only.
   */
  tag?: string | undefined
}

/** Per-topic settings the broker applies to every key of the topic. */
export interface BrokerTopic {
  name: string
  /** How many entries to keep per key (0: none). */
  history: number
  /** Milliseconds a key's history outlives its last publish. */
  historyTtl: number
  /** Milliseconds a dead node's presence members survive it. */
  presenceTtl: number
}

/** What the broker calls back into: the node's topics. */
export interface BrokerSink {
  /**
   * A message for a key this node subscribed to. Called exactly once per
   * offset, in offset order per key, only between `subscribe` and `unsubscribe`.
   */
  deliver (topic: string, key: string, entry: BrokerEntry): void
  /**
   * The broker can no longer guarantee the order for this key (a gap that
   * history does not cover, or the key's state was lost): every local
   * subscriber must be closed (1012 `missed messages`). The key stays
   * subscribed; delivery resumes from `offset`'s successor.
   */
  lost (topic: string, key: string, offset: number): void
}

/** Assigns offsets, keeps history and presence, and carries messages to every node with subscribers. */
export interface Broker {
  /** Called once, when the app is ready, before any other call. */
  start (sink: BrokerSink): Promise<void>
  /** Called once, when the app closes, after every socket has left. */
  close (): Promise<void>
  /** Assigns the next offset, stores the entry in history, delivers it everywhere. Resolves with the offset once accepted. */
  publish (topic: BrokerTopic, key: string, message: BrokerMessage): Promise<number>
  /**
   * This node's first local subscriber for the key. Resolves with the key's
   * latest offset at the moment the subscription took effect: every later
   * offset will be delivered to the sink.
   */
  subscribe (topic: BrokerTopic, key: string): Promise<number>
  /**
   * The key's latest offset at the broker right now. Optional, for brokers where a
   * node's view of a key it subscribed to can lag behind (messages on their way to
   * it): a socket subscribing with a `since` ahead of the node's view is then
   * recovered when `since` is not ahead of this. Without it the node's view is used.
   */
  latest? (topic: BrokerTopic, key: string): Promise<number>
  /** This node's last local subscriber for the key has left. */
  unsubscribe (topic: BrokerTopic, key: string): Promise<void>
  /** Stored entries in offset order: with `since`, the oldest `limit` after it; without, the newest `limit`. */
  history (topic: BrokerTopic, key: string, options: { since?: number | undefined, limit?: number | undefined }): Promise<BrokerEntry[]>
  /** Adds (or replaces) one presence member of the key, owned by this node. `id` is unique per socket. */
  join (topic: BrokerTopic, key: string, id: string, data: string): Promise<void>
  /** Removes one member this node added. */
  leave (topic: BrokerTopic, key: string, id: string): Promise<void>
  /** Every member of the key on every live node, as the `data` given to `join`. */
  presence (topic: BrokerTopic, key: string): Promise<string[]>
}
