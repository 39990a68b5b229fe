// The built package (dist/, made by `npm install` through the `prepare` script), used by
// its name the way users do: require() and import() in a child Node process, and a
// user's TypeScript files compiled against its published types (test/fixtures/consumer-*).
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { RFC_CLOSE_CODES } from './helpers/rfc6455'
import { childEnv } from './helpers/child'

const ROOT = join(__dirname, '..')
const CHILD_TIMEOUT = 60_000
const TSC_TIMEOUT = 110_000

interface Run { code: number | null, stdout: string, stderr: string }

function run (args: string[], timeout: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: ROOT, env: childEnv(), timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : (typeof err.code === 'number' ? err.code : null)
      resolve({ code, stdout, stderr: stderr + (err !== null && err.killed === true ? `\nkilled after ${timeout} ms` : '') })
    })
  })
}

// What both children check and print, given the module (`plugin`) and the names the
// module system exposed. Plain JavaScript: it runs as CommonJS and as an ES module.
const PROBE = `
async function probe (plugin, named, resolved) {
  const Fastify = (await import('fastify')).default
  const WebSocket = (await import('ws')).default
  const { Type } = await import('@sinclair/typebox')
  const out = {
    resolved,
    type: typeof plugin,
    defaultIsPlugin: plugin.default === plugin,
    named: Object.fromEntries(Object.entries(named).map(([k, v]) => [k, typeof v])),
    namedIsPlugin: named.fastifyTypedWebsocket === plugin,
    closeCode: plugin.CloseCode,
    closedError: new plugin.WebSocketClosedError('CLOSED').code,
    displayName: plugin[Symbol.for('fastify.display-name')],
    meta: plugin[Symbol.for('plugin-meta')],
    skipOverride: plugin[Symbol.for('skip-override')]
  }
  const app = Fastify()
  await app.register(named.default ?? plugin, { pingInterval: 0 })
  app.get('/echo', {
    websocket: {
      inbound: Type.Object({ text: Type.String() }),
      outbound: Type.Object({ echo: Type.String() }),
      message (socket, msg) { return socket.send({ echo: msg.text, dropped: true }) }
    }
  }, function open () {})
  await app.listen({ host: '127.0.0.1', port: 0 })
  try {
    const ws = new WebSocket('ws://127.0.0.1:' + app.server.address().port + '/echo')
    out.echo = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no echo within 5 s')), 5000)
      ws.on('open', () => ws.send(JSON.stringify({ text: 'round trip' })))
      ws.on('message', (data) => { clearTimeout(timer); resolve(String(data)) })
      ws.on('error', reject)
    })
    const closing = new Promise((resolve) => ws.on('close', (code, reason) => resolve([code, String(reason)])))
    ws.send('{"text":1}')
    out.invalid = await closing
  } finally {
    await app.close()
  }
  console.log(JSON.stringify(out))
}
`

const CJS = `${PROBE}
const plugin = require('fastify-typed-websocket')
const { fastifyTypedWebsocket, CloseCode, WebSocketClosedError } = require('fastify-typed-websocket')
probe(plugin, { default: plugin.default, fastifyTypedWebsocket, CloseCode, WebSocketClosedError }, require.resolve('fastify-typed-websocket'))
  .catch((err) => { console.error(err); process.exitCode = 1 })
`

const ESM = `${PROBE}
import plugin, { fastifyTypedWebsocket, CloseCode, WebSocketClosedError } from 'fastify-typed-websocket'
import * as namespace from 'fastify-typed-websocket'
import { fileURLToPath } from 'node:url'
await probe(plugin, { default: namespace.default, fastifyTypedWebsocket, CloseCode, WebSocketClosedError }, fileURLToPath(import.meta.resolve('fastify-typed-websocket')))
`

const CLOSE_CODES = RFC_CLOSE_CODES

const built = existsSync(join(ROOT, 'dist', 'plugin', 'index.js'))

t.test('dist/ is built', async (t) => {
  t.ok(built, 'dist/plugin/index.js exists (npm install builds it through "prepare"; or run npm run build)')
})

/** The asserts checkProbe uses (a subtest's `t` has them all). */
type Asserts = Pick<typeof t, 'equal' | 'strictSame' | 'match' | 'fail'>

function checkProbe (t: Asserts, result: Run, style: string): void {
  t.equal(result.code, 0, `${style}: the child exited cleanly${result.stderr === '' ? '' : `: ${result.stderr}`}`)
  let out: Record<string, unknown> = {}
  try {
    out = JSON.parse(result.stdout.trim().split('\n').pop() ?? '')
  } catch {
    t.fail(`${style}: no result printed: ${result.stdout}`)
    return
  }
  t.equal(out.resolved, join(ROOT, 'dist', 'plugin', 'index.js'), `${style}: the package name resolves to the build`)
  t.equal(out.type, 'function')
  t.equal(out.defaultIsPlugin, true, '.default is the plugin')
  t.equal(out.namedIsPlugin, true, 'the named fastifyTypedWebsocket is the plugin')
  t.strictSame(out.named, { default: 'function', fastifyTypedWebsocket: 'function', CloseCode: 'object', WebSocketClosedError: 'function' })
  t.strictSame(out.closeCode, CLOSE_CODES)
  t.equal(out.closedError, 'FST_WS_CLOSED')
  t.equal(out.displayName, 'fastify-typed-websocket')
  t.match(out.meta, { name: 'fastify-typed-websocket', fastify: '5.x' })
  t.equal(out.skipOverride, true, 'wrapped by fastify-plugin')
  t.equal(out.echo, '{"echo":"round trip"}', 'one echo round-trip through a real server, serialized with the outbound schema')
  t.strictSame(out.invalid, [1007, '/text must be string'])
}

t.test('require(\'fastify-typed-websocket\')', { skip: !built && 'dist/ is not built' }, async (t) => {
  checkProbe(t, await run(['-e', CJS], CHILD_TIMEOUT), 'require')
})

t.test('import(\'fastify-typed-websocket\')', { skip: !built && 'dist/ is not built' }, async (t) => {
  checkProbe(t, await run(['--input-type=module', '-e', ESM], CHILD_TIMEOUT), 'import')
})

t.test('a user\'s TypeScript compiles against the published types', async (t) => {
  const tsc = join('node_modules', 'typescript', 'bin', 'tsc')
  const styles = [
    ['CommonJS (module: commonjs)', 'consumer-cjs'],
    ['ES module (module: nodenext)', 'consumer-esm']
  ]
  // in parallel: each takes seconds
  const results = await Promise.all(styles.map(([, dir]) =>
    run([tsc, '-p', join('test', 'fixtures', dir, 'tsconfig.json')], TSC_TIMEOUT)))
  for (const [i, [style]] of styles.entries()) {
    const { code, stdout, stderr } = results[i]
    t.equal(code, 0, `${style}: tsc --noEmit is clean`)
    t.equal(stdout + stderr, '', `${style}: no diagnostics`)
  }
})
