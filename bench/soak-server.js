'use strict'
// One node of the soak run (bench/soak.js): the built plugin on redisBroker, a room topic with
// history and presence, a per-connection inbox topic, a heartbeat route, a publishing loop, and
// /stats, which reports this process's memory, descriptors, handles and the plugin's maps.
// Run with --expose-gc: /stats collects garbage first, so heap figures compare. Prints
// `listening <port>` once ready.
const { readdirSync } = require('node:fs')
const Fastify = require('fastify')
const Redis = require('ioredis')
const { Type } = require('@sinclair/typebox')
const typedWebsocket = require('../dist/plugin/index.js')
const { redisBroker } = require('../dist/plugin/redis.js')

const NAME = process.env.NAME
const ROOMS = Number(process.env.ROOMS)
const FLOOD_PAD = 'x'.repeat(Number(process.env.FLOOD_BYTES))
const PUBLISH_MS = Number(process.env.PUBLISH_MS)
const FLOOD_MS = Number(process.env.FLOOD_MS)
const HISTORY = Number(process.env.HISTORY)

const Said = Type.Object({ type: Type.Literal('said'), id: Type.Integer(), from: Type.String(), at: Type.Number(), pad: Type.String() })
const Hello = Type.Object({ type: Type.Literal('hello'), offset: Type.Integer(), recovered: Type.Boolean() })
const Note = Type.Object({ type: Type.Literal('note'), text: Type.String() })
const Member = Type.Object({ name: Type.String() })
const Query = Type.Object({ since: Type.Optional(Type.Integer({ minimum: 0 })), name: Type.String(), id: Type.String() })

const keys = [...Array.from({ length: ROOMS }, (_, i) => `room-${i}`), 'flood']
const closes = {}
// Close codes of the dead readers (ids starting with `dead-`), until the driver asks for them.
const deadClosed = new Map()
const publishes = { ok: 0, failed: 0 }

async function main () {
  const client = new Redis(process.env.REDIS_URL, { connectionName: `soak-${NAME}` })
  client.on('error', () => {})
  const app = Fastify({ logger: { level: 'error', stream: process.stderr } })
  await app.register(typedWebsocket, {
    broker: redisBroker({ client, brokerTimeout: 2000 }),
    maxBufferedAmount: 256 * 1024,
    // Long enough that a reader that never reads is cut for its send buffer (about 30 s of the
    // flood key) before it would be for its missing pongs.
    pingInterval: 60_000,
    closeTimeout: 2000
  })
  const rooms = app.websocketTopic('rooms', { message: Said, history: HISTORY, offsetField: 'id', presence: Member, presenceTtl: 10_000 })
  const inbox = app.websocketTopic('inbox', { message: Note })

  const websocket = (heartbeat) => ({
    outbound: Type.Union([Said, Hello, Note]),
    heartbeat,
    close (socket, code, reason) {
      // What the server closed with, when it did (a dead reader never answers: its peer code is 1006).
      const label = socket.serverCloseCode === undefined
        ? `${code} ${reason}`.trim()
        : `${socket.serverCloseCode} ${socket.serverCloseReason}`.trim()
      closes[label] = (closes[label] ?? 0) + 1
      const id = socket.request.query.id
      if (id.startsWith('dead-')) deadClosed.set(id, label)
    }
  })
  async function handler (socket, request) {
    const { since, name, id } = request.query
    try {
      const { offset, recovered } = await rooms.subscribe(socket, request.params.room, { since, presence: { name } })
      // At once: live messages of the room follow right behind.
      socket.send({ type: 'hello', offset, recovered }).catch(() => {})
      await inbox.subscribe(socket, id)
    } catch (err) {
      // The plugin closes it with 1011; its close hook does not run, as open did not complete.
      if (id.startsWith('dead-')) deadClosed.set(id, `1011 open failed (${err.code ?? err.message})`)
      throw err
    }
  }
  const schema = { params: Type.Object({ room: Type.String() }), querystring: Query }
  app.get('/rooms/:room', { schema, websocket: websocket(false) }, handler)
  app.get('/beat/:room', { schema, websocket: websocket(true) }, handler)

  app.get('/stats', async () => {
    global.gc()
    const memory = process.memoryUsage()
    const resources = {}
    for (const type of process.getActiveResourcesInfo()) resources[type] = (resources[type] ?? 0) + 1
    let subscribers = 0
    for (const key of keys) subscribers += rooms.subscribers(key).size
    return {
      heap: memory.heapUsed,
      rss: memory.rss,
      fds: readdirSync('/proc/self/fd').length,
      resources,
      clients: app.websocketClients.size,
      subscribers,
      closes,
      publishes
    }
  })

  // The close codes of the given dead readers that are gone; each is reported once.
  app.get('/closed', async (request) => {
    const found = {}
    for (const id of String(request.query.ids ?? '').split(',')) {
      const label = deadClosed.get(id)
      if (label !== undefined) {
        found[id] = label
        deadClosed.delete(id)
      }
    }
    return found
  })

  app.get('/presence', async () => {
    let members = 0
    for (const key of keys) members += (await rooms.presence(key)).length
    return { members }
  })

  // `at` is taken just before publish: the driver compares it with the times Redis was killed.
  const publish = (key, pad) => {
    rooms.publish(key, { type: 'said', from: NAME, at: Date.now(), pad }).then(
      () => { publishes.ok++ },
      () => { publishes.failed++ })
  }
  const timers = []
  app.addHook('onClose', async () => { for (const timer of timers) clearInterval(timer) })

  await app.listen({ host: '127.0.0.1', port: 0 })
  timers.push(setInterval(() => { for (let i = 0; i < ROOMS; i++) publish(`room-${i}`, '') }, PUBLISH_MS))
  timers.push(setInterval(() => publish('flood', FLOOD_PAD), FLOOD_MS))
  process.stdout.write(`listening ${app.server.address().port}\n`)
  process.once('SIGTERM', () => {
    const force = setTimeout(() => process.exit(1), 5000)
    app.close().then(() => {
      clearTimeout(force)
      client.disconnect()
    })
  })
}

main().catch((err) => {
  process.stderr.write(String(err.stack) + '\n')
  process.exit(1)
})
