'use strict'

// A small chat server: log in, pick a room, talk. The page uses fastify-typed-websocket/client.
//
//   npm start                      # http://127.0.0.1:3000/
//   PORT=8080 HOST=0.0.0.0 npm start
//   REDIS_URL=redis://127.0.0.1:6379 PORT=3000 npm start   # several nodes on one Redis
//
// What it shows:
// - a token checked in `preValidation`, before the WebSocket upgrade. Browsers cannot set
//   headers on a WebSocket, so the page passes it as `?token=` (URLs end up in logs: keep
//   such tokens short-lived);
// - rooms on topics: a room is a key of the `rooms` topic, every message gets its `id` from
//   the topic (`offsetField`), the room's recent history comes from `history`, and a page that
//   reconnects with `?since=<last id seen>` gets only what it missed (`subscribe` with `since`);
// - presence from the topic (`presence`), announced on a second topic, `room-events`, that also
//   carries who is typing;
// - typed messages: every inbound frame is validated against `ClientMessage`, every object
//   passed to `socket.send()` is serialized from `ServerMessage`;
// - bad input answered with an `error` message (the `invalidMessage` hook) instead of a close;
// - typed calls beside the messages (`requests`, JSON-RPC 2.0): `history` loads older messages,
//   `join` asks whether another room has room, answered with the app error `room_full` when
//   it has not; an error answer never closes the connection;
// - `heartbeat: true`: the route answers the client's heartbeat, so the page notices a dead link;
// - a custom close code: 4001 `token expired` when the token's lifetime is over;
// - the same app on several nodes: with `REDIS_URL`, the topics use `redisBroker` on
//   `@fastify/redis`, so rooms, history and presence are shared by every node.

const { readFileSync, writeFileSync } = require('node:fs')
const { dirname, join } = require('node:path')
const { createHmac, randomBytes, timingSafeEqual } = require('node:crypto')
const Fastify = require('fastify')
const { Type } = require('@sinclair/typebox')
const { fastifyTypedWebsocket } = require('fastify-typed-websocket')
const { fastifyTypedWebsocketAsyncapi } = require('fastify-typed-websocket/asyncapi')

// --- message schemas --------------------------------------------------------------------

const ClientMessage = Type.Union([
  Type.Object({ type: Type.Literal('say'), text: Type.String({ minLength: 1, maxLength: 500 }) }),
  Type.Object({ type: Type.Literal('typing') })
])

const Members = Type.Array(Type.Object({ name: Type.String() }))

/** A message in a room; `id` is its offset in the room, set by the `rooms` topic. */
const Said = Type.Object({
  type: Type.Literal('said'),
  id: Type.Integer(),
  from: Type.String(),
  text: Type.String(),
  at: Type.Number()
})
/** The names in the room, one entry per name however many tabs it has open. */
const Presence = Type.Object({
  type: Type.Literal('presence'),
  room: Type.String(),
  users: Members
})
const Typing = Type.Object({ type: Type.Literal('typing'), name: Type.String() })

const ServerMessage = Type.Union([
  Said,
  Presence,
  Typing,
  // the server no longer has what the page missed (history too short, or a restart that lost it):
  // the room's recent messages follow
  Type.Object({ type: Type.Literal('reset') }),
  Type.Object({ type: Type.Literal('error'), message: Type.String() })
])

const Name = Type.String({ minLength: 1, maxLength: 32, pattern: '^[\\w .-]+$' })
const RoomName = Type.String({ minLength: 1, maxLength: 32, pattern: '^[\\w-]+$' })
/** What the page may ask the server, beside its messages. */
const requests = {
  /** Up to `limit` messages of `room` older than the id `before` (without it, the latest), oldest first. */
  history: {
    params: Type.Object({
      room: RoomName,
      before: Type.Optional(Type.Integer({ minimum: 1 })),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 }))
    }),
    result: Type.Array(Said)
  },
  /** Whether `room` has room for the caller, and who is in it; the page asks before it moves there. */
  join: {
    params: Type.Object({ room: RoomName }),
    result: Type.Object({ room: Type.String(), members: Members }),
    errors: { room_full: Type.Object({ capacity: Type.Integer() }) }
  }
}

/** What the route spreads into its `websocket` option and the page passes to `connect()`. */
const chat = { inbound: ClientMessage, outbound: ServerMessage, requests }

const TOKEN_EXPIRED = 4001 // application close codes live in 4000-4999
const HISTORY = 100 // messages the `rooms` topic keeps per room, for pages that reconnect
const RECENT = 50 // messages shown to a page that joins a room afresh
const OLDER = 50 // messages a `history` call returns when it does not say how many

const page = readFileSync(join(__dirname, 'public', 'index.html'))
const script = readFileSync(join(__dirname, 'public', 'app.js'))
const icon = readFileSync(join(__dirname, 'public', 'favicon.svg'))
// the client's ES module, as built into the package
const clientModule = readFileSync(join(dirname(require.resolve('fastify-typed-websocket/package.json')), 'dist', 'client', 'index.mjs'))

// A token is `<payload>.<signature>`: the payload (name and expiry) signed with HMAC-SHA256.
// Nothing is stored on the server, so a restarted server with the same secret accepts it.

/** The signing key kept in `file`; a new random one, written there, when it has none. */
function keptSecret (file) {
  try {
    const kept = readFileSync(file, 'utf8').trim()
    if (kept !== '') return kept
  } catch (err) {
    if (err.code !== 'ENOENT') throw err
  }
  const secret = randomBytes(32).toString('base64url')
  // 'wx': two processes started at once must not overwrite each other's key
  try {
    writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if (err.code === 'EEXIST') return keptSecret(file)
    throw err
  }
  return secret
}
function signToken (secret, name, expiresAt) {
  const payload = Buffer.from(JSON.stringify({ name, expiresAt })).toString('base64url')
  return `${payload}.${createHmac('sha256', secret).update(payload).digest('base64url')}`
}

/** @returns {{ name: string, expiresAt: number } | null} */
function verifyToken (secret, token) {
  if (typeof token !== 'string') return null
  const [payload, signature = ''] = token.split('.')
  const expected = createHmac('sha256', secret).update(payload).digest()
  const given = Buffer.from(signature, 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null
  const session = JSON.parse(Buffer.from(payload, 'base64url').toString())
  return session.expiresAt > Date.now() ? session : null
}

/**
 * Builds the chat app without listening, so that tests can start it on any port.
 * @param {object} [options]
 * @param {number} [options.tokenTtlMs] lifetime of a login token (default 1 hour)
 * @param {string} [options.secret] key that signs tokens (default: with `redisUrl`, one random key
 *   kept in Redis and shared by every node; else the key in `secretFile`; else random, so tokens
 *   die with the process)
 * @param {string} [options.secretFile] a file that keeps the signing key across restarts, created
 *   with a random key when missing (`npm start` uses `examples/chat/.chat-secret`)
 * @param {string} [options.redisUrl] Redis for several nodes (default: none, rooms in memory)
 * @param {number} [options.presenceTtlMs] how long a dead node's members stay listed (default 15 s)
 * @param {number} [options.presenceRefreshMs] how often each node re-sends the members of its rooms (default 5 s)
 * @param {number} [options.heartbeatIntervalMs] how often the page sends a heartbeat (default 10 s)
 * @param {number} [options.heartbeatTimeoutMs] how long the page waits for its answer (default 5 s)
 * @param {number} [options.roomCapacity] names a room holds at most (default 100)
 * @param {boolean|object} [options.logger] Fastify logger option
 */
async function buildChatServer (options = {}) {
  const {
    tokenTtlMs = 60 * 60 * 1000,
    redisUrl,
    presenceTtlMs = 15_000,
    presenceRefreshMs = 5_000,
    heartbeatIntervalMs = 10_000,
    heartbeatTimeoutMs = 5_000,
    roomCapacity = 100,
    logger = false
  } = options

  // forceCloseConnections: a tab's idle keep-alive connection must not hold up shutdown
  const app = Fastify({ logger, forceCloseConnections: true })
  let secret = options.secret
  if (redisUrl === undefined) {
    // awaited, so that the routes below see the plugin's `websocket` route option
    await app.register(fastifyTypedWebsocket)
  } else {
    // Several nodes: the topics live in Redis. `@fastify/redis` decorates `app.redis`, which
    // the broker duplicates for its own two connections.
    const fastifyRedis = require('@fastify/redis')
    const { redisBroker } = require('fastify-typed-websocket/redis')
    await app.register(fastifyRedis, { url: redisUrl })
    // ioredis reconnects by itself; without a listener it would print every failed attempt
    app.redis.on('error', (err) => app.log.debug({ err }, 'redis unreachable'))
    await app.register(fastifyTypedWebsocket, { broker: redisBroker({ client: app.redis }) })
    if (secret === undefined) {
      // every node must accept the tokens of every other: the first node picks the key
      await app.redis.set('chat:secret', randomBytes(32).toString('base64url'), 'NX')
      secret = await app.redis.get('chat:secret')
      // a Redis that comes back empty gets the key again, for nodes started after that
      app.redis.on('ready', () => { app.redis.set('chat:secret', secret, 'NX').catch(() => {}) })
    }
  }
  if (secret === undefined && options.secretFile !== undefined) secret = keptSecret(options.secretFile)
  secret ??= randomBytes(32).toString('base64url')
  // In memory, a restarted process numbers every room from 1 again: a page's `since` from the
  // process before means nothing here, even when it happens to match an id. The page sends the
  // epoch it last saw (from /config.json) with `since`. On Redis, ids outlive the nodes.
  const epoch = redisUrl === undefined ? randomBytes(9).toString('base64url') : undefined
  // the AsyncAPI document of the routes below, and its page, at /asyncapi
  await app.register(fastifyTypedWebsocketAsyncapi, {
    info: { title: 'Chat', version: '1.0.0', description: 'Rooms, presence and typed messages over one WebSocket per room.' }
  })

  // A room is a key of `rooms`: its messages, numbered by the topic, and its members.
  const rooms = app.websocketTopic('rooms', {
    message: Said,
    history: HISTORY,
    offsetField: 'id',
    presence: Type.Object({ name: Type.String() }),
    presenceTtl: presenceTtlMs
  })
  // What is not worth keeping: who is here, who is typing.
  const roomEvents = app.websocketTopic('room-events', { message: Type.Union([Presence, Typing]) })

  // --- the page -------------------------------------------------------------------------

  app.get('/', (request, reply) => reply.type('text/html; charset=utf-8').send(page))
  app.get('/app.js', (request, reply) => reply.type('text/javascript; charset=utf-8').send(script))
  app.get('/client.mjs', (request, reply) => reply.type('text/javascript; charset=utf-8').send(clientModule))
  app.get('/favicon.ico', (request, reply) => reply.type('image/svg+xml').send(icon))
  app.get('/config.json', () => ({ heartbeatIntervalMs, heartbeatTimeoutMs, epoch }))

  // --- login: a name in, a short-lived token out ------------------------------------------

  app.post('/login', {
    schema: { body: Type.Object({ name: Name }) },
    // the page shows this message as it is: say what a name may be, not which pattern failed
    errorHandler (error, request, reply) {
      if (error.validation === undefined) throw error
      reply.code(400).send({
        error: 'Bad Request',
        message: 'A name is 1 to 32 letters, digits, spaces, dots, dashes or underscores.'
      })
    }
  }, async (request) => {
    const { name } = request.body
    const expiresAt = Date.now() + tokenTtlMs
    return { token: signToken(secret, name, expiresAt), name, expiresAt }
  })

  // Runs before the upgrade: replying here answers the handshake with plain HTTP (401),
  // and no WebSocket is ever opened.
  async function authenticate (request, reply) {
    const session = verifyToken(secret, request.query.token)
    if (session === null) {
      return reply.code(401).send({ error: 'Unauthorized', message: 'invalid or expired token' })
    }
    request.session = session
    // a full room is refused before the upgrade too, so a page cannot walk in past `join`
    if (await isFull(request.params.room, session.name)) {
      return reply.code(409).send({ error: 'Conflict', message: 'the room is full' })
    }
  }
  app.decorateRequest('session', null)

  // --- rooms ----------------------------------------------------------------------------

  async function membersOf (room) {
    const names = new Set((await rooms.presence(room)).map((member) => member.name))
    return [...names].sort((a, b) => a.localeCompare(b)).map((name) => ({ name }))
  }

  /** Whether `room` has `roomCapacity` names in it and `name` is not one of them. */
  async function isFull (room, name) {
    // Redis away: let the page in, as the rest of the room would
    const members = await membersOf(room).catch(() => [])
    return members.length >= roomCapacity && !members.some((member) => member.name === name)
  }

  // Tells every node's subscribers who is in `room` now; calls made while one is under way
  // are folded into one more run after it.
  const announcing = new Map() // room -> { again }
  let closing = false
  function announce (room) {
    const running = announcing.get(room)
    if (running !== undefined) {
      running.again = true
      return
    }
    const state = { again: false }
    announcing.set(room, state)
    ;(async () => {
      do {
        state.again = false
        await roomEvents.publish(room, { type: 'presence', room, users: await membersOf(room) })
      } while (state.again)
    })().catch((err) => {
      if (!closing) app.log.warn({ err, room }, 'presence not announced')
    }).finally(() => announcing.delete(room))
  }

  /** room -> sockets of this node in it */
  const localRooms = new Map()
  // Each node re-sends the members of the rooms it serves to its own sockets now and then:
  // the members of a node that died drop out (within `presenceTtlMs`), and an announcement
  // that lost a race with another node's is corrected.
  const refresh = setInterval(async () => {
    for (const room of localRooms.keys()) {
      try {
        const message = { type: 'presence', room, users: await membersOf(room) }
        for (const socket of roomEvents.subscribers(room)) if (socket.isOpen) socket.send(message).catch(() => {})
      } catch (err) {
        if (!closing) app.log.warn({ err, room }, 'presence not refreshed')
      }
    }
  }, presenceRefreshMs).unref()
  app.addHook('preClose', async () => {
    closing = true
    clearInterval(refresh)
  })

  /**
   * Subscribes the socket to its room. A page that comes back with `since` gets what it
   * missed (`recovered`); otherwise it gets the room's recent history, then the live messages.
   */
  async function join (socket, room, since, member, sameEpoch) {
    if (since !== undefined && sameEpoch) {
      const { recovered } = await rooms.subscribe(socket, room, { since, presence: member })
      if (recovered) return
      // too far behind, or the room's past is gone: start again from the recent history
      await rooms.unsubscribe(socket, room)
    }
    if (since !== undefined) await socket.send({ type: 'reset' })
    const recent = await rooms.history(room, { limit: RECENT })
    for (const { message } of recent) await socket.send(message)
    // `since` the last one sent: whatever was published meanwhile is replayed, in order
    await rooms.subscribe(socket, room, { since: recent.at(-1)?.offset ?? 0, presence: member })
  }

  /** per-connection expiry timers, cleared in `close` */
  const timers = new WeakMap()

  app.get('/chat/:room', {
    schema: {
      params: Type.Object({ room: RoomName }),
      querystring: Type.Object({
        token: Type.String(),
        since: Type.Optional(Type.Integer({ minimum: 0 })),
        // the server's epoch that `since` belongs to (see /config.json)
        epoch: Type.Optional(Type.String({ maxLength: 32 }))
      })
    },
    preValidation: authenticate,
    websocket: {
      ...chat,
      heartbeat: true,

      async message (socket, msg) {
        const room = socket.request.params.room
        const name = socket.request.session.name
        try {
          if (msg.type === 'typing') {
            await roomEvents.publish(room, { type: 'typing', name }, { except: socket })
          } else if (msg.type === 'say') {
            // the topic sets `id`, and delivers the message to everyone in the room, on every node
            await rooms.publish(room, { type: 'said', from: name, text: msg.text, at: Date.now() })
          }
        } catch (err) {
          if (err.code !== 'FST_WS_BROKER_UNAVAILABLE') throw err
          if (msg.type === 'say') await socket.send({ type: 'error', message: 'Your message was not sent: the server cannot reach the other nodes. Try again.' })
        }
      },

      // The calls of `requests`: whatever a handler throws is answered, the connection stays open.
      handlers: {
        async history (socket, { room, before, limit = OLDER }) {
          // the topic keeps the last HISTORY messages of a room: look through them all
          const kept = await rooms.history(room)
          return kept.filter((entry) => before === undefined || entry.offset < before).slice(-limit).map((entry) => entry.message)
        },
        async join (socket, { room }) {
          if (await isFull(room, socket.request.session.name)) {
            throw socket.requestError('room_full', { capacity: roomCapacity }, `${room} is full`)
          }
          return { room, members: await membersOf(room) }
        }
      },

      // Not JSON, or not a valid ClientMessage: tell the client and keep the connection.
      async invalidMessage (socket, err) {
        await socket.send({ type: 'error', message: `invalid message: ${err.message}` })
      },

      async close (socket) {
        clearTimeout(timers.get(socket))
        const room = socket.request.params.room
        const sockets = localRooms.get(room)
        if (sockets?.delete(socket) && sockets.size === 0) localRooms.delete(room)
        // leave first (the socket would leave by itself), so that the members read next are without it
        await rooms.unsubscribe(socket, room).catch(() => {})
        announce(room)
      }
    }
  }, async function open (socket, request) {
    // the route handler is the connection's `open`: schedule the 4001 close for when the token expires
    timers.set(socket, setTimeout(() => socket.close(TOKEN_EXPIRED, 'token expired'),
      request.session.expiresAt - Date.now()))
    const room = request.params.room
    await roomEvents.subscribe(socket, room)
    const sameEpoch = epoch === undefined || request.query.epoch === epoch
    await join(socket, room, request.query.since, { name: request.session.name }, sameEpoch)
    let sockets = localRooms.get(room)
    if (sockets === undefined) localRooms.set(room, sockets = new Set())
    sockets.add(socket)
    announce(room)
  })

  return app
}

module.exports = { buildChatServer, chat, ClientMessage, ServerMessage, Said, TOKEN_EXPIRED }

if (require.main === module) {
  const port = Number(process.env.PORT ?? 3000)
  const host = process.env.HOST ?? '127.0.0.1'
  const redisUrl = process.env.REDIS_URL || undefined
  // The signing key outlives the process, so a restart logs nobody out.
  const secretFile = process.env.CHAT_SECRET_FILE || join(__dirname, '.chat-secret')
  buildChatServer({ secret: process.env.CHAT_SECRET || undefined, secretFile, redisUrl }).then(async (app) => {
    await app.listen({ port, host })
    // one line when Redis goes away and one when it is back, not one per reconnect attempt
    let down = false
    app.redis?.on('error', (err) => {
      if (!down) console.error(`redis unreachable (${err.message}); messages are refused until it is back`)
      down = true
    })
    app.redis?.on('ready', () => {
      if (down) console.error('redis is back')
      down = false
    })
    console.log(`chat server listening on http://${host.includes(':') ? `[${host}]` : host}:${port}/` +
      (redisUrl === undefined ? ' (rooms in memory)' : ` (rooms on Redis at ${redisUrl.replace(/\/\/[^@/]*@/, '//')})`))
    // open sockets are closed with 1001 `server shutting down`; pages reconnect to the next server.
    // A second Ctrl-C, or a close that takes longer than 3 s, exits at once.
    for (const signal of ['SIGINT', 'SIGTERM']) {
      process.on(signal, () => {
        if (app.server.listening === false) process.exit(1)
        setTimeout(() => process.exit(1), 3000).unref()
        app.close().then(() => process.exit(0), () => process.exit(1))
      })
    }
  }).catch((err) => {
    if (err.code === 'EADDRINUSE') {
      console.error(`Port ${port} on ${host} is already in use (another copy of this example, or another server). ` +
        `Set PORT to a free one, e.g. PORT=${port + 1} npm start`)
    } else {
      console.error(err)
    }
    process.exit(1)
  })
}
