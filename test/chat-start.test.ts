// Starting the chat example as its README says: `npm start` on a port that is taken, and
// the Redis recipe's own command line.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createServer, type Server } from 'node:net'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { childEnv } from './helpers/child'
import { freePort } from './helpers/redis'

const ROOT = join(__dirname, '..')
const SERVER = join(ROOT, 'examples', 'chat', 'server.js')

interface Exit { code: number | null, output: string }

function runServer (env: Record<string, string>, ms = 20_000): Promise<Exit> {
  const child = spawn(process.execPath, [SERVER], { cwd: ROOT, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (c: Buffer) => { output += c.toString() })
  child.stderr.on('data', (c: Buffer) => { output += c.toString() })
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), ms)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
}

t.test('npm start on a port in use says so and says to set PORT', async (t) => {
  const port = await freePort()
  const taken: Server = createServer()
  await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve))
  t.teardown(() => { taken.close() })
  const dir = mkdtempSync(join(tmpdir(), 'chat-secret-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const { code, output } = await runServer({ PORT: String(port), CHAT_SECRET_FILE: join(dir, '.chat-secret') })
  t.equal(code, 1)
  t.equal(output.trim(), `Port ${port} on 127.0.0.1 is already in use (another copy of this example, or another server). ` +
    `Set PORT to a free one, e.g. PORT=${port + 1} npm start`)
})

/** The `redis-server …` command lines of a README's shell blocks. */
function redisCommands (file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8')
  const lines: string[] = []
  for (const m of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of (m[1] as string).split('\n')) if (line.startsWith('redis-server ')) lines.push(line.replace(/\s+#.*$/, ''))
  }
  return lines
}

t.test('the Redis recipes listen on 127.0.0.1 only', async (t) => {
  const commands = [...redisCommands('README.md'), ...redisCommands('examples/chat/README.md')]
  t.equal(commands.length, 2, 'one recipe in each README')
  for (const command of commands) {
    const port = await freePort()
    const args = command.split(/\s+/).slice(1).map(a => a === "''" ? '' : a)
    args[args.indexOf('--port') + 1] = String(port)
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => { child.kill('SIGKILL') })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('redis-server did not start')), 10_000)
      child.stdout.on('data', (c: Buffer) => {
        if (c.toString().includes('Ready to accept connections')) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 1 })
    await client.connect()
    t.strictSame(await client.config('GET', 'bind'), ['bind', '127.0.0.1'], command)
    client.disconnect()
  }
  for (const file of ['README.md', 'examples/chat/README.md']) {
    for (const m of readFileSync(join(ROOT, file), 'utf8').matchAll(/docker run ([^`\n]*)/g)) {
      t.match(m[1], /-p 127\.0\.0\.1:/, `${file}: docker publishes Redis on 127.0.0.1 only`)
    }
  }
})
