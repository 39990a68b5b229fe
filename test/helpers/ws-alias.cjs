// Preloaded (node --require) to run the suite on another ws: every require of
// `ws` or `ws/...` resolves to the package named by WS_UNDER_TEST (e.g. ws-floor,
// ws-latest, installed as npm aliases of exact ws versions).
'use strict'
const Module = require('node:module')
const alias = process.env.WS_UNDER_TEST
if (alias !== undefined && alias !== '') {
  const resolve = Module._resolveFilename
  Module._resolveFilename = function (request, parent, ...rest) {
    if (request === 'ws' || request.startsWith('ws/')) request = alias + request.slice(2)
    return resolve.call(this, request, parent, ...rest)
  }
}
