// Typed routes end to end: every text message is JSON checked against `inbound`;
// objects sent go out through `outbound` (docs/reference.md, "Route-only keys"; docs/lifecycle.md, "Typed messages").
import t from 'tap'
import { Type, type Static } from '@sinclair/typebox'
import WebSocket from 'ws'
import { startServer, connect, closed, messages, nextJson, sleep, until, connectWhatwg, whatwgClosed, type Closed, type TestServer } from './helpers/server'
import { whatwgMessages } from './helpers/whatwg'

const ClientMsg = Type.Union([
  Type.Object({ type: Type.Literal('say'), text: Type.String({ maxLength: 500 }) }),
  Type.Object({ type: Type.Literal('typing') }),
  Type.Object({ type: Type.Literal('move'), x: Type.Integer(), y: Type.Integer() })
])
const ServerMsg = Type.Union([
  Type.Object({ type: Type.Literal('said'), from: Type.String(), text: Type.String() }),
  Type.Object({ type: Type.Literal('moved'), x: Type.Integer(), y: Type.Integer() })
])
type ClientMessage = Static<typeof ClientMsg>

const Strict = Type.Object({
  text: Type.String({ maxLength: 10 }),
  n: Type.Optional(Type.Integer())
}, { additionalProperties: false })

function open (): void {}

/** Bytes of a close reason: at most 123 fit in a close frame. */
function bytes (text: string): number {
  return Buffer.byteLength(text, 'utf8')
}

/** The longest prefix of `text` that fits in 123 UTF-8 bytes without splitting a character. */
function cut (text: string): string {
  let out = ''
  for (const ch of text) {
    if (bytes(out + ch) > 123) break
    out += ch
  }
  return out
}

/** Connects, sends one text message, and resolves with how the server closed. */
async function closeFor (server: TestServer, path: string, data: string | Buffer): Promise<Closed> {
  const ws = await connect(server.url(path))
  const done = closed(ws)
  ws.send(data)
  return done
}

async function bye (ws: WebSocket): Promise<void> {
  const done = closed(ws)
  ws.close(1000)
  await done
}

/** The chat route of the contract: say → said (through outbound), move → moved. */
function chatRoute (seen: ClientMessage[], server: { closes?: Array<[number, string]> } = {}) {
  return (app: TestServer['app']): void => {
    app.get('/chat/:room', {
      websocket: {
        inbound: ClientMsg,
        outbound: ServerMsg,
        async message (socket, msg) {
          seen.push(msg)
          const { room } = socket.request.params as { room: string }
          if (msg.type === 'say') await socket.send({ type: 'said', from: room, text: msg.text })
          else if (msg.type === 'move') await socket.send({ type: 'moved', x: msg.x, y: msg.y })
        },
        close (_socket, code, reason) {
          server.closes?.push([code, reason])
        }
      }
    }, open)
  }
}

t.test('a valid message reaches message, typed, and is answered through outbound', async (t) => {
  const seen: ClientMessage[] = []
  const server = await startServer(t, chatRoute(seen))
  const ws = await connect(server.url('/chat/lobby'))
  const replies = messages(ws, 2)
  ws.send(JSON.stringify({ type: 'say', text: 'hi' }))
  ws.send(JSON.stringify({ type: 'typing' }))
  ws.send(JSON.stringify({ type: 'move', x: 3, y: -4 }))
  t.same(await replies, ['{"type":"said","from":"lobby","text":"hi"}', '{"type":"moved","x":3,"y":-4}'])
  t.strictSame(seen, [{ type: 'say', text: 'hi' }, { type: 'typing' }, { type: 'move', x: 3, y: -4 }])
  await bye(ws)
})

t.test('undici\'s WHATWG WebSocket: a valid message is answered, an invalid one closes 1007', async (t) => {
  const seen: ClientMessage[] = []
  const server = await startServer(t, chatRoute(seen))
  const ws = await connectWhatwg(server.url('/chat/whatwg'))
  const replies = whatwgMessages(ws, 1)
  ws.send(JSON.stringify({ type: 'say', text: 'héllo 👋 你好' }))
  t.strictSame((await replies).map(m => JSON.parse(m.toString())), [{ type: 'said', from: 'whatwg', text: 'héllo 👋 你好' }])
  const done = whatwgClosed(ws)
  ws.send(JSON.stringify({ type: 'say', text: 42 }))
  t.strictSame(await done, { code: 1007, reason: '/text must be string', wasClean: true })
  t.equal(seen.length, 1)

  const second = await connectWhatwg(server.url('/chat/whatwg'))
  const secondDone = whatwgClosed(second)
  second.send('{"type":')
  const { code, reason } = await secondDone
  t.equal(code, 1007)
  t.match(reason, /^invalid JSON/)
})

t.test('invalid JSON closes with 1007 and a reason starting "invalid JSON"', async (t) => {
  const seen: ClientMessage[] = []
  const closes: Array<[number, string]> = []
  const server = await startServer(t, chatRoute(seen, { closes }))
  for (const text of ['{', 'hello', '{"type":"say","text":"hi",}', '{\'type\':\'say\'}', 'x'.repeat(5000), '']) {
    const { code, reason } = await closeFor(server, '/chat/json', text)
    t.equal(code, 1007, JSON.stringify(text.slice(0, 30)))
    t.match(reason, /^invalid JSON/)
    t.ok(bytes(reason) <= 123, 'the reason fits in a close frame')
  }
  t.equal(seen.length, 0, 'message never ran')
  await until(() => closes.length === 6, 5000, 'the close hooks')
  t.ok(closes.every(([code]) => code === 1007), 'the close hook saw 1007')
})

t.test('schema violations close with 1007 and a reason naming the path and the rule', async (t) => {
  const seen: unknown[] = []
  const server = await startServer(t, (app) => {
    app.get('/strict', { websocket: { inbound: Strict, message (_socket, msg) { seen.push(msg) } } }, open)
    chatRoute([])(app)
  })
  const cases: Array<[string, unknown, string]> = [
    ['/strict', { text: 5 }, '/text must be string'],
    ['/strict', {}, '/text is required'],
    ['/strict', { text: 'hi', extra: true }, '/extra is not allowed'],
    ['/strict', { text: 'x'.repeat(11) }, '/text must NOT have more than 10 characters'],
    ['/strict', { text: 'hi', n: 1.5 }, '/n must be integer'],
    ['/strict', [{ text: 'hi' }], '/ must be object'],
    ['/strict', 'hi', '/ must be object'],
    ['/chat/r', { type: 'say', text: 5 }, '/text must be string'],
    ['/chat/r', { type: 'say' }, '/text is required'],
    ['/chat/r', { type: 'say', text: 'x'.repeat(501) }, '/text must NOT have more than 500 characters'],
    ['/chat/r', { type: 'move', x: 1, y: '2' }, '/y must be integer'],
    ['/chat/r', { type: 'shout', text: 'hi' }, '/ must match one of type="say", type="typing", type="move"']
  ]
  for (const [path, value, reason] of cases) {
    t.strictSame(await closeFor(server, path, JSON.stringify(value)), { code: 1007, reason }, `${path} ${JSON.stringify(value).slice(0, 40)}`)
  }
  t.equal(seen.length, 0)
})

t.test('a close reason is at most 123 bytes, cut at a character boundary', async (t) => {
  let deep: ReturnType<typeof Type.String> | ReturnType<typeof Type.Object> = Type.String()
  for (let i = 0; i < 50; i++) deep = Type.Object({ level: deep })
  const longName = 'property_'.repeat(30)
  const emojiName = '😀'.repeat(60)
  const cjkName = '键'.repeat(60)
  const server = await startServer(t, (app) => {
    app.get('/deep', { websocket: { inbound: deep, message () {} } }, open)
    app.get('/closed', { websocket: { inbound: Type.Object({}, { additionalProperties: false }), message () {} } }, open)
  })
  let value: unknown = 5
  for (let i = 0; i < 50; i++) value = { level: value }
  const deepReason = `${'/level'.repeat(50)} must be string`
  const cases: Array<[string, unknown, string]> = [
    ['/deep', value, deepReason],
    ['/closed', { [longName]: 1 }, `/${longName} is not allowed`],
    ['/closed', { [emojiName]: 1 }, `/${emojiName} is not allowed`],
    ['/closed', { [cjkName]: 1 }, `/${cjkName} is not allowed`]
  ]
  for (const [path, data, full] of cases) {
    t.ok(bytes(full) > 123, 'the full reason would not fit')
    const { code, reason } = await closeFor(server, path, JSON.stringify(data))
    t.equal(code, 1007)
    t.ok(bytes(reason) <= 123, `${bytes(reason)} bytes`)
    t.equal(reason, cut(full), 'the longest prefix that fits, whole characters only')
  }
  t.equal(cut(`/${emojiName} is not allowed`), `/${'😀'.repeat(30)}`, 'emoji are never split')
})

t.test('no coercion, no defaults, no removal: the handler sees the message as sent', async (t) => {
  const seen: unknown[] = []
  const server = await startServer(t, (app) => {
    app.get('/count', { websocket: { inbound: Type.Object({ n: Type.Integer() }), message (_socket, msg) { seen.push(msg) } } }, open)
    app.get('/loose', {
      websocket: {
        inbound: Type.Object({
          a: Type.String(),
          d: Type.Optional(Type.String({ default: 'filled' })),
          list: Type.Optional(Type.Array(Type.Number()))
        }),
        message (socket, msg) {
          seen.push(msg)
          return socket.send(JSON.stringify(msg))
        }
      }
    }, open)
  })
  t.strictSame(await closeFor(server, '/count', '{"n":"5"}'), { code: 1007, reason: '/n must be integer' }, '"5" is not an integer')
  t.strictSame(await closeFor(server, '/count', '{"n":true}'), { code: 1007, reason: '/n must be integer' })
  t.equal(seen.length, 0)

  const ws = await connect(server.url('/loose'))
  const sent = '{"a":"1","extra":{"deep":[1,null,"x"]},"list":[1.5,2]}'
  const echoed = messages(ws, 1)
  ws.send(sent)
  t.same(await echoed, [sent], 'nothing added, nothing removed, nothing converted')
  t.strictSame(seen, [{ a: '1', extra: { deep: [1, null, 'x'] }, list: [1.5, 2] }])
  t.notOk('d' in (seen[0] as object), 'no default filled in')
  await bye(ws)
})

t.test('unicode round-trips', async (t) => {
  const seen: ClientMessage[] = []
  const server = await startServer(t, (app) => {
    chatRoute(seen)(app)
    app.get('/three', {
      websocket: {
        inbound: Type.Object({ s: Type.String({ maxLength: 3 }) }),
        message (socket, msg) { return socket.send(msg) }
      }
    }, open)
  })
  const texts = ['👋', '你好，世界', 'héllo wörld', '𝄞 music', 'mixed 🎉 中文 ✓ \u0000 "quotes" \\ \n newline', '👨‍👩‍👧‍👦 family']
  const ws = await connect(server.url('/chat/ünï'))
  const replies = messages(ws, texts.length)
  for (const text of texts) ws.send(JSON.stringify({ type: 'say', text }))
  t.strictSame((await replies).map(r => JSON.parse(r.toString())), texts.map(text => ({ type: 'said', from: 'ünï', text })))
  t.strictSame(seen.map(m => (m as { text: string }).text), texts)
  await bye(ws)

  const three = await connect(server.url('/three'))
  const echoed = messages(three, 1)
  three.send(JSON.stringify({ s: '👋你好' }))
  t.strictSame(JSON.parse((await echoed)[0].toString()), { s: '👋你好' }, 'maxLength counts characters: 3, not 4 UTF-16 units')
  await bye(three)
  t.strictSame(await closeFor(server, '/three', JSON.stringify({ s: '👋你好!' })), { code: 1007, reason: '/s must NOT have more than 3 characters' })
})

t.test('binary frames', async (t) => {
  const seen: unknown[] = []
  const server = await startServer(t, (app) => {
    chatRoute([])(app)
    app.get('/binary', {
      websocket: {
        inbound: Type.Object({ type: Type.Literal('json') }),
        binary: true,
        message (socket, msg) {
          seen.push(msg)
          if (Buffer.isBuffer(msg)) return socket.send(Buffer.concat([Buffer.from('got:'), msg]))
          return socket.send({ echo: msg.type })
        }
      }
    }, open)
  })
  const refused = await closeFor(server, '/chat/bin', Buffer.from(JSON.stringify({ type: 'typing' })))
  t.equal(refused.code, 1003, 'a binary frame on a route with inbound closes 1003')

  const ws = await connect(server.url('/binary'))
  const replies = messages(ws, 2)
  ws.send(Buffer.from([0, 1, 2, 255]))
  ws.send('{"type":"json"}')
  const [first, second] = await replies
  t.ok(Buffer.isBuffer(first), 'binary back')
  t.strictSame(first, Buffer.concat([Buffer.from('got:'), Buffer.from([0, 1, 2, 255])]))
  t.equal(second, '{"echo":"json"}')
  t.ok(Buffer.isBuffer(seen[0]), 'message received a Buffer')
  t.strictSame(seen[1], { type: 'json' })
  const done = closed(ws)
  ws.send('{"type":"text"}')
  t.strictSame(await done, { code: 1007, reason: '/type must be equal to constant' }, 'text is still checked with binary: true')
})

t.test('a custom invalidMessage hook replies instead of closing; later messages go on, in order', async (t) => {
  const hookCalls: Array<{ isError: boolean, code: string, message: string, validation: unknown, errors: unknown, raw: string, thisOk: boolean }> = []
  const server = await startServer(t, (app) => {
    app.get('/tolerant', {
      websocket: {
        inbound: Type.Object({ n: Type.Integer() }, { additionalProperties: false }),
        outbound: Type.Union([
          Type.Object({ ok: Type.Integer() }),
          Type.Object({ error: Type.String() })
        ]),
        message (socket, msg) {
          return socket.send({ ok: msg.n })
        },
        invalidMessage (socket, err, raw) {
          hookCalls.push({
            isError: err instanceof Error,
            code: err.code,
            message: err.message,
            validation: err.validation,
            errors: err.errors,
            raw,
            thisOk: this === app
          })
          return socket.send({ error: err.message })
        }
      }
    }, open)
  })
  const ws = await connect(server.url('/tolerant'))
  const sent = ['not json', '{"n":1}', '{"n":"2"}', '{"n":3}', '{"n":4,"more":true}', '{"n":5}']
  const replies = messages(ws, sent.length)
  for (const text of sent) ws.send(text)
  const answers = (await replies).map(r => JSON.parse(r.toString()))
  t.equal(answers.length, 6)
  t.match(answers[0], { error: /^invalid JSON/ })
  t.strictSame(answers.slice(1), [{ ok: 1 }, { error: '/n must be integer' }, { ok: 3 }, { error: '/more is not allowed' }, { ok: 5 }])
  t.equal(ws.readyState, ws.OPEN, 'the connection stays open')

  t.equal(hookCalls.length, 3)
  t.match(hookCalls[0], { isError: true, code: 'FST_WS_INVALID_MESSAGE', message: /^invalid JSON/, validation: null, errors: null, raw: 'not json', thisOk: true })
  t.match(hookCalls[1], { isError: true, code: 'FST_WS_INVALID_MESSAGE', message: '/n must be integer', raw: '{"n":"2"}', thisOk: true })
  t.match(hookCalls[1].validation, [{ keyword: 'type', instancePath: '/n' }], 'ajv\'s errors')
  t.equal(hookCalls[1].errors, hookCalls[1].validation)
  t.match(hookCalls[2].validation, [{ keyword: 'additionalProperties', params: { additionalProperty: 'more' } }])
  t.equal(hookCalls[2].raw, '{"n":4,"more":true}')
  await bye(ws)
})

t.test('an async invalidMessage hook holds the queue like message does', async (t) => {
  const events: string[] = []
  const server = await startServer(t, (app) => {
    app.get('/slow-invalid', {
      websocket: {
        inbound: Type.Object({ n: Type.Integer() }),
        async message (socket, msg) {
          events.push(`message ${msg.n} start`)
          await sleep(20)
          events.push(`message ${msg.n} end`)
          await socket.send(`ok ${msg.n}`)
        },
        async invalidMessage (socket, _err, raw) {
          events.push(`invalid ${raw} start`)
          await sleep(100)
          events.push(`invalid ${raw} end`)
          await socket.send(`invalid ${raw}`)
        }
      }
    }, open)
  })
  const ws = await connect(server.url('/slow-invalid'))
  const replies = messages(ws, 4)
  for (const text of ['{"n":1}', 'bad', '{"n":2}', 'worse']) ws.send(text)
  t.same(await replies, ['ok 1', 'invalid bad', 'ok 2', 'invalid worse'])
  t.same(events, [
    'message 1 start', 'message 1 end',
    'invalid bad start', 'invalid bad end',
    'message 2 start', 'message 2 end',
    'invalid worse start', 'invalid worse end'
  ], 'one hook at a time, in arrival order')
  await bye(ws)
})

t.test('an invalidMessage hook that throws is a failed hook: close 1011', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/throws', {
      websocket: {
        inbound: Type.Object({ n: Type.Integer() }),
        message () {},
        invalidMessage () { throw new Error('hook broke') }
      }
    }, open)
    app.get('/rejects', {
      websocket: {
        inbound: Type.Object({ n: Type.Integer() }),
        message () {},
        async invalidMessage () { throw new Error('hook rejected') }
      }
    }, open)
  })
  t.strictSame(await closeFor(server, '/throws', 'bad'), { code: 1011, reason: 'internal error' })
  t.strictSame(await closeFor(server, '/rejects', 'bad'), { code: 1011, reason: 'internal error' })
  await until(() => server.logs.filter(l => l.level === 50).length >= 2, 5000, 'the errors to be logged')
  const logged = server.logs.filter(l => l.level === 50).map(l => (l.err as { message: string }).message)
  t.same(logged.sort(), ['hook broke', 'hook rejected'])
})

const PointSchema = {
  $id: 'Point',
  type: 'object',
  properties: { x: { type: 'integer' }, y: { type: 'integer' } },
  required: ['x', 'y'],
  additionalProperties: false
}
type Point = { x: number, y: number }

t.test('app.addSchema() schemas referenced with $ref', async (t) => {
  const server = await startServer(t, async (app) => {
    app.addSchema(PointSchema)
    app.get('/typebox-ref', {
      websocket: {
        inbound: Type.Ref('Point'),
        message (socket, msg) { return socket.send({ via: 'Type.Ref', msg }) }
      }
    }, open)
    app.get('/plain-ref', {
      websocket: {
        inbound: Type.Unsafe<Point>({ $ref: 'Point#' }),
        outbound: Type.Unsafe<Point>({ $ref: 'Point#' }),
        message (socket, msg) { return socket.send({ x: msg.x * 10, y: msg.y * 10 }) }
      }
    }, open)
    app.get('/nested-ref', {
      websocket: {
        inbound: Type.Object({ from: Type.Ref('Point'), to: Type.Ref('Point') }),
        message (socket, msg) { return socket.send(msg) }
      }
    }, open)
    await app.register(async function child (child) {
      child.addSchema({ $id: 'Segment', type: 'object', properties: { a: { $ref: 'Point#' }, b: { $ref: 'Point#' } }, required: ['a', 'b'] })
      child.get('/child-ref', {
        websocket: {
          inbound: { $ref: 'Segment#' },
          outbound: { $ref: 'Segment#' },
          message (socket, msg) { return socket.send(msg) }
        }
      }, open)
    })
  })

  const ws = await connect(server.url('/typebox-ref'))
  const reply = nextJson(ws)
  ws.send('{"x":1,"y":2}')
  t.strictSame(await reply, { via: 'Type.Ref', msg: { x: 1, y: 2 } })
  await bye(ws)
  t.strictSame(await closeFor(server, '/typebox-ref', '{"x":1}'), { code: 1007, reason: '/y is required' })

  const plain = await connect(server.url('/plain-ref'))
  const scaled = messages(plain, 1)
  plain.send('{"x":1,"y":2}')
  t.same(await scaled, ['{"x":10,"y":20}'], 'serialized with the shared schema')
  await bye(plain)
  t.strictSame(await closeFor(server, '/plain-ref', '{"x":1,"y":2,"z":3}'), { code: 1007, reason: '/z is not allowed' })

  const nested = await connect(server.url('/nested-ref'))
  const both = nextJson(nested)
  nested.send('{"from":{"x":0,"y":0},"to":{"x":5,"y":5}}')
  t.strictSame(await both, { from: { x: 0, y: 0 }, to: { x: 5, y: 5 } })
  await bye(nested)
  t.strictSame(await closeFor(server, '/nested-ref', '{"from":{"x":0,"y":0},"to":{"x":5,"y":"5"}}'), { code: 1007, reason: '/to/y must be integer' })

  const child = await connect(server.url('/child-ref'))
  const segment = nextJson(child)
  child.send('{"a":{"x":1,"y":1},"b":{"x":2,"y":2}}')
  t.strictSame(await segment, { a: { x: 1, y: 1 }, b: { x: 2, y: 2 } }, 'a schema added in an encapsulated context')
  await bye(child)
  t.strictSame(await closeFor(server, '/child-ref', '{"a":{"x":1,"y":1},"b":{"x":2}}'), { code: 1007, reason: '/b/y is required' })
})

t.test('a schema added in a child context is not visible to the parent\'s routes', async (t) => {
  await t.rejects(startServer(t, async (app) => {
    await app.register(async function child (child) {
      child.addSchema({ $id: 'Hidden', type: 'string' })
    })
    app.get('/parent', { websocket: { inbound: { $ref: 'Hidden#' }, message () {} } }, open)
  }, { listen: false }), { code: 'FST_WS_INVALID_SCHEMA', message: /^Route "\/parent": the inbound schema does not compile/ })
})

t.test('a TypeBox schema with an $id, added with app.addSchema() and used inline', async (t) => {
  // Fastify's own validation accepts this (e.g. as a body schema); so must the plugin.
  const Pos = Type.Object({ x: Type.Integer(), y: Type.Integer() }, { $id: 'Pos' })
  const server = await startServer(t, (app) => {
    app.addSchema(Pos)
    app.get('/pos', { websocket: { inbound: Pos, outbound: Pos, validateOutbound: true, message (socket, msg) { return socket.send(msg) } } }, open)
  })
  const ws = await connect(server.url('/pos'))
  const reply = nextJson(ws)
  ws.send('{"x":1,"y":2}')
  t.strictSame(await reply, { x: 1, y: 2 })
  await bye(ws)
})

t.test('outbound: fast-json-stringify with a schema, JSON.stringify without', async (t) => {
  const server = await startServer(t, (app) => {
    app.get('/fjs', {
      websocket: {
        outbound: Type.Object({ n: Type.Integer(), s: Type.String() }),
        validateOutbound: false,
        message (socket) { return socket.send({ n: 1.7, s: 'a', extra: 'dropped' } as never) }
      }
    }, open)
    app.get('/json', {
      websocket: {
        message (socket) { return socket.send({ n: 1.7, s: 'a', extra: 'kept', nested: [null, true] }) }
      }
    }, open)
    app.get('/push', { websocket: true }, async function (socket) {
      await socket.send({ pushed: ['x', 1] })
      await socket.send('plain text')
      await socket.send([1, 2])
    })
  })
  const fjs = await connect(server.url('/fjs'))
  const a = messages(fjs, 1)
  fjs.send('go')
  t.same(await a, ['{"n":1,"s":"a"}'], 'the integer field is an integer; unknown properties are not sent')
  await bye(fjs)

  const json = await connect(server.url('/json'))
  const b = messages(json, 1)
  json.send('go')
  t.same(await b, ['{"n":1.7,"s":"a","extra":"kept","nested":[null,true]}'])
  await bye(json)

  // open() sends at once: listen before the handshake completes
  const push = new WebSocket(server.url('/push'))
  t.same(await messages(push, 3), ['{"pushed":["x",1]}', 'plain text', '[1,2]'], 'websocket: true sends objects with JSON.stringify')
  await bye(push)
})

/** A route whose message hook tries to send `bad` and then a good object; records what send() did with `bad`. */
function outboundProbe (results: Array<{ threw: unknown, returned: boolean }>) {
  return {
    outbound: Type.Object({ s: Type.String({ maxLength: 3 }) }),
    message (socket: { send (data: unknown): Promise<void> }, msg: unknown): Promise<void> {
      const bad = msg === 'type' ? { s: 5 } : { s: 'too long' }
      let threw: unknown
      let returned = false
      try {
        const p = socket.send(bad)
        returned = true
        p.catch(() => {})
      } catch (err) {
        threw = err
      }
      results.push({ threw, returned })
      return socket.send({ s: 'ok' })
    }
  }
}

t.test('validateOutbound throws FST_WS_INVALID_OUTBOUND from send(), and nothing is written', async (t) => {
  for (const level of ['default', 'plugin', 'route'] as const) {
    const results: Array<{ threw: unknown, returned: boolean }> = []
    const server = await startServer(t, (app) => {
      app.get('/checked', { websocket: { ...outboundProbe(results), ...(level === 'route' ? { validateOutbound: true } : {}) } }, open)
    }, level === 'plugin' ? { plugin: { validateOutbound: true } } : {})
    const ws = await connect(server.url('/checked'))
    const got = messages(ws, 2)
    ws.send('length')
    ws.send('type')
    t.same(await got, ['{"s":"ok"}', '{"s":"ok"}'], `${level}: only the valid objects reached the client`)
    t.equal(results.length, 2)
    for (const [i, rule] of ['/s must NOT have more than 3 characters', '/s must be string'].entries()) {
      t.equal(results[i].returned, false, `${level}: send() threw synchronously rather than returning a promise`)
      t.match(results[i].threw, { code: 'FST_WS_INVALID_OUTBOUND', message: `Outbound message does not match the outbound schema: ${rule}` })
    }
    t.ok((results[0].threw as Error) instanceof Error)
    t.match((results[0].threw as { validation: unknown }).validation, [{ keyword: 'maxLength', instancePath: '/s' }])
    t.equal(ws.readyState, ws.OPEN, `${level}: the connection stays open`)
    await bye(ws)
  }
})

t.test('with validateOutbound: false an outbound mismatch is not checked', async (t) => {
  const results: Array<{ threw: unknown, returned: boolean }> = []
  const server = await startServer(t, (app) => {
    app.get('/unchecked', { websocket: { ...outboundProbe(results), validateOutbound: false } }, open)
  })
  const ws = await connect(server.url('/unchecked'))
  const got = messages(ws, 2)
  ws.send('length')
  t.same(await got, ['{"s":"too long"}', '{"s":"ok"}'], 'the oversized string went out as it was')
  t.strictSame(results, [{ threw: undefined, returned: true }])
  await bye(ws)
})
