// A route's client subscriptions in the AsyncAPI document: the subscribable topics with their
// message schema, the reserved calls `$/subscribe`, `$/unsubscribe` and `$/presence` with their
// answers, and the `$/message` envelope each topic's messages arrive in.
import type { Json, JsonObject } from './schema'

type Add = (message: JsonObject, direction: string) => Json
type Convert = (what: string) => (schema: unknown) => JsonObject

/** What the document reads of an entry of a route's `subscriptions`. */
interface Entry {
  topic: { name: string, description: { message: unknown, presence: unknown } }
  authorize?: unknown
  presence?: unknown
}

const id: JsonObject = { description: 'Chosen by the caller; the answer carries it back.', oneOf: [{ type: 'string' }, { type: 'number' }] }
const jsonrpc: JsonObject = { const: '2.0' }
const position: JsonObject = {
  type: 'object',
  required: ['epoch', 'offset'],
  description: 'A position: offsets compare only within one epoch',
  properties: { epoch: { type: 'string' }, offset: { type: 'integer', minimum: 0 } }
}
const refusal: JsonObject = {
  oneOf: [
    {
      type: 'object',
      required: ['code', 'message'],
      description: '-32602: an unknown topic, a key that is not a non-empty string, already subscribed, or more than maxSubscriptions; -32603: the broker failed',
      properties: { code: { enum: [-32602, -32603] }, message: { type: 'string' } }
    },
    {
      type: 'object',
      title: 'forbidden',
      required: ['code', 'message', 'name'],
      description: 'The route\'s authorize refused the key',
      properties: { code: { const: 403 }, name: { const: 'forbidden' }, message: { type: 'string' } }
    }
  ]
}

function envelope (properties: JsonObject, required: string[]): JsonObject {
  return { type: 'object', required: ['jsonrpc', ...required], properties: { jsonrpc, ...properties } }
}

/** Adds the subscription calls and each topic's `$/message` to a route's channel. */
export function describeSubscriptions (subscriptions: Record<string, unknown> | undefined, channel: string, operationId: string,
  add: Add, convert: Convert, operations: JsonObject): JsonObject[] {
  if (subscriptions === undefined) return []
  const names = Object.keys(subscriptions)
  const target: JsonObject = {
    type: 'object',
    required: ['topic', 'key'],
    properties: { topic: { enum: names }, key: { type: 'string', minLength: 1 } }
  }
  const call = (method: string, name: string, title: string, params: JsonObject, result: JsonObject, error: JsonObject, summary: string): void => {
    const request = add({ name, title: `${title} (${method})`, contentType: 'application/json', payload: envelope({ id, method: { const: method }, params }, ['id', 'method', 'params']) }, 'received')
    const answer = add({ name: `${name}.result`, title: `${title} (result)`, contentType: 'application/json', payload: envelope({ id, result }, ['id', 'result']) }, 'sent')
    const failed = add({ name: `${name}.error`, title: `${title} (error)`, contentType: 'application/json', payload: envelope({ id, error }, ['id', 'error']) }, 'sent')
    operations[`${operationId}.${name}`] = {
      action: 'receive',
      channel: { $ref: channel },
      summary,
      messages: [request],
      reply: { channel: { $ref: channel }, messages: [answer, failed] }
    }
  }
  call('$/subscribe', 'subscribe', 'Subscribe to a key', {
    ...target,
    properties: {
      ...target.properties as JsonObject,
      since: { description: 'The position the client holds: what follows it is replayed when history covers it', oneOf: [position, { type: 'string', pattern: '^[^:]*:[0-9]+$' }, { type: 'integer', minimum: 0 }] }
    }
  }, {
    type: 'object',
    required: ['epoch', 'offset', 'recovered'],
    description: 'Live messages start at offset + 1; with recovered, what followed since was sent first',
    properties: { epoch: { type: 'string' }, offset: { type: 'integer', minimum: 0 }, recovered: { type: 'boolean' } }
  }, refusal, 'The client subscribes to a key of a topic; refusals are answers and the connection stays open')
  call('$/unsubscribe', 'unsubscribe', 'Unsubscribe from a key', target, { type: 'null' }, refusal, 'The client stops a subscription')
  call('$/presence', 'presence', 'The members of a key', target, { type: 'array', items: {} }, refusal, 'The members of a key the client is subscribed to, on every node')
  const described: JsonObject[] = []
  for (const name of names) {
    const entry = subscriptions[name] as Entry
    const data = convert(`subscriptions.${name}`)(entry.topic.description.message)
    const message = add({
      name: `message.${name}`,
      title: `A message of topic ${name} ($/message)`,
      summary: `One message of a key of "${name}", to every client subscribed to the key, in offset order`,
      contentType: 'application/json',
      payload: envelope({
        method: { const: '$/message' },
        params: {
          type: 'object',
          required: ['topic', 'key', 'offset', 'data'],
          properties: { topic: { const: name }, key: { type: 'string' }, offset: { type: 'integer', minimum: 1 }, data }
        }
      }, ['method', 'params'])
    }, 'sent')
    operations[`${operationId}.message.${name}`] = { action: 'send', channel: { $ref: channel }, summary: `Messages of topic ${name} to its client subscribers`, messages: [message] }
    described.push({ topic: name, message: data, authorize: entry.authorize !== undefined, presence: entry.presence !== undefined })
  }
  return described
}
