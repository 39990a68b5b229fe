// redisBroker when Redis is down at ready(): app.close() closes the broker's own connections
// whatever state its start reached, so the process exits, Redis (once up) sees none of them,
// and ioredis prints no "Unhandled error event" for them.
import t from 'tap'
import { fork } from 'node:child_process'
import { join } from 'node:path'
import { childEnv } from './helpers/child'
import { freePort } from './helpers/redis'

t.test('redisBroker with Redis down at ready(): after app.close() the process exits and nothing was printed by ioredis', async (t) => {
  const port = await freePort()
  const loader = process.execArgv.filter(a => a.includes('@tapjs/typescript') || a === '--enable-source-maps')
  const child = fork(join(__dirname, 'fixtures', 'redis-down-close.ts'), [], {
    execArgv: loader,
    env: childEnv({ REDIS_PORT: String(port) }),
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  let output = ''
  child.stdout?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString() })
  const said: unknown[] = []
  child.on('message', (message) => said.push(message))
  const exited = await new Promise<number | string>((resolve) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); resolve('still running after 15 s') }, 15_000)
    child.once('exit', (code) => { clearTimeout(timer); resolve(code ?? 'killed') })
  })
  t.same(said, [{ ready: 'FST_WS_BROKER_UNAVAILABLE' }], 'ready() failed with the broker\'s error')
  t.equal(exited, 0, 'the process exited by itself: no connection left reconnecting')
  t.notMatch(output, /Unhandled error event/, 'ioredis printed nothing for the broker\'s connections')
})
