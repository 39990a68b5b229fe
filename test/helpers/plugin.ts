// The plugin from its TypeScript source (so coverage maps to plugin/), typed as the published package.
import type PublishedPlugin = require('fastify-typed-websocket')

const source = require('../../plugin/index') as typeof PublishedPlugin

export const typedWebsocket = source
export const { CloseCode, WebSocketClosedError } = source
export default source
