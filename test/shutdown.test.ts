// app.websocketClients and graceful shutdown (docs/lifecycle.md, "Clients and shutdown").
import t from 'tap'
import { startServer, connect, closed, messages, until, deferred, sleep, connectWhatwg, whatwgClosed, type Refused } from './helpers/server'
import { RawClient, Opcode, closePayload } from './helpers/raw'

const SHUTTING_DOWN = { code: 1001, reason: 'server shutting down' }

t.test('app.websocketClients', async (t) => {
  t.test('grows and shrinks with the connections of every route', async (t) => {
    const membership: string[] = []
    const server = await startServer(t, (app) => {
      const hooks = {
        close (socket: object) { membership.push(`in close hook: ${String(app.websocketClients.has(socket as never))}`) }
      }
      app.get('/a', { websocket: hooks }, function open (socket) {
        membership.push(`in open: ${String(app.websocketClients.has(socket))}`)
      })
      app.get('/b', { websocket: hooks }, function open () {})
    })
    const clients = server.app.websocketClients
    t.equal(clients.size, 0)
    const a = await connect(server.url('/a'))
    await until(() => clients.size === 1)
    const b = await connect(server.url('/b'))
    await until(() => clients.size === 2)
    const c = await connect(server.url('/b'))
    await until(() => clients.size === 3)
    a.close()
    await until(() => clients.size === 2)
    b.terminate()
    await until(() => clients.size === 1)
    c.close()
    await until(() => clients.size === 0)
    await until(() => membership.length === 4)
    t.same(membership, ['in open: true', 'in close hook: false', 'in close hook: false', 'in close hook: false'])
  })

  t.test('is read-only', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/a', { websocket: true }, function open () {})
    })
    await connect(server.url('/a'))
    await until(() => server.app.websocketClients.size === 1)
    const view = server.app.websocketClients as unknown as Record<string, unknown>
    for (const method of ['add', 'delete', 'clear']) t.equal(view[method], undefined, `no ${method}()`)
    t.throws(() => { view.add = () => {} }, TypeError, 'no method can be added')
    t.throws(() => { view.size = 0 }, TypeError, 'size cannot be set')
    t.throws(() => { delete view.has }, TypeError, 'methods cannot be removed')
    t.throws(() => { (server.app as unknown as Record<string, unknown>).websocketClients = new Set() }, TypeError,
      'the decoration cannot be replaced')
    t.equal(server.app.websocketClients.size, 1)
  })

  t.test('can be iterated: broadcast to every route\'s sockets', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/chat', {
        websocket: {
          async message (_socket, msg) {
            const sends: Array<Promise<void>> = []
            for (const peer of this.websocketClients) sends.push(peer.send(`all: ${String(msg)}`))
            await Promise.all(sends)
          }
        }
      }, function open () {})
      app.get('/watch', { websocket: true }, function open () {})
    })
    const sender = await connect(server.url('/chat'))
    const listener = await connect(server.url('/watch'))
    const whatwg = await connectWhatwg(server.url('/watch'))
    await until(() => server.app.websocketClients.size === 3)
    const got = [messages(sender, 1), messages(listener, 1), new Promise<string>((resolve) => {
      whatwg.addEventListener('message', (event) => resolve(String(event.data)), { once: true })
    })]
    sender.send('hello')
    t.same(await Promise.all(got), [['all: hello'], ['all: hello'], 'all: hello'])
  })

  t.test('offers the whole ReadonlySet API', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/count', {
        websocket: {
          message (socket) {
            const clients = this.websocketClients
            const seen: string[] = []
            const context = { name: 'thisArg' }
            clients.forEach(function (this: typeof context, value, key, set) {
              seen.push(`${this.name} ${String(value === key)} ${String(set === clients)}`)
            }, context)
            return socket.send({
              size: clients.size,
              has: clients.has(socket),
              forEach: seen,
              values: [...clients.values()].length,
              keys: [...clients.keys()].length,
              entries: [...clients.entries()].every(([k, v]) => k === v),
              spread: [...clients].includes(socket)
            })
          }
        }
      }, function open () {})
    })
    const one = await connect(server.url('/count'))
    await connect(server.url('/count'))
    await until(() => server.app.websocketClients.size === 2)
    const got = messages(one, 1)
    one.send('count')
    t.same(JSON.parse(String((await got)[0])), {
      size: 2,
      has: true,
      forEach: ['thisArg true true', 'thisArg true true'],
      values: 2,
      keys: 2,
      entries: true,
      spread: true
    })
  })

  t.end()
})

t.test('app.close()', async (t) => {
  t.test('closes every client with 1001, runs their close hooks, and resolves once all are gone', async (t) => {
    const hookCalls: string[] = []
    const server = await startServer(t, (app) => {
      const websocket = {
        async close (_socket: unknown, code: number) {
          await sleep(50)
          hookCalls.push(`close ${code}`)
        }
      }
      app.get('/a', { websocket }, function open () {})
      app.get('/b', { websocket }, function open () {})
    })
    const clients = [await connect(server.url('/a')), await connect(server.url('/b'))]
    const whatwg = await connectWhatwg(server.url('/a'))
    await until(() => server.app.websocketClients.size === 3)
    const ends = [...clients.map(ws => closed(ws)), whatwgClosed(whatwg)]
    await server.app.close()
    t.same(hookCalls, ['close 1001', 'close 1001', 'close 1001'], 'every close hook completed before close() resolved')
    t.equal(server.app.websocketClients.size, 0)
    const [a, b, w] = await Promise.all(ends)
    t.same(a, SHUTTING_DOWN)
    t.same(b, SHUTTING_DOWN)
    t.has(w, SHUTTING_DOWN)
  })

  t.test('awaits an async close hook before resolving', async (t) => {
    const events: string[] = []
    const server = await startServer(t, (app) => {
      app.get('/slow-close', {
        websocket: {
          async close () {
            await sleep(200)
            events.push('close hook done')
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/slow-close'))
    const end = closed(ws)
    await until(() => server.app.websocketClients.size === 1)
    await server.app.close()
    events.push('app.close() resolved')
    t.same(events, ['close hook done', 'app.close() resolved'])
    t.same(await end, SHUTTING_DOWN)
  })

  t.test('waits for a message hook still running, then the close hook', async (t) => {
    const events: string[] = []
    const entered = deferred()
    const server = await startServer(t, (app) => {
      app.get('/busy', {
        websocket: {
          async message () {
            entered.resolve()
            await sleep(200)
            events.push('message done')
          },
          close (_socket, code) { events.push(`close ${code}`) }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/busy'))
    const end = closed(ws)
    ws.send('work')
    await entered.promise
    await server.app.close()
    events.push('app.close() resolved')
    t.same(events, ['message done', 'close 1001', 'app.close() resolved'])
    t.same(await end, SHUTTING_DOWN)
  })

  t.test('waits for an open still running, then the close hook', async (t) => {
    const events: string[] = []
    const server = await startServer(t, (app) => {
      app.get('/opening', {
        websocket: { close (_socket, code) { events.push(`close ${code}`) } }
      }, async function open () {
        await sleep(200)
        events.push('open done')
      })
    })
    const ws = await connect(server.url('/opening'))
    const end = closed(ws)
    await until(() => server.app.websocketClients.size === 1)
    await server.app.close()
    events.push('app.close() resolved')
    t.same(events, ['open done', 'close 1001', 'app.close() resolved'])
    t.same(await end, SHUTTING_DOWN)
  })

  t.test('destroys a client that never answers the close after closeTimeout, and still resolves', async (t) => {
    const hookCalls: number[] = []
    const server = await startServer(t, (app) => {
      app.get('/deaf', { websocket: { close (_socket, code) { hookCalls.push(code) } } }, function open () {})
    }, { plugin: { closeTimeout: 300 } })
    const client = await RawClient.open(server.port, '/deaf')
    await until(() => server.app.websocketClients.size === 1)
    const started = Date.now()
    await server.app.close()
    const took = Date.now() - started
    t.ok(took < 4000, `resolved well before the 5 s default (${took} ms)`)
    t.same(client.close, SHUTTING_DOWN, 'the client got the close frame')
    await client.until(() => client.closed, 2000, 'the TCP close')
    // The destroyed connection's close hook runs once its TCP close is seen,
    // which may be just after close() resolved.
    await until(() => hookCalls.length > 0, 2000, 'the close hook')
    t.same(hookCalls, [1006], 'the close hook saw the link die')
  })

  t.test('answers 503 to new upgrades while closing', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/ws', { websocket: true }, function open () {})
    })
    // A client that answers the close only when told keeps the server in its shutdown.
    const lingering = await RawClient.open(server.port, '/ws')
    const closing = server.app.close()
    t.same(await lingering.closing(), SHUTTING_DOWN)
    const refused = await connect(server.url('/ws')).then(() => undefined, (err: Refused) => err)
    t.equal(refused?.statusCode, 503)
    const raw = await RawClient.open(server.port, '/ws').then(() => 'upgraded', (err: Error) => err.message)
    t.equal(raw, 'upgrade refused: 503')
    lingering.send({ opcode: Opcode.Close, payload: closePayload(1001) })
    await closing
    await lingering.until(() => lingering.closed, 2000, 'the TCP close')
  })

  t.test('resolves at once without connections', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/ws', { websocket: true }, function open () {})
    })
    const ws = await connect(server.url('/ws'))
    ws.close()
    await closed(ws)
    await until(() => server.app.websocketClients.size === 0)
    const started = Date.now()
    await server.app.close()
    t.ok(Date.now() - started < 2000)
  })

  t.end()
})

t.test('app.close() after closeTimeout: stragglers are destroyed and their close hooks run before it resolves', async (t) => {
  const hooked: number[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: { closeTimeout: 150, close (_socket, code) { hooked.push(code) } }
    }, function open () {})
  }, { plugin: { closeTimeout: 150 } })
  const client = await RawClient.open(server.port, '/ws')
  await until(() => server.app.websocketClients.size === 1)
  client.socket.pause() // never answers the close
  await server.app.close()
  t.same(hooked, [1006], 'the close hook ran, with 1006, before close() resolved')
  t.equal(server.app.websocketClients.size, 0)
  client.destroy()
})

t.test('app.close() does not wait forever for a close hook that never settles', async (t) => {
  let called = false
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        close () {
          called = true
          return new Promise(() => {}) // never settles
        }
      }
    }, function open () {})
  }, { plugin: { closeTimeout: 150 } })
  const ws = await connect(server.url('/ws'))
  const started = Date.now()
  await server.app.close()
  t.ok(called, 'the close hook was called')
  t.ok(Date.now() - started < 5000, `close() resolved (${Date.now() - started} ms)`)
  ws.terminate()
})
