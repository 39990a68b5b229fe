// The fan-out benchmark works: a tiny run of both parts on every peer (numbers not judged here).
import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'

t.test('node bench/fanout.js --quick checks every delivery and prints both tables', async (t) => {
  const root = join(__dirname, '..')
  const env = { ...process.env }
  // The benchmark's child processes are not part of the plugin's coverage.
  delete env.NODE_V8_COVERAGE
  delete env.NODE_OPTIONS
  const result = await new Promise<{ code: number, stdout: string, stderr: string }>((resolve) => {
    execFile(process.execPath, [join(root, 'bench', 'fanout.js'), '--quick'], { cwd: root, env, timeout: 150_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number(err.code ?? 1), stdout, stderr })
    })
  })
  t.equal(result.code, 0, `exit code (stderr: ${result.stderr.slice(-500)})`)
  for (const row of ['(a) one at a time', '(b) bursts of 100', 'slow readers']) {
    t.match(result.stdout, row, `the output has ${row}`)
  }
  for (const peer of ['ws loop', 'ws once', 'socket.io', 'typed', 'ws send']) {
    t.match(result.stdout, peer, `the output has ${peer}`)
  }
  t.match(result.stderr, /checked\)/, 'the subscribers report what they checked')
  t.notMatch(result.stderr, /FAILED/, 'no delivery failed its check')
})
