// `npm run bench` works: a tiny run of every scenario on all three servers (numbers not judged here).
import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'

t.test('node bench/run.js --quick runs every scenario and prints the table', async (t) => {
  const root = join(__dirname, '..')
  const env = { ...process.env }
  // The benchmark's child processes are not part of the plugin's coverage.
  delete env.NODE_V8_COVERAGE
  delete env.NODE_OPTIONS
  const result = await new Promise<{ code: number, stdout: string, stderr: string }>((resolve) => {
    execFile(process.execPath, [join(root, 'bench', 'run.js'), '--quick'], { cwd: root, env, timeout: 110_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number(err.code ?? 1), stdout, stderr })
    })
  })
  t.equal(result.code, 0, `exit code (stderr: ${result.stderr.slice(-500)})`)
  for (const row of ['echo CPU/msg', 'handshake CPU/conn', 'idle RSS/conn', 'latency p50']) {
    t.match(result.stdout, row, `the table has ${row}`)
  }
  for (const server of ['ws', '@fastify/websocket', 'fastify-typed-websocket']) {
    t.match(result.stdout, server, `the table has a ${server} column`)
  }
})
