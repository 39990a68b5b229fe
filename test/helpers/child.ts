import { fork, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'

/**
 * The environment for a child process a test starts (a server, a node of a
 * cluster, a packed-package check): the parent's, without coverage collection
 * or tap's process tracking, plus `extra`.
 */
export function childEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra }
  delete env.NODE_V8_COVERAGE
  delete env.NODE_OPTIONS
  for (const key of Object.keys(env)) if (key.startsWith('_TAPJS_')) delete env[key]
  return env
}

/**
 * A test fixture (test/fixtures/NAME.ts) in a process of its own, run with the
 * same TypeScript loader as the test and --expose-gc, so that its memory is the
 * server's alone; killed at teardown.
 */
export function forkFixture (t: { teardown (fn: () => void): void }, name: string, env: Record<string, string> = {}): ChildProcess {
  const loader = process.execArgv.filter(a => a.includes('@tapjs/typescript') || a === '--enable-source-maps' || a.includes('ws-alias'))
  const child = fork(join(__dirname, '..', 'fixtures', `${name}.ts`), [], {
    execArgv: [...loader, '--expose-gc'],
    env: childEnv(env),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  t.teardown(() => { child.kill() })
  return child
}

/** The child's next IPC message; rejects after `ms`. */
export function nextMessage<T> (child: ChildProcess, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message from the child process within ${ms} ms`)), ms)
    child.once('message', (message) => {
      clearTimeout(timer)
      resolve(message as T)
    })
  })
}
