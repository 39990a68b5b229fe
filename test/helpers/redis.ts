import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'

interface Teardown { teardown (fn: () => unknown): void }

export interface RedisServer {
  port: number
  /** redis://127.0.0.1:port */
  url: string
  /** SIGKILL: no shutdown, no save; resolves once the process is gone. */
  kill (): Promise<void>
  /** A fresh, empty redis-server on the same port (after kill()). */
  restart (): Promise<void>
}

const START_TIMEOUT = 10_000

/** A free TCP port on 127.0.0.1, as the OS hands it out. */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

function launch (port: number): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  return new Promise((resolve, reject) => {
    let output = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`redis-server did not start on port ${port} within ${START_TIMEOUT} ms:\n${output}`))
    }, START_TIMEOUT)
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes('Ready to accept connections')) {
        clearTimeout(timer)
        child.stdout?.removeAllListeners('data')
        child.stdout?.resume()
        resolve(child)
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`redis-server exited with ${code}:\n${output}`))
    })
  })
}

function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })
}

/** A real redis-server without persistence on a free port, stopped at teardown. */
export async function startRedis (t: Teardown): Promise<RedisServer> {
  const port = await freePort()
  let child = await launch(port)
  t.teardown(() => stop(child))
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill: () => stop(child),
    async restart () {
      await stop(child)
      child = await launch(port)
    }
  }
}
