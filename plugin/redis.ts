import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { Redis, RedisOptions } from 'ioredis'
import type { Broker, BrokerEntry, BrokerMessage, BrokerSink, BrokerTopic } from './broker'
import { FST_WS_BROKER_UNAVAILABLE, FST_WS_INVALID_OPTION } from './errors'
import { PUBLISH_SCRIPT, SUBSCRIBE_SCRIPT } from './redis-scripts'
import { redisDefaults } from './defaults'
import type { RedisBrokerOptions } from '../types/redis'

export type { RedisBrokerOptions } from '../types/redis'
export { FST_WS_BROKER_UNAVAILABLE } from './errors'

// The offset of a key outlives its history, so offsets keep increasing while
// subscribers still hold old ones; a day covers a room that falls quiet overnight.
const MIN_STATE_TTL = 24 * 60 * 60 * 1000
// The character after `<epoch>:<offset>:` that marks a tagged publish (see redis-scripts.ts).
const TAGGED = 0x7e

/*
 * Both connections are duplicates of the given client, without an offline queue
 * and without resending unanswered commands after a reconnect: a command is only
 * written while the connection is ready, and one that was in flight when Redis
 * went away fails instead of running later. So a publish that rejected is never
 * delivered afterwards (Redis may have run it just before the link dropped; then
 * it was delivered at that moment, like any publish).
 */
const CONNECTION: Partial<RedisOptions> = {
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  autoResubscribe: false,
  maxRetriesPerRequest: 0
}

const PUBLISH_SHA = createHash('sha1').update(PUBLISH_SCRIPT).digest('hex')
const SUBSCRIBE_SHA = createHash('sha1').update(SUBSCRIBE_SCRIPT).digest('hex')

interface Subscription {
  topic: string
  key: string
  channel: string
  base: string
  /** The last offset handed to the sink. */
  last: number
  /** The key's epoch as this node knows it; null before the key's first publish. */
  epoch: string | null
  /** Live messages waiting while the offsets before them are fetched. */
  pending: Array<{ epoch: string, offset: number, data: string, tag: string | undefined }>
  /** Recoveries queued or running (or the subscription is not in effect yet): live messages wait. */
  held: number
  /** Recoveries of one key run one after the other. */
  recovery: Promise<void>
}

interface Member { base: string, id: string, data: string }

class RedisBroker implements Broker {
  readonly #client: Redis
  readonly #prefix: string
  readonly #timeout: number
  readonly #node = randomUUID()
  #commands: Redis | undefined
  #subscriber: Redis | undefined
  #sink: BrokerSink | undefined
  readonly #subscriptions = new Map<string, Subscription>()
  /** This node's presence members, by key and member id. */
  readonly #members = new Map<string, Member>()
  /** Lease refresh timers, by topic name. */
  readonly #leases = new Map<string, { ttl: number, timer: NodeJS.Timeout }>()
  #closed = false

  constructor (options: RedisBrokerOptions) {
    this.#client = options.client
    this.#prefix = options.prefix ?? redisDefaults.prefix
    this.#timeout = options.brokerTimeout ?? redisDefaults.brokerTimeout
  }

  async start (sink: BrokerSink): Promise<void> {
    this.#sink = sink
    const commands = this.#client.duplicate(CONNECTION)
    const subscriber = this.#client.duplicate(CONNECTION)
    this.#commands = commands
    this.#subscriber = subscriber
    // ioredis logs connection errors itself when nobody listens; reconnecting is its job.
    commands.on('error', () => {})
    subscriber.on('error', () => {})
    // Each command waiting for the connection listens for 'ready' once: many at a time is normal during an outage.
    commands.setMaxListeners(0)
    subscriber.setMaxListeners(0)
    subscriber.on('message', (channel: string, payload: string) => this.#receive(channel, payload))
    await Promise.all([this.#ready(commands), this.#ready(subscriber)])
    commands.on('ready', () => this.#commandsBack())
    subscriber.on('ready', () => this.#subscriberBack())
  }

  async close (): Promise<void> {
    this.#closed = true
    for (const { timer } of this.#leases.values()) clearInterval(timer)
    this.#leases.clear()
    this.#subscriptions.clear()
    await Promise.all([this.#commands, this.#subscriber].map((connection) => connection?.quit().catch(() => {})))
    this.#commands?.disconnect()
    this.#subscriber?.disconnect()
  }

  async publish (topic: BrokerTopic, key: string, message: BrokerMessage): Promise<number> {
    const base = this.#base(topic.name, key)
    const stateTtl = Math.max(topic.historyTtl, MIN_STATE_TTL)
    const args: Array<string | number> = [
      2, base + ':s', base + ':h', base, message.head === undefined ? '0' : '1', message.head ?? '', message.body,
      topic.history, topic.historyTtl, stateTtl, randomBytes(8).toString('hex'), message.tag ?? ''
    ]
    const reply = await this.#command('publish', (redis) => evalScript(redis, PUBLISH_SHA, PUBLISH_SCRIPT, args)) as [number, string]
    return reply[0]
  }

  async latest (topic: BrokerTopic, key: string): Promise<number> {
    return (await this.#state(this.#base(topic.name, key))).offset
  }

  async subscribe (topic: BrokerTopic, key: string): Promise<number> {
    const base = this.#base(topic.name, key)
    const sub: Subscription = {
      topic: topic.name, key, channel: base, base, last: 0, epoch: null, pending: [], held: 1, recovery: Promise.resolve()
    }
    this.#subscriptions.set(base, sub)
    try {
      // The channel first, then the offset: whatever is published after the read arrives live.
      await this.#command('subscribe', (redis) => redis.subscribe(base), this.#subscriber)
      // The key gets an epoch if it had none: a Redis that restarts before its first message reaches us is noticed.
      const args = [1, base + ':s', randomBytes(8).toString('hex'), Math.max(topic.historyTtl, MIN_STATE_TTL)]
      const [offset, epoch] = await this.#command('subscribe', (redis) => evalScript(redis, SUBSCRIBE_SHA, SUBSCRIBE_SCRIPT, args)) as [string | null, string]
      sub.last = offset === null ? 0 : Number(offset)
      sub.epoch = epoch
    } catch (err) {
      this.#subscriptions.delete(base)
      this.#subscriber?.unsubscribe(base).catch(() => {})
      throw err
    }
    // Live messages that came meanwhile go to the sink once the caller knows the offset.
    setImmediate(() => {
      sub.held--
      this.#flush(sub)
    })
    return sub.last
  }

  async unsubscribe (topic: BrokerTopic, key: string): Promise<void> {
    const base = this.#base(topic.name, key)
    this.#subscriptions.delete(base)
    // Redis unreachable: the channel is not resubscribed on return, and its messages are ignored.
    await this.#command('unsubscribe', (redis) => redis.unsubscribe(base), this.#subscriber).catch(() => {})
  }

  async history (topic: BrokerTopic, key: string, options: { since?: number, limit?: number }): Promise<BrokerEntry[]> {
    const stream = this.#base(topic.name, key) + ':h'
    const { since, limit } = options
    if (limit === 0) return []
    if (since !== undefined) {
      const from = `${since + 1}-1`
      const entries = await this.#command('history', (redis) =>
        limit === undefined ? redis.xrange(stream, from, '+') : redis.xrange(stream, from, '+', 'COUNT', limit))
      return entries.map(toEntry)
    }
    const entries = await this.#command('history', (redis) =>
      limit === undefined ? redis.xrevrange(stream, '+', '-') : redis.xrevrange(stream, '+', '-', 'COUNT', limit))
    return entries.map(toEntry).reverse()
  }

  async join (topic: BrokerTopic, key: string, id: string, data: string): Promise<void> {
    const base = this.#base(topic.name, key)
    this.#members.set(base + '\n' + id, { base, id, data })
    this.#lease(topic)
    await this.#command('join', (redis) => redis.multi()
      .set(this.#leaseKey(topic.name), '1', 'PX', topic.presenceTtl)
      .hset(base + ':p', id, this.#node + ' ' + data)
      .exec())
  }

  async leave (topic: BrokerTopic, key: string, id: string): Promise<void> {
    const base = this.#base(topic.name, key)
    this.#members.delete(base + '\n' + id)
    await this.#command('leave', (redis) => redis.hdel(base + ':p', id))
  }

  async presence (topic: BrokerTopic, key: string): Promise<string[]> {
    const hash = this.#base(topic.name, key) + ':p'
    return await this.#command('presence', async (redis) => {
      const members = await redis.hgetall(hash)
      const nodes = [...new Set(Object.values(members).map((value) => value.slice(0, value.indexOf(' '))))]
      if (nodes.length === 0) return []
      const leases = await redis.mget(nodes.map((node) => this.#leaseKey(topic.name, node)))
      const alive = new Set(nodes.filter((_node, i) => leases[i] !== null))
      const data: string[] = []
      const dead: string[] = []
      for (const [id, value] of Object.entries(members)) {
        const space = value.indexOf(' ')
        if (alive.has(value.slice(0, space))) data.push(value.slice(space + 1))
        else dead.push(id)
      }
      if (dead.length > 0) await redis.hdel(hash, ...dead)
      return data
    })
  }

  /** One name per (topic, key); the topic's length keeps `a:b` + `c` apart from `a` + `b:c`. */
  #base (topic: string, key: string): string {
    return `${this.#prefix}${topic.length}:${topic}:${key}`
  }

  #leaseKey (topic: string, node: string = this.#node): string {
    return `${this.#prefix}lease:${topic.length}:${topic}:${node}`
  }

  /** A lease per (node, topic), refreshed three times per `presenceTtl` while the node lives. */
  #lease (topic: BrokerTopic): void {
    if (this.#leases.has(topic.name)) return
    const timer = setInterval(() => {
      this.#command('presence lease', (redis) => redis.set(this.#leaseKey(topic.name), '1', 'PX', topic.presenceTtl))
        .catch(() => {})
    }, Math.max(1, Math.floor(topic.presenceTtl / 3)))
    timer.unref()
    this.#leases.set(topic.name, { ttl: topic.presenceTtl, timer })
  }

  async #state (base: string): Promise<{ offset: number, epoch: string | null }> {
    const [offset, epoch] = await this.#command('subscribe', (redis) => redis.hmget(base + ':s', 'offset', 'epoch'))
    return { offset: offset === null ? 0 : Number(offset), epoch }
  }

  /** Runs a command once the connection is ready; rejects with FST_WS_BROKER_UNAVAILABLE after `brokerTimeout`. */
  #command<T> (what: string, send: (redis: Redis) => Promise<T>, connection = this.#commands): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const redis = connection as Redis
      let done = false
      const finish = (err: Error | null, value?: T): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        redis.off('ready', go)
        if (err === null) resolve(value as T)
        else reject(err)
      }
      const timer = setTimeout(() => {
        finish(new FST_WS_BROKER_UNAVAILABLE(`${what}: no answer from Redis within ${this.#timeout} ms`))
      }, this.#timeout)
      function go (): void {
        send(redis).then((value) => finish(null, value), (err: Error) => {
          finish(new FST_WS_BROKER_UNAVAILABLE(`${what}: ${err.message}`))
        })
      }
      if (this.#closed) finish(new FST_WS_BROKER_UNAVAILABLE(`${what}: the broker is closed`))
      else if (redis.status === 'ready') go()
      else redis.once('ready', go)
    })
  }

  #ready (redis: Redis): Promise<void> {
    // A duplicate of a lazyConnect client is lazy too.
    if (redis.status === 'wait') redis.connect().catch(() => {})
    return this.#command('connect', async () => {}, redis)
  }

  #receive (channel: string, payload: string): void {
    const sub = this.#subscriptions.get(channel)
    if (sub === undefined) return
    const first = payload.indexOf(':')
    const second = payload.indexOf(':', first + 1)
    const epoch = payload.slice(0, first)
    const offset = Number(payload.slice(first + 1, second))
    if (payload.charCodeAt(second + 1) === TAGGED) {
      const third = payload.indexOf(':', second + 2)
      sub.pending.push({ epoch, offset, data: payload.slice(third + 1), tag: payload.slice(second + 2, third) })
    } else {
      sub.pending.push({ epoch, offset, data: payload.slice(second + 1), tag: undefined })
    }
    if (sub.held === 0) this.#flush(sub)
  }

  /** Hands waiting messages to the sink in offset order; a gap or a new epoch starts recovery. */
  #flush (sub: Subscription): void {
    while (sub.pending.length > 0) {
      const next = sub.pending[0]
      const known = sub.epoch === next.epoch || (sub.epoch === null && sub.last === 0)
      if (known && next.offset <= sub.last) {
        sub.pending.shift()
        continue
      }
      if (!known || next.offset !== sub.last + 1) {
        this.#recover(sub)
        return
      }
      sub.pending.shift()
      sub.epoch = next.epoch
      sub.last = next.offset
      this.#emit(sub, next.tag === undefined ? { offset: next.offset, data: next.data } : { offset: next.offset, data: next.data, tag: next.tag })
    }
  }

  /**
   * Brings one key up to date from Redis: the key's state says where its offsets
   * are; history fills the gap since the last delivered offset; where history does
   * not cover the gap, or the epoch changed, the sink hears `lost` and delivery
   * resumes after the current offset. Live messages wait meanwhile.
   */
  #recover (sub: Subscription): void {
    sub.held++
    const run = async (): Promise<void> => {
      // Not before the subscriber connection is back too (it may return after the command connection):
      // a key is reported lost, and its sockets told to resubscribe, only once subscribing works again.
      await this.#command('recover', async () => {}, this.#subscriber)
      let rounds = 0
      let gap = false
      do {
        // Live messages after a fresh read follow it without a gap; one that still does not is a loss.
        if (++rounds > 3) {
          this.#lost(sub, sub.pending[0].offset - 1, sub.pending[0].epoch)
          break
        }
        const state = await this.#state(sub.base)
        if (state.epoch !== sub.epoch && !(sub.epoch === null && sub.last === 0)) {
          this.#lost(sub, state.offset, state.epoch)
        } else if (state.offset > sub.last) {
          const from = sub.last + 1
          const entries = await this.#command('recover', (redis) =>
            redis.xrange(sub.base + ':h', `${from}-1`, `${state.offset}-1`, 'COUNT', state.offset - sub.last))
          sub.epoch = state.epoch
          const missed = entries.map(toEntry)
          // Ids are offsets and the range is bounded by both ends: the right count means no hole.
          if (missed.length !== state.offset - sub.last) {
            this.#lost(sub, state.offset, state.epoch)
          } else {
            for (const entry of missed) {
              sub.last = entry.offset
              this.#emit(sub, entry)
            }
          }
        }
        sub.pending = sub.pending.filter((message) => message.epoch === sub.epoch && message.offset > sub.last)
        sub.pending.sort((a, b) => a.offset - b.offset)
        gap = sub.pending.length > 0 && sub.pending[0].offset !== sub.last + 1
      } while (gap)
    }
    sub.recovery = sub.recovery.then(run).then(() => {
      sub.held--
      this.#flush(sub)
    }, () => {
      // Redis went away again: the next reconnect retries.
      sub.held--
    })
  }

  #lost (sub: Subscription, offset: number, epoch: string | null): void {
    sub.last = offset
    sub.epoch = epoch
    this.#emit(sub, offset)
  }

  /** To the sink, while the key is still subscribed (a recovery may outlast the subscription). */
  #emit (sub: Subscription, what: BrokerEntry | number): void {
    if (this.#subscriptions.get(sub.channel) !== sub) return
    const sink = this.#sink as BrokerSink
    if (typeof what === 'number') sink.lost(sub.topic, sub.key, what)
    else sink.deliver(sub.topic, sub.key, what)
  }

  #recoverAll (): void {
    for (const sub of this.#subscriptions.values()) this.#recover(sub)
  }

  /** The command connection is back: leases and members first (Redis may have restarted empty), then every key. */
  #commandsBack (): void {
    const redis = this.#commands as Redis
    const batch = redis.multi()
    for (const [name, { ttl }] of this.#leases) batch.set(this.#leaseKey(name), '1', 'PX', ttl)
    for (const member of this.#members.values()) batch.hset(member.base + ':p', member.id, this.#node + ' ' + member.data)
    batch.exec().catch(() => {})
    this.#recoverAll()
  }

  /** The subscriber connection is back: its channels again, then whatever was published meanwhile. */
  #subscriberBack (): void {
    const channels = [...this.#subscriptions.keys()]
    if (channels.length === 0) return
    ;(this.#subscriber as Redis).subscribe(...channels).then(() => this.#recoverAll(), () => {})
  }
}

function toEntry ([id, fields]: [string, string[]]): BrokerEntry {
  return { offset: Number(id.slice(0, id.indexOf('-'))), data: fields[1] }
}

/**
 * A broker on Redis: offsets, history and presence live in Redis, so every node
 * sees one order per key and a client can resume on any node.
 * @example await app.register(fastifyTypedWebsocket, { broker: redisBroker({ client: app.redis }) })
 */
export function redisBroker (options: RedisBrokerOptions): Broker {
  if (options === null || typeof options !== 'object' || options.client === null || typeof options.client?.duplicate !== 'function') {
    throw new FST_WS_INVALID_OPTION('redisBroker', 'client must be an ioredis client')
  }
  if (options.prefix !== undefined && typeof options.prefix !== 'string') {
    throw new FST_WS_INVALID_OPTION('redisBroker', 'prefix must be a string')
  }
  const timeout = options.brokerTimeout
  if (timeout !== undefined && (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout <= 0)) {
    throw new FST_WS_INVALID_OPTION('redisBroker', 'brokerTimeout must be a positive integer of milliseconds')
  }
  return new RedisBroker(options)
}

/** Runs a script by its hash, loading it once when Redis does not know it (after a restart or a SCRIPT FLUSH). */
async function evalScript (redis: Redis, sha: string, script: string, args: Array<string | number>): Promise<unknown> {
  try {
    return await redis.call('EVALSHA', sha, ...args)
  } catch (err) {
    if (!String((err as Error).message).startsWith('NOSCRIPT')) throw err
    return await redis.call('EVAL', script, ...args)
  }
}
