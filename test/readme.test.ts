// The README's complete programs compile against the published types, as a user would copy them.
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

const root = join(__dirname, '..')
const readme = readFileSync(join(root, 'README.md'), 'utf8')
const programs = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map(m => m[1]).filter(code => code.includes('import Fastify'))

t.test('the README has a complete typed program', async (t) => {
  t.ok(programs.length >= 1)
})

t.test('README programs compile with tsc (strict, nodenext)', async (t) => {
  // Inside the package, so 'fastify-typed-websocket' resolves to this package by name.
  const dir = join(root, '.tap', 'readme')
  mkdirSync(dir, { recursive: true })
  const files = programs.map((code, i) => {
    const file = `program-${i}.mts`
    writeFileSync(join(dir, file), code)
    return file
  })
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, noEmit: true, skipLibCheck: true, types: ['node']
    },
    files
  }))
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
  const result = await new Promise<{ code: number, output: string }>((resolve) => {
    execFile(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], { timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : Number(err.code ?? 1), output: stdout + stderr })
    })
  })
  t.equal(result.output, '', 'tsc reports nothing')
  t.equal(result.code, 0)
})
