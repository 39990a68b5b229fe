// The public types under the strictest settings users turn on (`strict`,
// `exactOptionalPropertyTypes`, `noUncheckedIndexedAccess`, no skipLibCheck): a user's
// module that passes values which may be undefined compiles, and subscribing a socket
// whose outbound type cannot hold a topic's messages is one error, one sentence.
import t from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'

t.setTimeout(180_000)

const ROOT = join(__dirname, '..')
const TSC = require.resolve('typescript/bin/tsc')

t.test('strict.mts compiles; cannot-hold.mts fails with one sentence naming the topic', async (t) => {
  const output = await new Promise<string>((resolve) => {
    execFile(process.execPath, [TSC, '-p', join('test', 'fixtures', 'strict-types', 'tsconfig.json')], { cwd: ROOT, timeout: 170_000 },
      (_err, stdout, stderr) => resolve(stdout + stderr))
  })
  const errors = output.split('\n').filter(line => /error TS\d+/.test(line))
  t.strictSame(errors.filter(line => !line.includes('cannot-hold.mts')), [], 'the strict user module compiles')
  t.equal(errors.length, 1, `one error in all: ${output}`)
  t.match(errors[0], /^test\/fixtures\/strict-types\/cannot-hold\.mts\(13,\d+\): error TS2345: /)
  t.match(errors[0], 'Topic \\"rooms\\": this socket\'s outbound type cannot hold the topic\'s messages; add the topic\'s message schema to the route\'s outbound')
  t.notMatch(errors[0], /TypedWebSocket|FastifyRequest/, 'no wall of generics')
})
