// The client as published: an ES module a page imports without a bundler (no Node
// built-ins, no dependency but TypeBox on demand), CommonJS too, and small.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { buildSync } from 'esbuild'

const dist = join(__dirname, '..', 'dist', 'client')

t.test('the ES module imports nothing but TypeBox, on demand', async (t) => {
  const code = readFileSync(join(dist, 'index.mjs'), 'utf8')
  const imports = [...code.matchAll(/\bimport\s*\(?\s*["']([^"']+)["']/g)].map(m => m[1])
  t.strictSame(imports, ['@sinclair/typebox/value'], 'one dynamic import, only for validate: true')
  t.notMatch(code, /\brequire\(/, 'no require')
  t.notMatch(code, /["']node:/, 'no Node built-ins')
  t.match(code, /export\s*\{[^}]*\bconnect\b/, 'exports connect')
})

t.test('minified and gzipped it stays under 7 KB (subscriptions included)', async (t) => {
  const { outputFiles } = buildSync({
    entryPoints: [join(__dirname, '..', 'client', 'index.ts')],
    bundle: true,
    format: 'esm',
    minify: true,
    write: false,
    target: 'es2022',
    external: ['@sinclair/typebox/*']
  })
  const size = gzipSync(outputFiles[0].contents, { level: 9 }).length
  t.comment(`client: ${outputFiles[0].contents.length} bytes minified, ${size} bytes gzipped`)
  t.ok(size <= 7 * 1024, `${size} bytes`)
})

t.test('import and require give the same API', async (t) => {
  const esm = await import(join(dist, 'index.mjs'))
  const cjs = require('fastify-typed-websocket/client')
  t.strictSame(Object.keys(esm).sort(), Object.keys(cjs).sort())
  t.equal(typeof cjs.connect, 'function')
})
