'use strict'

// A small chat server: log in, pick a room, talk. The page uses fastify-typed-websocket/client.
//
//   npm start                      # http://127.0.0.1:3000/
//   PORT=8080 HOST=0.0.0.0 npm start
//
// What it shows:
// - a token checked in `preValidation`, before the WebSocket upgrade. Browsers cannot set
//   headers on a WebSocket, so the page passes it as `?token=` (URLs end up in logs: keep
//   such tokens short-lived);
// - rooms (`/chat/:room`) with presence (who is here, who is typing);
// - typed messages: every inbound frame is validated against `ClientMessage`, every object
//   passed to `socket.send()` is serialized from `ServerMessage`;
// - bad input answered with an `error` message (the `invalidMessage` hook) instead of a close;
// - `heartbeat: true`: the route answers the client's heartbeat, so the page notices a dead link;
// - resuming: the page reconnects with `?since=<last id seen>` and gets only what it missed;
// - a custom close code: 4001 `token expired` when the token's lifetime is over.

const { readFileSync } = require('node:fs')
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

const ServerMessage = Type.Union([
  Type.Object({
    type: Type.Literal('said'),
    id: Type.Integer(),
    from: Type.String(),
    text: Type.String(),
    at: Type.Number()
  }),
  Type.Object({
    type: Type.Literal('presence'),
    room: Type.String(),
    users: Type.Array(Type.Object({ name: Type.String(), typing: Type.Boolean() }))
  }),
  Type.Object({ type: Type.Literal('error'), message: Type.String() })
])

/** What the route spreads into its `websocket` option and the page passes to `connect()`. */
const chat = { inbound: ClientMessage, outbound: ServerMessage }

const Name = Type.String({ minLength: 1, maxLength: 32, pattern: '^[\\w .-]+$' })
const RoomName = Type.String({ minLength: 1, maxLength: 32, pattern: '^[\\w-]+$' })

const TOKEN_EXPIRED = 4001 // application close codes live in 4000-4999
const TYPING_MS = 3000 // how long a `typing` message keeps the indicator on
const HISTORY = 50 // messages kept per room for replay after a reconnect

const page = readFileSync(join(__dirname, 'public', 'index.html'))
const script = readFileSync(join(__dirname, 'public', 'app.js'))
const icon = readFileSync(join(__dirname, 'public', 'favicon.svg'))
// the client's ES module, as built into the package
const clientModule = readFileSync(join(dirname(require.resolve('fastify-typed-websocket/package.json')), 'dist', 'client', 'index.mjs'))

// A token is `<payload>.<signature>`: the payload (name and expiry) signed with HMAC-SHA256.
// Nothing is stored on the server, so a restarted server with the same secret accepts it.
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
 * @param {string} [options.secret] key that signs tokens (default: random, so tokens die with the process)
 * @param {number} [options.heartbeatIntervalMs] how often the page sends a heartbeat (default 10 s)
 * @param {number} [options.heartbeatTimeoutMs] how long the page waits for its answer (default 5 s)
 * @param {boolean|object} [options.logger] Fastify logger option
 */
async function buildChatServer (options = {}) {
  const {
    tokenTtlMs = 60 * 60 * 1000,
    secret = randomBytes(32).toString('base64url'),
    heartbeatIntervalMs = 10_000,
    heartbeatTimeoutMs = 5_000,
    logger = false
  } = options

  // forceCloseConnections: a tab's idle keep-alive connection must not hold up shutdown
  const app = Fastify({ logger, forceCloseConnections: true })
  // awaited, so that the routes below see the plugin's `websocket` route option
  await app.register(fastifyTypedWebsocket)
  // the AsyncAPI document of the routes below, and its page, at /asyncapi
  await app.register(fastifyTypedWebsocketAsyncapi, {
    info: { title: 'Chat', version: '1.0.0', description: 'Rooms, presence and typed messages over one WebSocket per room.' }
  })

  /**
   * room name -> { members: Map<socket, { name, typingUntil }>, history: said[], lastId }
   * (in memory: a room that has history is kept after everybody left)
   */
  const rooms = new Map()

  // --- the page -------------------------------------------------------------------------

  app.get('/', (request, reply) => reply.type('text/html; charset=utf-8').send(page))
  app.get('/app.js', (request, reply) => reply.type('text/javascript; charset=utf-8').send(script))
  app.get('/client.mjs', (request, reply) => reply.type('text/javascript; charset=utf-8').send(clientModule))
  app.get('/favicon.ico', (request, reply) => reply.type('image/svg+xml').send(icon))
  app.get('/config.json', () => ({ heartbeatIntervalMs, heartbeatTimeoutMs }))

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
  }
  app.decorateRequest('session', null)

  // --- rooms ----------------------------------------------------------------------------

  function roomOf (socket) {
    const name = socket.request.params.room
    let room = rooms.get(name)
    if (room === undefined) {
      room = { members: new Map(), history: [], lastId: 0 }
      rooms.set(name, room)
    }
    return room
  }

  function broadcast (room, message) {
    for (const socket of room.members.keys()) {
      if (socket.isOpen) socket.send(message)
    }
  }

  function broadcastPresence (room, roomName) {
    const now = Date.now()
    const users = new Map() // one entry per name, even with several tabs open
    for (const { name, typingUntil } of room.members.values()) {
      users.set(name, (users.get(name) ?? false) || typingUntil > now)
    }
    broadcast(room, {
      type: 'presence',
      room: roomName,
      users: [...users].map(([name, typing]) => ({ name, typing })).sort((a, b) => a.name.localeCompare(b.name))
    })
  }

  /** per-connection timers, cleared in `close` */
  const timers = new WeakMap()

  app.get('/chat/:room', {
    schema: {
      params: Type.Object({ room: RoomName }),
      querystring: Type.Object({ token: Type.String(), since: Type.Optional(Type.Integer({ minimum: 0 })) })
    },
    preValidation: authenticate,
    websocket: {
      ...chat,
      heartbeat: true,

      async message (socket, msg) {
        const room = roomOf(socket)
        const roomName = socket.request.params.room
        const member = room.members.get(socket)

        if (msg.type === 'typing') {
          member.typingUntil = Date.now() + TYPING_MS
          broadcastPresence(room, roomName)
          const state = timers.get(socket)
          clearTimeout(state.typing)
          state.typing = setTimeout(() => broadcastPresence(room, roomName), TYPING_MS + 10)
        } else if (msg.type === 'say') {
          const said = { type: 'said', id: ++room.lastId, from: member.name, text: msg.text, at: Date.now() }
          room.history.push(said)
          if (room.history.length > HISTORY) room.history.shift()
          const wasTyping = member.typingUntil > Date.now()
          member.typingUntil = 0
          broadcast(room, said)
          if (wasTyping) broadcastPresence(room, roomName)
        }
      },

      // Not JSON, or not a valid ClientMessage: tell the client and keep the connection.
      async invalidMessage (socket, err) {
        await socket.send({ type: 'error', message: `invalid message: ${err.message}` })
      },

      close (socket) {
        const state = timers.get(socket)
        clearTimeout(state.expiry)
        clearTimeout(state.typing)
        const roomName = socket.request.params.room
        const room = rooms.get(roomName)
        if (room !== undefined && room.members.delete(socket)) {
          if (room.members.size === 0 && room.history.length === 0) rooms.delete(roomName)
          else broadcastPresence(room, roomName)
        }
      }
    }
  }, async function open (socket, request) {
    // the route handler is the connection's `open`: schedule the 4001 close for when the token expires
    const expiry = setTimeout(() => socket.close(TOKEN_EXPIRED, 'token expired'),
      request.session.expiresAt - Date.now())
    timers.set(socket, { expiry, typing: undefined })
    // replay what this page missed (all of the history on a first visit), then join
    const room = roomOf(socket)
    const since = request.query.since ?? 0
    for (const said of room.history) {
      if (said.id > since) await socket.send(said)
    }
    room.members.set(socket, { name: request.session.name, typingUntil: 0 })
    broadcastPresence(room, request.params.room)
  })

  return app
}

module.exports = { buildChatServer, chat, ClientMessage, ServerMessage, TOKEN_EXPIRED }

if (require.main === module) {
  const port = Number(process.env.PORT ?? 3000)
  const host = process.env.HOST ?? '127.0.0.1'
  buildChatServer({ secret: process.env.CHAT_SECRET }).then(async (app) => {
    await app.listen({ port, host })
    console.log(`chat server listening on http://${host.includes(':') ? `[${host}]` : host}:${port}/`)
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
    console.error(err)
    process.exit(1)
  })
}
