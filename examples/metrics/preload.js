'use strict'

// Adds a Prometheus endpoint to any process that uses fastify-typed-websocket:
//
//   node -r ./examples/metrics/preload.js examples/chat/server.js
//   curl http://127.0.0.1:9464/metrics        (METRICS_PORT, METRICS_HOST to change)
//
// The app's own port stays as it is; the metrics listen on their own, like
// Prometheus exporters do, so they are not exposed with the app.

const http = require('node:http')
const { createMetrics } = require('./metrics')

const metrics = createMetrics()
const port = Number(process.env.METRICS_PORT ?? 9464)
const host = process.env.METRICS_HOST ?? '127.0.0.1'

const server = http.createServer((request, response) => {
  if (request.method !== 'GET' || request.url !== '/metrics') {
    response.writeHead(404).end()
    return
  }
  metrics.scrape().then((text) => {
    response.writeHead(200, { 'content-type': metrics.contentType }).end(text)
  }, (err) => {
    response.writeHead(500).end(String(err))
  })
})
server.listen(port, host, () => {
  const { port: actual } = server.address()
  console.log(`metrics on http://${host}:${actual}/metrics`)
})
// The metrics never keep a process alive that would otherwise end.
server.unref()
