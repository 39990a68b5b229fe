// The package as a new user gets it: `npm pack`, installed into a project made outside the
// repository as the README's install section makes it (`npm init -y`, `npm pkg set
// type=module`), with only what its install lines name (plus TypeScript 5.9 and 7), compiled there with strict tsc (plus exactOptionalPropertyTypes and
// noUncheckedIndexedAccess), as ES module (nodenext) and CommonJS; and
// every ```ts / ```js block of README.md and of every page of docs/ compiled in that project,
// the runnable ones run against the README's own route.
//
// Code blocks: every ```ts and ```js block of README.md and docs/*.md is checked. By default a
// block is a complete ES module program and is compiled as it stands. An HTML comment on the
// line before a block changes that:
//   <!-- check: cjs -->             a CommonJS program (compiled as .cts / .cjs)
//   <!-- check: run -->             a complete program that is also run: it must exit by itself,
//                                   with code 0 and nothing logged as an error
//   <!-- check: fragment -->        statements that continue the README's first program
//                                   (its `app`, schemas and route): compiled appended to it
//   <!-- check: route-options -->   the inside of a route's options object (`websocket: {…}`),
//                                   compiled as `app.get('/checked', { … }, open)` in that program
//   <!-- check: fragment run -->    a fragment that is also run: the first program listens on a
//                                   free port, a client joins its route, the fragment runs, the
//                                   app closes; it must exit cleanly without an error logged
//   <!-- check: module NAME -->     a module that other blocks import as './NAME.js' (a shared
//                                   contract): compiled as NAME.ts / NAME.js
//   <!-- check: none -->            not checked (say why in the text)
// Fragments of every page continue the README's first program.
// The first program itself is built with the README's tsconfig.json and run as the README
// says (`node dist/server.js`): a real client joins its route and talks to it.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'

// npm install and tsc 5.9 without skipLibCheck take a while on a busy machine.
t.setTimeout(420_000)

const ROOT = join(__dirname, '..')
const README = readFileSync(join(ROOT, 'README.md'), 'utf8')
// The pages whose blocks are checked: the README first (its first program is the one the
// fragments continue), then every page of docs/.
const PAGES = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter(f => f.endsWith('.md')).sort().map(f => `docs/${f}`)]

interface Block { page: string, lang: 'ts' | 'js', mode: string, code: string, line: number }

function pageBlocks (page: string): Block[] {
  const text = readFileSync(join(ROOT, page), 'utf8')
  const blocks: Block[] = []
  const pattern = /(?:<!-- check: ([a-z -]+) -->\n)?```(ts|js)\n([\s\S]*?)```/g
  for (const m of text.matchAll(pattern)) {
    const line = text.slice(0, m.index).split('\n').length + (m[1] === undefined ? 0 : 1)
    blocks.push({ page, mode: m[1]?.trim() ?? 'program', lang: m[2] as 'ts' | 'js', code: m[3], line })
  }
  return blocks
}

/** The name a `module NAME` block is imported by, else undefined. */
function moduleName (block: Block): string | undefined {
  return /^module ([a-z-]+)$/.exec(block.mode)?.[1]
}

/**
 * The README's install section, its first ```sh block after "## Install": the commands that
 * set up a new project (`npm init`, `npm pkg set`), and the packages its install lines name.
 */
function installLine (): { setup: string[][], deps: string[], devDeps: string[] } {
  const section = README.slice(README.indexOf('## Install'))
  const sh = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? ''
  const setup: string[][] = []
  const deps: string[] = []
  const devDeps: string[] = []
  for (const raw of sh.split('\n')) {
    const words = raw.replace(/#.*/, '').trim().split(/\s+/)
    if (words[0] === 'npm' && (words[1] === 'init' || words[1] === 'pkg')) setup.push(words.slice(1))
    if (words[0] !== 'npm' || words[1] !== 'install') continue
    const dev = words.includes('--save-dev') || words.includes('-D')
    for (const word of words.slice(2)) if (!word.startsWith('-')) (dev ? devDeps : deps).push(word)
  }
  return { setup, deps, devDeps }
}

/** The README's tsconfig.json for its examples: the ```json block of "Running the examples". */
function readmeTsconfig (): string | undefined {
  const section = README.slice(README.indexOf('### Running the examples'))
  return /```json\n([\s\S]*?)```/.exec(section)?.[1]
}

/** A clean environment for npm and tsc: none of the repository's npm or coverage settings. */
function cleanEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|TAP|_TAPJS_|TS_NODE_)/.test(key) || key === 'NODE_OPTIONS' || key === 'NODE_V8_COVERAGE') continue
    env[key] = value
  }
  return env
}

interface Run { code: number | null, stdout: string, stderr: string }

function run (command: string, args: string[], cwd: string, timeout: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, env: cleanEnv(), timeout, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : (typeof err.code === 'number' ? err.code : null)
      resolve({ code, stdout, stderr: stderr + (err?.killed === true ? `\nkilled after ${timeout} ms` : '') })
    })
  })
}

// Through env(1): the test runner adds its loader to the Node processes it sees
// spawned, and TypeScript 7's ESM launcher does not load under it.
function node (args: string[], cwd: string, timeout: number): Promise<Run> {
  return run('env', ['-u', 'NODE_OPTIONS', process.execPath, ...args], cwd, timeout)
}

const blocks = PAGES.flatMap(pageBlocks)
const first = blocks.find(b => b.page === 'README.md' && b.mode === 'program' && b.lang === 'ts' && b.code.includes('app.listen'))

t.test('the README has a first program, and every block of every page a known mode', async (t) => {
  t.ok(first, 'a complete TypeScript program that listens')
  t.ok(PAGES.length > 1, `the docs pages are read too: ${PAGES.join(', ')}`)
  for (const b of blocks) {
    t.ok(['program', 'run', 'cjs', 'fragment', 'route-options', 'fragment run', 'none'].includes(b.mode) || moduleName(b) !== undefined, `${b.page}:${b.line}: mode "${b.mode}"`)
  }
  const modules = blocks.map(moduleName).filter(n => n !== undefined)
  t.equal(new Set(modules).size, modules.length, `one block per module name: ${modules.join(', ')}`)
})

// A user's own files beside the README's: both module systems, and types that must not be `any`.
const PROBE_ESM = `import Fastify from 'fastify'
import typedWebsocket, { fastifyTypedWebsocket, CloseCode, WebSocketClosedError, type TypedWebSocket } from 'fastify-typed-websocket'
type IsAny<T> = 0 extends 1 & T ? true : false
const app = Fastify()
await app.register(typedWebsocket, { maxPendingBytes: 1 << 20 })
await app.register(fastifyTypedWebsocket, { validateOutbound: false })
app.get('/x', { websocket: { message (socket, msg) { const text: string | Buffer = msg; return socket.send(text) } } }, function open (socket) {
  const raw: IsAny<typeof socket.raw> = false
  const ready: number = socket.raw.readyState
  void raw; void ready
})
const client = await app.injectWS('/x')
const notAny: IsAny<typeof client> = false
const code: 1000 = CloseCode.Normal
const err: Error = new WebSocketClosedError('CLOSED')
export type Sock = TypedWebSocket
void notAny; void code; void err
`

const PROBE_NODE10 = `import typedWebsocket = require('fastify-typed-websocket')
import redis = require('fastify-typed-websocket/redis')
import client = require('fastify-typed-websocket/client')
import asyncapi = require('fastify-typed-websocket/asyncapi')
type IsAny<T> = 0 extends 1 & T ? true : false
const checks: [IsAny<typeof redis.redisBroker>, IsAny<typeof client.connect>, IsAny<typeof asyncapi.fastifyTypedWebsocketAsyncapi>, IsAny<typeof typedWebsocket.CloseCode>] = [false, false, false, false]
const unavailable: typeof typedWebsocket.FST_WS_BROKER_UNAVAILABLE = redis.FST_WS_BROKER_UNAVAILABLE
const timeout: client.ClientError = new client.TimeoutError('no answer')
const code: 'FST_WS_ASYNCAPI_SCHEMA' = new asyncapi.FST_WS_ASYNCAPI_SCHEMA('a', 'b', 'c').code
void checks; void unavailable; void timeout; void code
`

const PROBE_CJS = `import Fastify = require('fastify')
import typedWebsocket = require('fastify-typed-websocket')
type IsAny<T> = 0 extends 1 & T ? true : false
async function main (): Promise<void> {
  const app = Fastify()
  await app.register(typedWebsocket.fastifyTypedWebsocket, { pingInterval: 0 })
  app.get('/x', { websocket: true }, function open (socket) {
    const raw: IsAny<typeof socket.raw> = false
    void raw
  })
  const client = await app.injectWS('/x')
  const notAny: IsAny<typeof client> = false
  const code: 1001 = typedWebsocket.CloseCode.GoingAway
  void notAny; void code
}
void main()
`

function indent (code: string): string {
  return code.split('\n').map(l => l === '' ? l : '  ' + l).join('\n')
}

/** The first program without its listen call (a fragment continues it), or listening on a free port. */
function firstProgram (listen: 'none' | 'free-port'): string {
  const code = (first as Block).code
  return listen === 'none'
    ? code.replace(/^await app\.listen\(.*\)\n/m, '')
    : code.replace(/port: 3000/, 'port: 0')
}

t.test('the packed package in a fresh project: strict tsc 5.9 and 7, ESM and CommonJS, and every block of the README and docs/', { timeout: 410_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fastify-typed-websocket-consumer-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const packed = await run('npm', ['pack', '--pack-destination', dir, '--silent', '--ignore-scripts'], ROOT, 60_000)
  t.equal(packed.code, 0, `npm pack: ${packed.stderr}`)
  const tarball = readdirSync(dir).find(f => f.endsWith('.tgz'))
  if (tarball === undefined) return t.fail('no tarball')

  // A new project, made as the README's install section makes it.
  const project = join(dir, 'app')
  mkdirSync(project)
  const { setup, deps, devDeps } = installLine()
  t.ok(setup.some(c => c[0] === 'init'), `the install section starts a project: ${setup.map(c => c.join(' ')).join('; ')}`)
  for (const command of setup) {
    const done = await run('npm', command, project, 60_000)
    t.equal(done.code, 0, `npm ${command.join(' ')}: ${done.stderr.slice(-500)}`)
  }
  t.equal(JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')).type, 'module', 'the project is an ES module project, as the README says')
  t.ok(deps.includes('fastify-typed-websocket'), `the install line names the package (${deps.join(' ')})`)
  // What a checked example imports, the install line names: a user pastes one and runs it.
  for (const block of blocks.filter(b => b.mode !== 'none')) {
    for (const m of block.code.matchAll(/(?:from |require\()'([^']+)'/g)) {
      const name = m[1] as string
      if (name.startsWith('node:') || name.startsWith('.') || name.startsWith('fastify-typed-websocket/')) continue
      t.ok(deps.includes(name), `the install line names ${name}, which ${block.page}:${block.line} imports`)
    }
  }
  t.ok(devDeps.includes('typescript'), 'and TypeScript for TypeScript users')
  const packages = deps.map(d => d === 'fastify-typed-websocket' ? join(dir, tarball) : d)
  // What `npm install typescript` gives today, plus 5.9 under another name.
  const installed = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts',
    ...packages, ...devDeps.filter(d => d !== 'typescript'), 'typescript@7', 'typescript59@npm:typescript@5.9'], project, 150_000)
  t.equal(installed.code, 0, `npm install in the fresh project: ${installed.stderr.slice(-2000)}`)
  if (installed.code !== 0) return

  const files: string[] = []
  const write = (name: string, code: string): void => { writeFileSync(join(project, name), code); files.push(name) }
  write('probe-esm.mts', PROBE_ESM)
  write('probe-cjs.cts', PROBE_CJS)
  const runs: Array<{ file: string, block: Block }> = []
  const programRuns: Array<{ file: string, block: Block }> = []
  for (const [i, block] of blocks.entries()) {
    const name = `${block.page.replace(/\.md$/, '').replace(/\W/g, '-').toLowerCase()}-${String(i).padStart(2, '0')}-line-${block.line}`
    const ext = block.lang === 'ts' ? (block.mode === 'cjs' ? 'cts' : 'mts') : (block.mode === 'cjs' ? 'cjs' : 'mjs')
    if (block.mode === 'none') continue
    const module = moduleName(block)
    if (module !== undefined) write(`${module}.${block.lang}`, block.code)
    if (block.mode === 'program' || block.mode === 'cjs') write(`${name}.${ext}`, block.code)
    if (block.mode === 'run') {
      write(`${name}.${ext}`, block.code)
      programRuns.push({ file: `${name}.${ext}`, block })
    }
    if (block.mode === 'fragment' || block.mode === 'fragment run') write(`${name}.${ext}`, `${firstProgram('none')}\n${block.code}`)
    if (block.mode === 'route-options') {
      write(`${name}.${ext}`, `${firstProgram('none')}\napp.get('/checked', {\n${indent(block.code)}\n}, function open () {})\n`)
    }
    if (block.mode === 'fragment run') {
      // A client on the README's route first, so that a broadcast has someone to reach.
      const observer = "const observer = await app.injectWS('/rooms/lobby?token=secret-token')\n" +
        "observer.on('message', (data) => console.log('observer got ' + String(data)))\n"
      const file = `${name}-run.mts`
      write(file, `${firstProgram('free-port')}\n${observer}${block.code}\nawait new Promise((resolve) => setTimeout(resolve, 300))\nawait app.close()\n`)
      runs.push({ file, block })
    }
  }
  // The strictest settings users turn on: TypeScript 7's `tsc --init` enables the last two.
  const strictest = { strict: true, exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true }
  const base = { target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', ...strictest, allowJs: true, checkJs: true, skipLibCheck: false }
  writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...base, noEmit: true }, files }))
  writeFileSync(join(project, 'tsconfig.skiplib.json'), JSON.stringify({ compilerOptions: { ...base, noEmit: true, skipLibCheck: true }, files }))
  // The first program as the README says to run it: server.ts beside its tsconfig.json, then tsc.
  const tsconfig = readmeTsconfig()
  t.ok(tsconfig, 'the README shows the tsconfig.json its examples are built with')
  const runDir = join(project, 'first')
  mkdirSync(runDir)
  writeFileSync(join(runDir, 'tsconfig.json'), tsconfig ?? '{}')
  writeFileSync(join(runDir, 'server.ts'), firstProgram('free-port'))
  const emitFiles = [...runs, ...programRuns].map(r => r.file)
  writeFileSync(join(project, 'tsconfig.emit.json'), JSON.stringify({ compilerOptions: { ...base, outDir: 'out', rootDir: '.', skipLibCheck: true }, files: emitFiles }))

  const tsc7 = join(project, 'node_modules', 'typescript', 'bin', 'tsc')
  const tsc59 = join(project, 'node_modules', 'typescript59', 'bin', 'tsc')
  const [v7, v59] = await Promise.all([node([tsc7, '--version'], project, 30_000), node([tsc59, '--version'], project, 30_000)])
  t.match(v7.stdout, /^Version 7\./, `typescript@7 is ${v7.stdout.trim()}`)
  t.match(v59.stdout, /^Version 5\.9\./, `typescript@5.9 is ${v59.stdout.trim()}`)
  const checks = await Promise.all([
    node([tsc59, '-p', 'tsconfig.json'], project, 200_000),
    node([tsc7, '-p', 'tsconfig.json'], project, 100_000),
    node([tsc7, '-p', 'tsconfig.skiplib.json'], project, 100_000)
  ])
  for (const [i, what] of ['TypeScript 5.9', 'TypeScript 7', 'TypeScript 7 with skipLibCheck'].entries()) {
    t.equal(checks[i].stdout + checks[i].stderr, '', `${what}: strict tsc reports nothing for ${files.length} files`)
    t.equal(checks[i].code, 0, `${what}: exit code`)
  }

  // node10 resolution reads no "exports": every subpath finds its declarations through
  // "typesVersions". (TypeScript 7 no longer has node10: 5.9 only.)
  const node10 = join(project, 'node10')
  mkdirSync(node10)
  writeFileSync(join(node10, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'commonjs', moduleResolution: 'node10', ...strictest, types: ['node'], skipLibCheck: true, noEmit: true },
    files: ['probe.ts']
  }))
  writeFileSync(join(node10, 'probe.ts'), PROBE_NODE10)
  const listed = await node([tsc59, '-p', node10, '--listFiles'], project, 100_000)
  t.equal(listed.code, 0, `node10: tsc 5.9 compiles every subpath: ${listed.stdout.split('\n').filter(l => l.includes('error TS')).join('\n')}`)
  const pkg = join(project, 'node_modules', 'fastify-typed-websocket')
  const files10 = listed.stdout.split('\n').map(l => l.trim())
  for (const file of ['types/index.d.ts', 'types/redis.d.ts', 'types/asyncapi.d.ts', 'dist/client/index.d.ts']) {
    t.ok(files10.includes(join(pkg, file)), `node10: the declarations come from ${file}`)
  }
  t.notOk(files10.some(f => f.startsWith(pkg) && f.endsWith('.ts') && !f.endsWith('.d.ts')), 'node10: no TypeScript source of the package is compiled in their place')

  // Run: the README's first program, talked to by a real client.
  const program = join(runDir, 'dist', 'server.js')
  const [built59, built7] = await Promise.all([node([tsc59, '-p', runDir, '--noEmit'], project, 100_000), node([tsc7, '-p', runDir], project, 100_000)])
  t.equal(built59.stdout + built59.stderr, '', 'the README\'s tsconfig.json builds the first program with TypeScript 5.9')
  t.equal(built7.stdout + built7.stderr, '', 'and with TypeScript 7')
  t.ok(existsSync(program), 'into dist/server.js, where the README runs it from')
  const emitted = await node([tsc7, '-p', 'tsconfig.emit.json'], project, 100_000)
  t.equal(emitted.code, 0, `the runnable fragments compile to JavaScript: ${emitted.stdout}`)

  await t.test('the first program serves its route', async (t) => {
    const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, program], { cwd: project, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => { child.kill() })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString() })
    child.stderr.on('data', (c: Buffer) => { out += c.toString() })
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`did not listen within 20 s: ${out}`)), 20_000)
      child.stdout.on('data', () => {
        const m = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(out)
        if (m !== null) { clearTimeout(timer); resolve(Number(m[1])) }
      })
    })
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/rooms/lobby`)
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); ws.terminate() })
      ws.on('open', () => { resolve(101); ws.terminate() })
      ws.on('error', () => {})
    })
    t.equal(refused, 401, 'without a token: 401 from the preValidation hook')
    const ws = new WebSocket(`ws://127.0.0.1:${port}/rooms/lobby?token=secret-token`)
    const reply = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no reply within 5 s')), 5000)
      ws.on('open', () => ws.send(JSON.stringify({ type: 'say', text: 'hello' })))
      ws.on('message', (data) => { clearTimeout(timer); resolve(String(data)) })
      ws.on('error', reject)
    })
    t.strictSame(JSON.parse(reply), { type: 'said', from: 'ann', text: 'hello' })
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)))
    ws.send('{"type":"say","text":5}')
    t.equal(await closed, 1007, 'a message failing inbound closes with 1007')
  })

  for (const { file, block } of runs) {
    await t.test(`${block.page}:${block.line} runs against the README's route`, async (t) => {
      const result = await node([join('out', file.replace(/\.mts$/, '.mjs'))], project, 30_000)
      t.equal(result.code, 0, `exit code (stderr: ${result.stderr.slice(-1000)})`)
      const logs = result.stdout.split('\n').filter(l => l.startsWith('{"level"')).map(l => JSON.parse(l) as { level: number, msg: string })
      t.strictSame(logs.filter(l => l.level >= 50), [], 'nothing logged as an error')
      const said = result.stdout.split('\n').filter(l => l.includes('"type":"said"'))
      t.ok(said.length > 0, `the client received what the block sent: ${said.join(' | ')}`)
    })
  }

  for (const { file, block } of programRuns) {
    await t.test(`${block.page}:${block.line} runs and exits by itself`, async (t) => {
      const result = await node([join('out', file.replace(/\.mts$/, '.mjs').replace(/\.ts$/, '.js'))], project, 30_000)
      t.equal(result.code, 0, `exit code (stderr: ${result.stderr.slice(-1000)})`)
      const logs = result.stdout.split('\n').filter(l => l.startsWith('{"level"')).map(l => JSON.parse(l) as { level: number, msg: string })
      t.strictSame(logs.filter(l => l.level >= 50), [], 'nothing logged as an error')
      t.not(result.stdout.trim(), '', `it prints what it shows: ${result.stdout.trim().slice(0, 200)}`)
    })
  }
})
