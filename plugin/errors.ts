import createError from '@fastify/error'
import type { FST_WS_ASYNCAPI_SCHEMA as PublishedAsyncapiSchema } from '../types/asyncapi'

/** Thrown by `socket.send()` and `socket.ping()` once the connection is closing or closed. */
export const WebSocketClosedError = createError('FST_WS_CLOSED', 'WebSocket is not open: %s', 500)

export const FST_WS_NOT_GET = createError(
  'FST_WS_NOT_GET', 'Route "%s": the websocket option is only allowed on GET routes, not %s', 500, TypeError)

export const FST_WS_INVALID_OPTION = createError('FST_WS_INVALID_OPTION', '%s: %s', 500, TypeError)

export const FST_WS_PLUGIN_NOT_REGISTERED = createError(
  'FST_WS_PLUGIN_NOT_REGISTERED',
  'Route "%s" has a websocket option, but fastify-typed-websocket was not registered for it when the route was declared, ' +
  'so it would answer as plain HTTP. Register the plugin first and await it: "await app.register(typedWebsocket)" ' +
  'before the route (or declare the route in a plugin registered after it)', 500)

export const FST_WS_INVALID_SCHEMA = createError(
  'FST_WS_INVALID_SCHEMA', 'Route "%s": the %s schema does not compile: %s', 500)

export const FST_WS_INVALID_MESSAGE = createError('FST_WS_INVALID_MESSAGE', '%s', 400)

export const FST_WS_INVALID_OUTBOUND = createError(
  'FST_WS_INVALID_OUTBOUND', 'Outbound message does not match the outbound schema: %s', 500, TypeError)

export const FST_WS_SUBPROTOCOL_NOT_OFFERED = createError(
  'FST_WS_SUBPROTOCOL_NOT_OFFERED', 'Subprotocol "%s" was selected, but the client did not offer it', 500)

export const FST_WS_NO_UPGRADE_SOCKET = createError(
  'FST_WS_NO_UPGRADE_SOCKET', 'A WebSocket upgrade needs a raw connection; use app.injectWS() instead of app.inject()', 400)

export const FST_WS_UPGRADE_REFUSED = createError(
  'FST_WS_UPGRADE_REFUSED', 'The WebSocket upgrade was refused with HTTP %s', 500)

export const FST_WS_DUPLICATE_TOPIC = createError(
  'FST_WS_DUPLICATE_TOPIC', 'A topic named "%s" is already declared', 500)

export const FST_WS_TOPIC_NOT_READY = createError(
  'FST_WS_TOPIC_NOT_READY', 'Topic "%s": %s() was called %s', 500)

export const FST_WS_OUTBOUND_CANNOT_HOLD = createError(
  'FST_WS_OUTBOUND_CANNOT_HOLD',
  'Topic "%s": the outbound schema of route "%s" cannot hold the topic\'s messages (a message of the topic fails it: %s); ' +
  'add the topic\'s message schema to the route\'s outbound, e.g. in a Type.Union', 500, TypeError)

export const FST_WS_BROKER_UNAVAILABLE = createError(
  'FST_WS_BROKER_UNAVAILABLE', 'The broker did not answer: %s', 503)

export const FST_WS_ASYNCAPI_SCHEMA = createError(
  'FST_WS_ASYNCAPI_SCHEMA', '%s: the %s schema cannot be described in AsyncAPI: %s', 500, TypeError)

export const FST_WS_INVALID_PRESENCE = createError(
  'FST_WS_INVALID_PRESENCE', 'Topic "%s": the presence does not match the presence schema: %s', 400, TypeError)

export const FST_WS_UNKNOWN_METHOD = createError(
  'FST_WS_UNKNOWN_METHOD', 'Method "%s" is not among the route\'s clientRequests', 500, TypeError)

export const FST_WS_REQUEST_TIMEOUT = createError(
  'FST_WS_REQUEST_TIMEOUT', 'No answer to %s within %s ms', 500)

export const FST_WS_REQUEST_ABORTED = createError(
  'FST_WS_REQUEST_ABORTED', 'The call of %s was aborted', 500)

export const FST_WS_INVALID_RESULT = createError(
  'FST_WS_INVALID_RESULT', 'The result of %s does not match its schema: %s', 500)

// Each error as its published declaration says it is (code and status): they cannot drift.
type Errors = typeof import('./errors')
type Published = typeof import('../types')
type Checked<T extends Pick<Published, keyof Published & keyof Errors> & { FST_WS_ASYNCAPI_SCHEMA: typeof PublishedAsyncapiSchema }> = T
export type Catalogue = Checked<Errors>
