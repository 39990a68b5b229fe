// Imported first by a test file: the plugin it then loads reads no internals of ws or Fastify.
process.env.FASTIFY_TYPED_WEBSOCKET_INTERNALS = 'off'
