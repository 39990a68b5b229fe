// plugin/connection.ts: the socket every hook receives (docs/reference.md, "The socket"): send, close,
// ping and the read-only properties, as a client sees them.
import t from 'tap'
import type { EventEmitter } from 'node:events'
import WebSocket from 'ws'
import type { TypedWebSocket } from 'fastify-typed-websocket'
import { startServer, connect, closed, messages, until, deferred, connectWhatwg, whatwgClosed, type TestServer } from './helpers/server'
import { RawClient, Opcode, closePayload } from './helpers/raw'
import { whatwgMessages } from './helpers/whatwg'
import { WebSocketClosedError } from './helpers/plugin'

/** Resolves once the server saw the connection go (it left app.websocketClients). */
function serverSawClose (server: TestServer): Promise<void> {
  return until(() => server.app.websocketClients.size === 0, 5000, 'the server to see the close')
}

function describeError (err: unknown): string {
  return `${(err as Error).name}: ${(err as Error).message}`
}

t.test('send', async (t) => {
  // Each route acts when the client says 'go', so the client is surely listening.
  const sendAll = async (socket: { send: (data: unknown, options?: { binary?: boolean }) => Promise<void> }): Promise<void> => {
    await socket.send('text')
    await socket.send(Buffer.from([1, 2, 3]))
    await socket.send(Buffer.from('buffer as text'), { binary: false })
    await socket.send({ a: 1, b: [true, null], c: 'é' })
    await socket.send('string as binary', { binary: true })
    await socket.send(new Uint8Array([4, 5]))
    await socket.send(new Uint8Array([6]).buffer)
  }
  const expected = [
    'text',
    Buffer.from([1, 2, 3]),
    'buffer as text',
    '{"a":1,"b":[true,null],"c":"é"}',
    Buffer.from('string as binary'),
    Buffer.from([4, 5]),
    Buffer.from([6])
  ]

  t.test('strings go as text, Buffers as binary unless told, objects as JSON (ws client)', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/kinds', { websocket: { message: (socket) => sendAll(socket) } }, function open () {})
    })
    const ws = await connect(server.url('/kinds'))
    const got = messages(ws, expected.length)
    ws.send('go')
    t.same(await got, expected)
  })

  t.test('strings go as text, Buffers as binary unless told, objects as JSON (WHATWG client)', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/kinds', { websocket: { message: (socket) => sendAll(socket) } }, function open () {})
    })
    const ws = await connectWhatwg(server.url('/kinds'))
    const got = whatwgMessages(ws, expected.length)
    ws.send('go')
    t.same(await got, expected)
  })

  t.test('returns a Promise that resolves (to undefined) once the frame is sent', async (t) => {
    const results: Record<string, unknown> = {}
    const server = await startServer(t, (app) => {
      app.get('/promise', {
        websocket: {
          message (socket) {
            const sent = socket.send('first')
            results.isPromise = sent instanceof Promise
            return sent.then((value) => {
              results.value = value
              return socket.send('after it resolved')
            })
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/promise'))
    const got = messages(ws, 2)
    ws.send('go')
    t.same(await got, ['first', 'after it resolved'])
    t.same(results, { isPromise: true, value: undefined })
  })

  t.test('after close, throws WebSocketClosedError synchronously', async (t) => {
    const errors: unknown[] = []
    let returned: unknown = 'nothing'
    const server = await startServer(t, (app) => {
      app.get('/late', {
        websocket: {
          message (socket) {
            socket.close(4000, 'closing')
            try {
              returned = socket.send('too late')
            } catch (err) {
              errors.push(err)
            }
          },
          close (socket) {
            try {
              returned = socket.send('far too late')
            } catch (err) {
              errors.push(err)
            }
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/late'))
    const received: unknown[] = []
    ws.on('message', (data) => received.push(data))
    ws.send('go')
    t.same(await closed(ws), { code: 4000, reason: 'closing' })
    await until(() => errors.length === 2)
    t.equal(returned, 'nothing', 'send returned nothing: it threw')
    for (const err of errors) {
      t.ok(err instanceof WebSocketClosedError, 'instanceof WebSocketClosedError')
      t.equal((err as { code?: string }).code, 'FST_WS_CLOSED')
    }
    t.same(errors.map(err => (err as Error).message), ['WebSocket is not open: CLOSING', 'WebSocket is not open: CLOSED'])
    t.same(received, [], 'nothing reached the client')
  })

  t.test('undefined, a function or a symbol throws a TypeError and the connection stays open', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/unsendable', {
        websocket: {
          message (socket) {
            const outcomes = [undefined, () => {}, Symbol('s')].map((value) => {
              try {
                socket.send(value)
                return 'sent'
              } catch (err) {
                return (err as Error).name
              }
            })
            return socket.send(outcomes.join(','))
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/unsendable'))
    const got = messages(ws, 1)
    ws.send('go')
    t.same(await got, ['TypeError,TypeError,TypeError'])
  })

  t.test('an unawaited send on a connection the client killed never crashes the process; awaited, it rejects', async (t) => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
    process.on('unhandledRejection', onUnhandled)
    t.teardown(() => { process.off('unhandledRejection', onUnhandled) })
    const flooded = deferred<{ kept: Promise<void> }>()
    const big = Buffer.alloc(8 * 1024 * 1024)
    const server = await startServer(t, (app) => {
      app.get('/flood', {
        websocket: {
          maxBufferedAmount: 256 * 1024 * 1024,
          message (socket) {
            // More than the kernel buffers hold while the client reads nothing:
            // these sends are still pending when the client goes away.
            for (let i = 0; i < 3; i++) socket.send(big)
            flooded.resolve({ kept: socket.send(big) })
          }
        }
      }, function open () {})
    })
    const client = await RawClient.open(server.port, '/flood')
    client.socket.pause()
    client.send({ opcode: Opcode.Text, payload: 'go' })
    const { kept } = await flooded.promise
    client.destroy()
    await serverSawClose(server)
    await t.rejects(kept, 'the send that is awaited (late) rejects')
    await new Promise(resolve => setTimeout(resolve, 50))
    t.same(unhandled, [], 'no unhandled rejection')
  })

  t.end()
})

t.test('close', async (t) => {
  t.test('is idempotent: the client sees one close frame, with the first code', async (t) => {
    const outcomes: string[] = []
    const server = await startServer(t, (app) => {
      app.get('/twice', {
        websocket: {
          close (socket, code) {
            socket.close(4003, 'after the end')
            outcomes.push(`close hook ${code}, closing again did not throw`)
          }
        }
      }, function open (socket) {
        socket.close(4001, 'first')
        socket.close(4002, 'second')
      })
    })
    const client = await RawClient.open(server.port, '/twice')
    t.same(await client.closing(), { code: 4001, reason: 'first' })
    client.send({ opcode: Opcode.Close, payload: closePayload(4001, 'first') })
    await client.until(() => client.closed, 5000, 'the TCP close')
    t.equal(client.frames.filter(f => f.opcode === Opcode.Close).length, 1, 'one close frame')
    await until(() => outcomes.length > 0)
    t.same(outcomes, ['close hook 4001, closing again did not throw'])
  })

  t.test('without a code sends an empty close frame: the client sees 1005', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/plain', { websocket: { message (socket) { socket.close() } } }, function open () {})
    })
    const ws = await connect(server.url('/plain'))
    ws.send('go')
    t.same(await closed(ws), { code: 1005, reason: '' })
  })

  t.test('a long multi-byte reason is cut to 123 bytes at a character boundary (ws client)', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/long', { websocket: { message (socket) { socket.close(4000, '€'.repeat(100)) } } }, function open () {})
    })
    const ws = await connect(server.url('/long'))
    ws.send('go')
    const { code, reason } = await closed(ws)
    t.equal(code, 4000)
    t.equal(reason, '€'.repeat(41))
    t.equal(Buffer.byteLength(reason), 123)
  })

  t.test('a long multi-byte reason is cut to 123 bytes at a character boundary (WHATWG client)', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/long', { websocket: { message (socket) { socket.close(4000, 'a' + '😀'.repeat(40)) } } }, function open () {})
    })
    const ws = await connectWhatwg(server.url('/long'))
    ws.send('go')
    const { code, reason, wasClean } = await whatwgClosed(ws)
    t.equal(code, 4000)
    t.equal(reason, 'a' + '😀'.repeat(30))
    t.ok(Buffer.byteLength(reason) <= 123)
    t.equal(wasClean, true, 'the reason was valid UTF-8')
  })

  t.test('an invalid code throws, and the socket stays usable', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/bad-code', {
        websocket: {
          async message (socket) {
            const outcomes = [999, 1004, 1005, 1006, 2000, 5000].map((code) => {
              try {
                socket.close(code)
                return `${code} accepted`
              } catch (err) {
                return `${code} ${(err as Error).name}`
              }
            })
            await socket.send(outcomes.join(', '))
            socket.close(4000, 'valid')
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/bad-code'))
    const got = messages(ws, 1)
    const end = closed(ws)
    ws.send('go')
    t.same(await got, ['999 TypeError, 1004 TypeError, 1005 TypeError, 1006 TypeError, 2000 TypeError, 5000 TypeError'])
    t.same(await end, { code: 4000, reason: 'valid' })
  })

  t.test('a code that is not an integer throws, and the socket stays usable', async (t) => {
    // RFC 6455 section 7.4: a close code is a 16-bit unsigned integer.
    const server = await startServer(t, (app) => {
      app.get('/fractional-code', {
        websocket: {
          async message (socket) {
            let outcome = 'accepted'
            try {
              socket.close(1000.5)
            } catch (err) {
              outcome = (err as Error).name
            }
            await socket.send(outcome)
            socket.close(4000, 'valid')
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/fractional-code'))
    const got = messages(ws, 1)
    const end = closed(ws)
    ws.send('go')
    t.same(await Promise.race([got, end]), ['TypeError'])
    t.same(await end, { code: 4000, reason: 'valid' })
  })

  t.test('a peer that never answers the close is dropped after closeTimeout', async (t) => {
    let closeCalledAt = 0
    const server = await startServer(t, (app) => {
      app.get('/linger', { websocket: { closeTimeout: 200 } }, function open (socket) {
        closeCalledAt = Date.now()
        socket.close(4000, 'bye')
      })
    })
    const client = await RawClient.open(server.port, '/linger')
    t.same(await client.closing(), { code: 4000, reason: 'bye' })
    await client.until(() => client.closed, 5000, 'the server to drop the TCP link')
    const waited = (client.closedAt as number) - closeCalledAt
    t.ok(waited >= 180, `not before closeTimeout (${waited} ms)`)
    t.ok(waited < 4000, `well before the 5 s default (${waited} ms)`)
  })

  t.end()
})

t.test('ping', async (t) => {
  t.test('ping(data) reaches the client', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/ping', {
        websocket: {
          message (socket) {
            socket.ping('probe')
            socket.ping()
            socket.ping(Buffer.from([1, 2]))
            socket.ping('x'.repeat(125))
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/ping'))
    const pings: string[] = []
    ws.on('ping', (data: Buffer) => pings.push(data.toString('hex')))
    ws.send('go')
    await until(() => pings.length === 4)
    t.same(pings, [Buffer.from('probe').toString('hex'), '', '0102', Buffer.from('x'.repeat(125)).toString('hex')])
  })

  t.test('more than 125 bytes throws a RangeError and sends nothing', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/ping-long', {
        websocket: {
          message (socket) {
            const outcomes = ['x'.repeat(126), '€'.repeat(42), Buffer.alloc(200)].map((data) => {
              try {
                socket.ping(data)
                return 'sent'
              } catch (err) {
                return describeError(err)
              }
            })
            return socket.send(JSON.stringify(outcomes))
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/ping-long'))
    let pings = 0
    ws.on('ping', () => { pings++ })
    const got = messages(ws, 1)
    ws.send('go')
    const outcomes = JSON.parse(String((await got)[0])) as string[]
    t.same(outcomes, Array(3).fill('RangeError: A ping payload is at most 125 bytes'))
    t.equal(pings, 0)
  })

  t.test('after close, throws WebSocketClosedError', async (t) => {
    const errors: unknown[] = []
    const server = await startServer(t, (app) => {
      app.get('/ping-late', {
        websocket: {
          message (socket) {
            socket.close(4000)
            try { socket.ping() } catch (err) { errors.push(err) }
          },
          close (socket) {
            try { socket.ping('late') } catch (err) { errors.push(err) }
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/ping-late'))
    ws.send('go')
    t.same(await closed(ws), { code: 4000, reason: '' })
    await until(() => errors.length === 2)
    for (const err of errors) {
      t.ok(err instanceof WebSocketClosedError)
      t.equal((err as { code?: string }).code, 'FST_WS_CLOSED')
    }
  })

  t.end()
})

t.test('properties', async (t) => {
  t.test('request: params, query, headers and decorations set by hooks', async (t) => {
    interface WithUser { user: string }
    const server = await startServer(t, (app) => {
      app.decorateRequest('user', '')
      app.addHook('preValidation', async (request) => {
        (request as unknown as WithUser).user = 'ann'
      })
      app.get('/items/:id', {
        websocket: {
          message (socket) {
            const { request } = socket
            return socket.send({
              params: request.params,
              query: request.query,
              header: request.headers['x-test'],
              user: (request as unknown as WithUser).user,
              url: request.url
            })
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/items/42?color=red&size=9'), { headers: { 'x-test': 'yes' } })
    const got = messages(ws, 1)
    ws.send('go')
    t.same(JSON.parse(String((await got)[0])), {
      params: { id: '42' },
      query: { color: 'red', size: '9' },
      header: 'yes',
      user: 'ann',
      url: '/items/42?color=red&size=9'
    })
  })

  t.test('log is the request\'s logger', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/log', {
        websocket: {
          message (socket) {
            socket.log.info({ marker: 'socket-log' }, 'hello from the socket')
            return socket.send(`${socket.request.id} ${String(socket.log === socket.request.log)}`)
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/log'))
    const got = messages(ws, 1)
    ws.send('go')
    const [requestId, same] = String((await got)[0]).split(' ')
    t.equal(same, 'true')
    const line = server.logs.find(l => l.marker === 'socket-log')
    t.equal(line?.msg, 'hello from the socket')
    t.equal(line?.level, 30)
    t.equal(line?.reqId, requestId)
  })

  t.test('protocol: the chosen subprotocol, or an empty string', async (t) => {
    const server = await startServer(t, (app) => {
      const echoProtocol = { message: (socket: { protocol: string, send: (data: string) => Promise<void> }) => socket.send(`protocol=${socket.protocol}`) }
      app.get('/versioned', { websocket: { subprotocols: ['v2', 'v1'], ...echoProtocol } }, function open () {})
      app.get('/plain', { websocket: echoProtocol }, function open () {})
    })
    const ws = await connect(server.url('/versioned'), { protocols: ['v1', 'v2'] })
    t.equal(ws.protocol, 'v2')
    let got = messages(ws, 1)
    ws.send('go')
    t.same(await got, ['protocol=v2'])

    const whatwg = await connectWhatwg(server.url('/versioned'), ['v1'])
    t.equal(whatwg.protocol, 'v1')
    const whatwgGot = whatwgMessages(whatwg, 1)
    whatwg.send('go')
    t.same(await whatwgGot, ['protocol=v1'])

    const plain = await connect(server.url('/plain'))
    got = messages(plain, 1)
    plain.send('go')
    t.same(await got, ['protocol='])
  })

  t.test('closeCode and closeReason are undefined while open and the peer\'s once closed; isOpen follows', async (t) => {
    const states: unknown[][] = []
    const server = await startServer(t, (app) => {
      app.get('/state', {
        websocket: {
          message (socket) {
            states.push(['message', socket.closeCode, socket.closeReason, socket.isOpen])
            return socket.send('noted')
          },
          close (socket) { states.push(['close', socket.closeCode, socket.closeReason, socket.isOpen]) }
        }
      }, function open (socket) {
        states.push(['open', socket.closeCode, socket.closeReason, socket.isOpen])
      })
    })
    const ws = await connect(server.url('/state'))
    const got = messages(ws, 1)
    ws.send('go')
    await got
    ws.close(4000, 'bye')
    await closed(ws)
    await until(() => states.length === 3)
    t.same(states, [
      ['open', undefined, undefined, true],
      ['message', undefined, undefined, true],
      ['close', 4000, 'bye', false]
    ])
  })

  t.test('bufferedAmount is a number and raw is the ws WebSocket', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/raw', {
        websocket: {
          message (socket) {
            return socket.send(JSON.stringify({
              bufferedAmount: typeof socket.bufferedAmount,
              raw: socket.raw instanceof WebSocket,
              readyState: socket.raw.readyState
            }))
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/raw'))
    const got = messages(ws, 1)
    ws.send('go')
    t.same(JSON.parse(String((await got)[0])), { bufferedAmount: 'number', raw: true, readyState: WebSocket.OPEN })
  })

  t.end()
})

t.test('a receiver error without a close code of its own closes with 1002 and its message', async (t) => {
  const opened = deferred<TypedWebSocket>()
  const server = await startServer(t, (app) => {
    app.get('/ws', { websocket: true }, function open (socket) { opened.resolve(socket) })
  })
  const ws = await connect(server.url('/ws'))
  const socket = await opened.promise
  const closing = closed(ws)
  // The shape of error a future ws might raise: no status code attached.
  const receiver = (socket.raw as unknown as { _receiver: EventEmitter })._receiver
  receiver.emit('error', new Error('unexpected frame'))
  // With ws internals off, ws's own listener closes, without a code to give.
  t.same(await closing, process.env.FASTIFY_TYPED_WEBSOCKET_INTERNALS === 'off' ? { code: 1005, reason: '' } : { code: 1002, reason: 'unexpected frame' })
})
