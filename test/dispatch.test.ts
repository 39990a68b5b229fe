// plugin/dispatch.ts: the connection lifecycle (docs/lifecycle.md): open, message, close,
// ping/pong and error hooks, in the order and with the arguments a client can observe.
import t from 'tap'
import { once } from 'node:events'
import { Type } from '@sinclair/typebox'
import type WebSocket from 'ws'
import { startServer, connect, closed, messages, until, deferred, sleep, connectWhatwg, whatwgClosed, type TestServer } from './helpers/server'
import { RawClient, Opcode, closePayload, frame } from './helpers/raw'
import { whatwgMessages } from './helpers/whatwg'

const INTERNAL_ERROR = { code: 1011, reason: 'internal error' }

/** The app's log lines at level 50 (error) with the given message. */
function errorLogs (server: TestServer, msg: string): Array<Record<string, unknown>> {
  return server.logs.filter(line => line.level === 50 && line.msg === msg)
}

function loggedError (line: Record<string, unknown> | undefined): string | undefined {
  return (line?.err as { message?: string } | undefined)?.message
}

/** Resolves once the server saw the connection go (it left app.websocketClients). */
function serverSawClose (server: TestServer): Promise<void> {
  return until(() => server.app.websocketClients.size === 0, 5000, 'the server to see the close')
}

function nextTurn (): Promise<void> {
  return new Promise(resolve => setImmediate(resolve))
}

function pong (ws: WebSocket): Promise<unknown[]> {
  return once(ws, 'pong', { signal: AbortSignal.timeout(2000) })
}

t.test('open', async (t) => {
  t.test('this is the Fastify instance in open and in every hook', async (t) => {
    const seen: Record<string, boolean> = {}
    const server = await startServer(t, (app) => {
      app.get('/this', {
        websocket: {
          message (socket) {
            seen.message = this === app
            return socket.send(JSON.stringify(seen))
          },
          close () { seen.close = this === app }
        }
      }, function open () {
        seen.open = this === app
      })
    })
    const ws = await connect(server.url('/this'))
    const got = messages(ws, 1)
    ws.send('hi')
    t.same(await got, [JSON.stringify({ open: true, message: true })])
    ws.close()
    await serverSawClose(server)
    t.same(seen, { open: true, message: true, close: true })
  })

  t.test('this is the encapsulated instance when the route is declared in a plugin', async (t) => {
    const seen: string[] = []
    const server = await startServer(t, async (app) => {
      await app.register(async function child (child) {
        child.decorate('area', 'child')
        child.get('/child', {
          websocket: {
            message (socket) {
              seen.push(`message: ${String(this.hasDecorator('area'))}`)
              return socket.send(seen.join(', '))
            }
          }
        }, function open () {
          seen.push(`open: ${String(this.hasDecorator('area'))}`)
        })
      })
    })
    t.equal(server.app.hasDecorator('area'), false)
    const ws = await connect(server.url('/child'))
    const got = messages(ws, 1)
    ws.send('hi')
    t.same(await got, ['open: true, message: true'])
  })

  t.test('an async open holds inbound messages until it settles, then delivers them in order', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/slow-open', {
        websocket: { message (socket, msg) { return socket.send(`got ${String(msg)}`) } }
      }, async function open (socket) {
        // Wait until the three messages have reached the server, then finish opening.
        let arrived = 0
        socket.raw.on('message', () => { arrived++ })
        await until(() => arrived === 3, 5000, 'three messages')
        await sleep(20)
        await socket.send('opened')
      })
    })
    const ws = await connect(server.url('/slow-open'))
    const got = messages(ws, 4)
    ws.send('a')
    ws.send('b')
    ws.send('c')
    t.same(await got, ['opened', 'got a', 'got b', 'got c'])
  })

  t.test('a sync throw is logged with the request logger, closes 1011, and close never runs', async (t) => {
    let closeCalls = 0
    let requestId = ''
    const server = await startServer(t, (app) => {
      app.get('/open-throws', { websocket: { close () { closeCalls++ } } }, function open (_socket, request) {
        requestId = request.id
        throw new Error('open exploded')
      })
    })
    const ws = await connect(server.url('/open-throws'))
    t.same(await closed(ws), INTERNAL_ERROR)
    await serverSawClose(server)
    await nextTurn()
    t.equal(closeCalls, 0, 'close hook not called')
    const [line] = errorLogs(server, 'websocket handler failed')
    t.equal(loggedError(line), 'open exploded')
    t.equal(line?.reqId, requestId, 'logged with the request logger')
  })

  t.test('a rejection is logged and closes 1011 (WHATWG client)', async (t) => {
    let closeCalls = 0
    const server = await startServer(t, (app) => {
      app.get('/open-rejects', { websocket: { close () { closeCalls++ } } }, async function open () {
        await sleep(5)
        throw new Error('open rejected')
      })
    })
    const ws = await connectWhatwg(server.url('/open-rejects'))
    t.has(await whatwgClosed(ws), INTERNAL_ERROR)
    await serverSawClose(server)
    await nextTurn()
    t.equal(closeCalls, 0, 'close hook not called')
    t.equal(loggedError(errorLogs(server, 'websocket handler failed')[0]), 'open rejected')
  })

  t.test('a custom error hook receives the error; the connection still closes 1011', async (t) => {
    const errors: unknown[] = []
    let closeCalls = 0
    const server = await startServer(t, (app) => {
      app.get('/open-error-hook', {
        websocket: {
          error (_socket, err) { errors.push(err) },
          close () { closeCalls++ }
        }
      }, function open () { throw new Error('open failed') })
    })
    const ws = await connect(server.url('/open-error-hook'))
    t.same(await closed(ws), INTERNAL_ERROR)
    await serverSawClose(server)
    await nextTurn()
    t.equal(errors.length, 1)
    t.equal((errors[0] as Error).message, 'open failed')
    t.equal(closeCalls, 0, 'close hook not called')
    t.same(server.logs.filter(line => line.level === 50), [], 'the hook decided: nothing logged')
  })

  t.test('an async error hook finishes before the 1011 close; the socket still works meanwhile', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/open-async-error-hook', {
        websocket: {
          async error (socket, err) {
            await once(socket.raw, 'message') // the client is listening
            await socket.send(`sorry: ${(err as Error).message}`)
          }
        }
      }, async function open () { throw new Error('no room') })
    })
    const ws = await connect(server.url('/open-async-error-hook'))
    const end = closed(ws)
    const got = messages(ws, 1)
    ws.send('ready')
    t.same(await got, ['sorry: no room'])
    t.same(await end, INTERNAL_ERROR)
  })

  t.test('an error hook that rejects after a failed open is logged and closes 1011', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/open-error-hook-rejects', {
        websocket: { async error () { throw new Error('hook rejected') } }
      }, function open () { throw new Error('open failed') })
    })
    const ws = await connect(server.url('/open-error-hook-rejects'))
    t.same(await closed(ws), INTERNAL_ERROR)
    t.equal(loggedError(errorLogs(server, 'websocket handler failed')[0]), 'hook rejected')
  })

  t.test('after a failed open, pings are still answered but the ping hook does not run', async (t) => {
    const release = deferred()
    const pings: string[] = []
    const server = await startServer(t, (app) => {
      app.get('/failed-ping', {
        websocket: {
          ping (_socket, data) { pings.push(data.toString()) },
          error () { return release.promise }
        }
      }, function open () { throw new Error('open failed') })
    })
    const ws = await connect(server.url('/failed-ping'))
    const end = closed(ws)
    const answer = pong(ws)
    ws.ping('still there?')
    const [data] = await answer
    t.equal(String(data), 'still there?')
    release.resolve()
    t.same(await end, INTERNAL_ERROR)
    t.same(pings, [], 'ping hook not called')
  })

  t.end()
})

t.test('message', async (t) => {
  const clients = {
    ws: async (url: string) => {
      const ws = await connect(url)
      return { send: (m: string) => ws.send(m), messages: (n: number) => messages(ws, n) }
    },
    whatwg: async (url: string) => {
      const ws = await connectWhatwg(url)
      return { send: (m: string) => ws.send(m), messages: (n: number) => whatwgMessages(ws, n) }
    }
  }
  for (const [name, open] of Object.entries(clients)) {
    t.test(`runs one at a time per connection, in arrival order, even with random delays (${name} client)`, async (t) => {
      let running = 0
      const server = await startServer(t, (app) => {
        app.get('/order', {
          websocket: {
            async message (socket, msg) {
              running++
              const concurrent = running
              await sleep(Math.random() * 5)
              running--
              await socket.send(`${String(msg)}:${concurrent}`)
            }
          }
        }, function open () {})
      })
      const client = await open(server.url('/order'))
      const got = client.messages(50)
      for (let i = 0; i < 50; i++) client.send(String(i))
      t.same(await got, Array.from({ length: 50 }, (_, i) => `${i}:1`))
    })
  }

  t.test('a slow handler does not hold back the pong to a client ping', async (t) => {
    const entered = deferred()
    const release = deferred()
    const server = await startServer(t, (app) => {
      app.get('/slow', {
        websocket: {
          async message (socket, msg) {
            entered.resolve()
            await release.promise
            await socket.send(`done ${String(msg)}`)
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/slow'))
    const received: string[] = []
    ws.on('message', (data) => received.push(String(data)))
    ws.send('work')
    await entered.promise
    const answer = pong(ws)
    ws.ping('are you there')
    const [data] = await answer
    t.equal(String(data), 'are you there')
    t.same(received, [], 'the handler is still running')
    const done = messages(ws, 1)
    release.resolve()
    t.same(await done, ['done work'])
  })

  t.test('a handler that throws is logged and closes 1011', async (t) => {
    let requestId = ''
    const server = await startServer(t, (app) => {
      app.get('/throws', {
        websocket: { message () { throw new Error('message exploded') } }
      }, function open (_socket, request) { requestId = request.id })
    })
    const ws = await connect(server.url('/throws'))
    ws.send('boom')
    t.same(await closed(ws), INTERNAL_ERROR)
    const [line] = errorLogs(server, 'websocket handler failed')
    t.equal(loggedError(line), 'message exploded')
    t.equal(line?.reqId, requestId)
  })

  t.test('a handler that rejects is logged and closes 1011 (WHATWG client)', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/rejects', {
        websocket: { async message () { await sleep(5); throw new Error('message rejected') } }
      }, function open () {})
    })
    const ws = await connectWhatwg(server.url('/rejects'))
    ws.send('boom')
    t.has(await whatwgClosed(ws), INTERNAL_ERROR)
    t.equal(loggedError(errorLogs(server, 'websocket handler failed')[0]), 'message rejected')
  })

  t.test('a custom error hook gets the error and the connection stays open', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/error-hook', {
        websocket: {
          async message (socket, msg) {
            if (msg === 'sync') throw new Error('sync failure')
            if (msg === 'async') { await sleep(1); throw new Error('async failure') }
            await socket.send(`echo ${String(msg)}`)
          },
          error (socket, err) { return socket.send(`error: ${(err as Error).message}`) }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/error-hook'))
    const got = messages(ws, 3)
    ws.send('sync')
    ws.send('async')
    ws.send('still here')
    t.same(await got, ['error: sync failure', 'error: async failure', 'echo still here'])
    t.same(server.logs.filter(line => line.level === 50), [])
    ws.close(1000)
    t.same(await closed(ws), { code: 1000, reason: '' })
  })

  t.test('an error hook that throws is logged and closes 1011', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/error-hook-throws', {
        websocket: {
          message () { throw new Error('message failed') },
          error () { throw new Error('error hook failed') }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/error-hook-throws'))
    ws.send('boom')
    t.same(await closed(ws), INTERNAL_ERROR)
    t.equal(loggedError(errorLogs(server, 'websocket handler failed')[0]), 'error hook failed')
  })

  t.test('messages still queued or in flight when the server fails the connection are dropped', async (t) => {
    const handled: string[] = []
    const server = await startServer(t, (app) => {
      app.get('/drop', {
        websocket: {
          async message (_socket, msg) {
            handled.push(String(msg))
            await sleep(10)
            if (msg === 'boom') throw new Error('failed')
          }
        }
      }, function open () {})
    })
    const client = await RawClient.open(server.port, '/drop')
    // 'queued' waits behind 'boom'; 'late' arrives after the 1011 close was sent.
    client.send(Buffer.concat(['first', 'boom', 'queued'].map(payload => rawText(payload))))
    await client.closing()
    client.send(rawText('late'))
    client.send({ opcode: Opcode.Close, payload: closePayload(1011) })
    await client.until(() => client.closed, 5000, 'the TCP close')
    t.same(client.close, INTERNAL_ERROR)
    t.same(handled, ['first', 'boom'])
  })

  t.end()
})

function rawText (payload: string): Buffer {
  return frame({ opcode: Opcode.Text, payload })
}

t.test('close hook', async (t) => {
  t.test('runs exactly once with the peer\'s code and reason', async (t) => {
    const calls: unknown[][] = []
    const server = await startServer(t, (app) => {
      app.get('/bye', {
        websocket: {
          close (socket, code, reason) {
            calls.push([code, reason, socket.closeCode, socket.closeReason, socket.isOpen])
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/bye'))
    ws.close(4000, 'bye')
    t.same(await closed(ws), { code: 4000, reason: 'bye' })
    await until(() => calls.length > 0)
    await sleep(20)
    t.same(calls, [[4000, 'bye', 4000, 'bye', false]])
  })

  t.test('runs with the peer\'s code and reason (WHATWG client)', async (t) => {
    const calls: unknown[][] = []
    const server = await startServer(t, (app) => {
      app.get('/bye', { websocket: { close (_socket, code, reason) { calls.push([code, reason]) } } }, function open () {})
    })
    const ws = await connectWhatwg(server.url('/bye'))
    ws.close(4000, 'bye')
    t.has(await whatwgClosed(ws), { code: 4000, reason: 'bye' })
    await until(() => calls.length > 0)
    t.same(calls, [[4000, 'bye']])
  })

  t.test('gets 1005 when the client\'s close frame has no code', async (t) => {
    const calls: unknown[][] = []
    const server = await startServer(t, (app) => {
      app.get('/no-code', { websocket: { close (_socket, code, reason) { calls.push([code, reason]) } } }, function open () {})
    })
    const client = await RawClient.open(server.port, '/no-code')
    client.send({ opcode: Opcode.Close })
    await client.until(() => client.closed, 5000, 'the TCP close')
    await until(() => calls.length > 0)
    t.same(calls, [[1005, '']])
  })

  t.test('gets 1006 when the TCP link dies', async (t) => {
    const calls: unknown[][] = []
    const server = await startServer(t, (app) => {
      app.get('/dies', { websocket: { close (_socket, code, reason) { calls.push([code, reason]) } } }, function open () {})
    })
    const client = await RawClient.open(server.port, '/dies')
    client.destroy()
    await until(() => calls.length > 0)
    t.same(calls, [[1006, '']])
  })

  t.test('runs after the messages that arrived before the close were handled', async (t) => {
    const events: string[] = []
    const release = deferred()
    const server = await startServer(t, (app) => {
      app.get('/drain', {
        websocket: {
          async message (_socket, msg) {
            events.push(`start ${String(msg)}`)
            if (msg === 'm1') await release.promise
            events.push(`end ${String(msg)}`)
          },
          close (_socket, code) { events.push(`close ${code}`) }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/drain'))
    ws.send('m1')
    ws.send('m2')
    ws.close(4001)
    await closed(ws)
    await serverSawClose(server)
    t.same(events, ['start m1'], 'm2 and close wait for m1')
    release.resolve()
    await until(() => events.length === 5)
    t.same(events, ['start m1', 'end m1', 'start m2', 'end m2', 'close 4001'])
  })

  t.test('waits for a pending open when the connection closes during it', async (t) => {
    const events: string[] = []
    const release = deferred()
    const server = await startServer(t, (app) => {
      app.get('/close-during-open', {
        websocket: { close (_socket, code) { events.push(`close ${code}`) } }
      }, async function open () {
        await release.promise
        events.push('open done')
      })
    })
    const ws = await connect(server.url('/close-during-open'))
    ws.close(4002)
    await closed(ws)
    await serverSawClose(server)
    await sleep(20)
    t.same(events, [], 'close waits for open')
    release.resolve()
    await until(() => events.length === 2)
    t.same(events, ['open done', 'close 4002'])
  })

  t.test('does not run when open failed after the client left', async (t) => {
    let closeCalls = 0
    const release = deferred()
    const server = await startServer(t, (app) => {
      app.get('/late-failure', { websocket: { close () { closeCalls++ } } }, async function open () {
        await release.promise
        throw new Error('too late')
      })
    })
    const client = await RawClient.open(server.port, '/late-failure')
    client.destroy()
    await serverSawClose(server)
    release.resolve()
    await until(() => errorLogs(server, 'websocket handler failed').length > 0)
    await nextTurn()
    t.equal(closeCalls, 0)
    t.equal(loggedError(errorLogs(server, 'websocket handler failed')[0]), 'too late')
  })

  for (const kind of ['throws', 'rejects']) {
    t.test(`a close hook that ${kind} is logged and the server keeps serving`, async (t) => {
      const server = await startServer(t, (app) => {
        app.get('/bad-close', {
          websocket: {
            message (socket, msg) { return socket.send(msg) },
            close () {
              if (kind === 'throws') throw new Error('close hook threw')
              return Promise.reject(new Error('close hook rejected'))
            }
          }
        }, function open () {})
      })
      const first = await connect(server.url('/bad-close'))
      first.close(1000)
      await closed(first)
      await until(() => errorLogs(server, 'websocket close hook failed').length > 0)
      t.equal(loggedError(errorLogs(server, 'websocket close hook failed')[0]), `close hook ${kind === 'throws' ? 'threw' : 'rejected'}`)
      const second = await connect(server.url('/bad-close'))
      const echo = messages(second, 1)
      second.send('alive')
      t.same(await echo, ['alive'])
    })
  }

  t.end()
})

t.test('ping and pong hooks', async (t) => {
  t.test('a client ping reaches the ping hook, and the client gets its pong regardless of the hook', async (t) => {
    const pings: string[] = []
    const never = deferred()
    const server = await startServer(t, (app) => {
      app.get('/ping', {
        websocket: {
          ping (_socket, data) {
            pings.push(data.toString())
            return never.promise // a hook that never settles does not hold the pong back
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/ping'))
    const answer = pong(ws)
    ws.ping('hello')
    const [data] = await answer
    t.equal(String(data), 'hello')
    await until(() => pings.length > 0)
    t.same(pings, ['hello'])
  })

  t.test('an unsolicited pong from the client reaches the pong hook', async (t) => {
    const pongs: string[] = []
    const server = await startServer(t, (app) => {
      app.get('/pong', {
        websocket: { pong (socket, data) { pongs.push(data.toString()); return socket.send('pong seen') } }
      }, function open () {})
    })
    const ws = await connect(server.url('/pong'))
    const got = messages(ws, 1)
    ws.pong('heartbeat')
    t.same(await got, ['pong seen'])
    t.same(pongs, ['heartbeat'])
  })

  t.test('a ping hook that throws is logged and closes 1011', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/ping-throws', {
        websocket: { ping () { throw new Error('ping hook failed') } }
      }, function open () {})
    })
    const ws = await connect(server.url('/ping-throws'))
    const answer = pong(ws)
    ws.ping()
    await answer
    t.same(await closed(ws), INTERNAL_ERROR)
    t.equal(loggedError(errorLogs(server, 'websocket handler failed')[0]), 'ping hook failed')
  })

  t.test('a pong hook that rejects goes to the error hook', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/pong-rejects', {
        websocket: {
          async pong () { throw new Error('pong hook failed') },
          error (socket, err) { return socket.send(`error: ${(err as Error).message}`) }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/pong-rejects'))
    const got = messages(ws, 1)
    ws.pong()
    t.same(await got, ['error: pong hook failed'])
    t.equal(ws.readyState, ws.OPEN, 'the error hook kept the connection open')
  })

  t.end()
})

t.test('routes and message types', async (t) => {
  t.test('websocket: true (push only): a data message from the client closes 1003', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/push', { websocket: true }, function open (socket) { return socket.send('news') })
    })
    for (const opcode of [Opcode.Text, Opcode.Binary]) {
      const client = await RawClient.open(server.port, '/push')
      await client.until(() => client.frames.length > 0, 5000, 'the pushed message')
      t.same(client.frames[0].payload.toString(), 'news', 'open pushes')
      client.send({ opcode, payload: 'hi' })
      t.same(await client.closing(), { code: 1003, reason: 'this endpoint accepts no messages' }, opcode === Opcode.Text ? 'text' : 'binary')
      client.destroy()
    }
  })

  t.test('without inbound, message gets a string for text and a Buffer for binary', async (t) => {
    const server = await startServer(t, (app) => {
      app.get('/raw', {
        websocket: {
          message (socket, msg) {
            return socket.send(Buffer.isBuffer(msg) ? `buffer ${msg.toString('hex')}` : `${typeof msg} ${msg}`)
          }
        }
      }, function open () {})
    })
    const ws = await connect(server.url('/raw'))
    const got = messages(ws, 2)
    ws.send('{"not":"parsed"}')
    ws.send(Buffer.from([0xde, 0xad]))
    t.same(await got, ['string {"not":"parsed"}', 'buffer dead'])
  })

  t.test('with inbound, a binary frame closes 1003 unless the route sets binary: true', async (t) => {
    const Msg = Type.Object({ n: Type.Number() })
    const server = await startServer(t, (app) => {
      app.get('/json', {
        websocket: { inbound: Msg, message (socket, msg) { return socket.send(`n=${msg.n}`) } }
      }, function open () {})
      app.get('/json-or-binary', {
        websocket: {
          inbound: Msg,
          binary: true,
          message (socket, msg) {
            return socket.send(Buffer.isBuffer(msg) ? `buffer ${msg.length}` : `n=${msg.n}`)
          }
        }
      }, function open () {})
    })
    const strict = await connect(server.url('/json'))
    strict.send(Buffer.from([1, 2, 3]))
    t.same(await closed(strict), { code: 1003, reason: 'binary messages are not accepted' })

    const lenient = await connect(server.url('/json-or-binary'))
    const got = messages(lenient, 2)
    lenient.send(Buffer.from([1, 2, 3]))
    lenient.send('{"n":7}')
    t.same(await got, ['buffer 3', 'n=7'])
  })

  t.test('with inbound, invalid text closes 1007 unless an invalidMessage hook handles it', async (t) => {
    const Msg = Type.Object({ n: Type.Number() })
    const server = await startServer(t, (app) => {
      app.get('/strict', {
        websocket: { inbound: Msg, message () {} }
      }, function open () {})
      app.get('/forgiving', {
        websocket: {
          inbound: Msg,
          message (socket, msg) { return socket.send(`n=${msg.n}`) },
          invalidMessage (socket, err, raw) { return socket.send(`invalid ${err.code} ${raw}`) }
        }
      }, function open () {})
    })
    const strict = await connect(server.url('/strict'))
    strict.send('{"n":"seven"}')
    const verdict = await closed(strict)
    t.equal(verdict.code, 1007)
    t.match(verdict.reason, /\/n/, 'the reason names the failing path')

    const forgiving = await connect(server.url('/forgiving'))
    const got = messages(forgiving, 2)
    forgiving.send('not json')
    forgiving.send('{"n":1}')
    t.same(await got, ['invalid FST_WS_INVALID_MESSAGE not json', 'n=1'])
  })

  t.end()
})

t.test('an invalid message in the queue closes 1007 and drops what is queued behind it', async (t) => {
  const release = deferred()
  const seen: unknown[] = []
  const server = await startServer(t, (app) => {
    app.get('/ws', {
      websocket: {
        inbound: Type.Object({ n: Type.Integer() }),
        message (_socket, msg) { seen.push(msg) }
      }
    }, async function open () { await release.promise })
  })
  const ws = await connect(server.url('/ws'))
  const closing = closed(ws)
  ws.send('{"n":1}')
  ws.send('{"n":"two"}')
  ws.send('{"n":3}')
  setTimeout(() => release.resolve(), 50)
  t.same(await closing, { code: 1007, reason: '/n must be integer' })
  t.same(seen, [{ n: 1 }], 'the message after the invalid one never reached the hook')
})
