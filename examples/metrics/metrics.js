'use strict'

// Prometheus metrics for fastify-typed-websocket, fed only from its diagnostics channels:
// nothing in the app has to change, and nothing is measured while nobody subscribes.
//
//   const { createMetrics } = require('./examples/metrics/metrics')
//   const metrics = createMetrics()
//   app.get('/metrics', async (request, reply) => reply.type(metrics.contentType).send(await metrics.scrape()))
//
// or, for any app without touching it (here the chat example, metrics on :9464):
//
//   node -r ./examples/metrics/preload.js examples/chat/server.js
//   curl http://127.0.0.1:9464/metrics

const diagnostics = require('node:diagnostics_channel')
const client = require('prom-client')

const CHANNEL = 'fastify-typed-websocket:'

/**
 * @param {object} [options]
 * @param {import('prom-client').Registry} [options.registry] where the metrics go (default: a new one)
 * @param {string} [options.prefix] prefix of every metric name (default `websocket_`)
 */
function createMetrics ({ registry = new client.Registry(), prefix = 'websocket_' } = {}) {
  const registers = [registry]
  const connections = new client.Gauge({ name: `${prefix}connections`, help: 'WebSocket connections open now', registers })
  const opened = new client.Counter({ name: `${prefix}connections_opened_total`, help: 'WebSocket connections accepted', registers })
  const messages = new client.Counter({ name: `${prefix}messages_total`, help: 'Data messages, by direction (in, out)', labelNames: ['direction'], registers })
  const bytes = new client.Counter({ name: `${prefix}message_bytes_total`, help: 'Payload bytes of data messages, by direction', labelNames: ['direction'], registers })
  const closes = new client.Counter({ name: `${prefix}closes_total`, help: 'Closed connections, by close code and who closed', labelNames: ['code', 'closed_by'], registers })
  const duration = new client.Histogram({
    name: `${prefix}connection_duration_seconds`,
    help: 'How long connections stayed open',
    buckets: [1, 10, 60, 300, 1800, 3600, 4 * 3600],
    registers
  })
  const published = new client.Counter({ name: `${prefix}topic_messages_published_total`, help: 'Topic messages published, by topic', labelNames: ['topic'], registers })
  const fanout = new client.Counter({ name: `${prefix}topic_deliveries_total`, help: 'Topic messages delivered to local subscribers, by topic', labelNames: ['topic'], registers })
  const rateLimited = new client.Counter({ name: `${prefix}rate_limit_hits_total`, help: 'Messages that found the rate limit bucket empty, by action', labelNames: ['action'], registers })
  const drops = new client.Counter({ name: `${prefix}send_buffer_drops_total`, help: 'Connections cut off for not reading (1008 send buffer full)', registers })
  const invalid = new client.Counter({ name: `${prefix}invalid_messages_total`, help: 'Inbound messages that were not JSON or failed the inbound schema', registers })

  const handlers = {
    open () {
      connections.inc()
      opened.inc()
    },
    close (event) {
      connections.dec()
      closes.inc({ code: String(event.code), closed_by: event.closedBy })
      duration.observe(event.durationMs / 1000)
    },
    message (event) {
      messages.inc({ direction: event.direction })
      bytes.inc({ direction: event.direction }, event.bytes)
    },
    publish (event) {
      published.inc({ topic: event.topic })
      fanout.inc({ topic: event.topic }, event.subscribers)
    },
    'rate-limit' (event) { rateLimited.inc({ action: event.action }) },
    drop () { drops.inc() },
    'invalid-message' () { invalid.inc() }
  }
  for (const [name, handler] of Object.entries(handlers)) diagnostics.subscribe(CHANNEL + name, handler)

  return {
    registry,
    contentType: registry.contentType,
    /** The metrics in Prometheus's text format. */
    scrape: () => registry.metrics(),
    /** Stops listening to the channels. */
    close () {
      for (const [name, handler] of Object.entries(handlers)) diagnostics.unsubscribe(CHANNEL + name, handler)
    }
  }
}

module.exports = { createMetrics }
