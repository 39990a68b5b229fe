// The call benchmark works: a tiny run on the three servers, every answer checked (numbers not judged here).
import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'

t.test('node bench/calls.js --quick checks every answer and prints the table and both ratios', async (t) => {
  const root = join(__dirname, '..')
  const env = { ...process.env }
  // The benchmark's child processes are not part of the plugin's coverage.
  delete env.NODE_V8_COVERAGE
  delete env.NODE_OPTIONS
  const result = await new Promise<{ code: number, stdout: string, stderr: string }>((resolve) => {
    execFile(process.execPath, [join(root, 'bench', 'calls.js'), '--quick'], { cwd: root, env, timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number(err.code ?? 1), stdout, stderr })
    })
  })
  t.equal(result.code, 0, `exit code (stderr: ${result.stderr.slice(-500)})`)
  for (const row of ['ws id echo', 'fastify-typed-websocket', 'socket.io emitWithAck', 'typed / ws id echo:', 'typed / socket.io:']) {
    t.match(result.stdout, row, `the output has ${row}`)
  }
  t.match(result.stdout, /fastify-typed-websocket +\d+\.\d+ +\d+/, 'a figure for this plugin')
})
