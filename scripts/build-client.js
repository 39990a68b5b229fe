'use strict'

// After tsc (which emits the CommonJS build and its declarations in dist/client/), bundle
// the client as one ES module that a page can import without a bundler. TypeBox stays
// external: it is loaded only with `validate: true`.
const { copyFileSync } = require('node:fs')
const { join } = require('node:path')
const { buildSync } = require('esbuild')

const root = join(__dirname, '..')
const out = join(root, 'dist', 'client')

buildSync({
  entryPoints: [join(root, 'client', 'index.ts')],
  outfile: join(out, 'index.mjs'),
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  external: ['@sinclair/typebox', '@sinclair/typebox/*'],
  sourcemap: true,
  logLevel: 'warning'
})
copyFileSync(join(out, 'index.d.ts'), join(out, 'index.d.mts'))
