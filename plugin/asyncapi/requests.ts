// A route's JSON-RPC methods in the AsyncAPI document: per method a message for the request
// (the JSON-RPC envelope around its params), one for the result and one for the error answer
// (the standard codes and the method's app errors), and an operation with its reply.
import type { Json, JsonObject } from './schema'

type Add = (message: JsonObject, direction: string) => Json
type Convert = (what: string) => (schema: unknown) => JsonObject

export interface RouteMethods {
  requests: Record<string, unknown> | undefined
  clientRequests: Record<string, unknown> | undefined
}

const id: JsonObject = { description: 'Chosen by the caller; the answer carries it back.', oneOf: [{ type: 'string' }, { type: 'number' }] }
const jsonrpc: JsonObject = { const: '2.0' }
const standardCodes = [-32700, -32600, -32601, -32602, -32603, -32800]

function envelope (properties: JsonObject, required: string[]): JsonObject {
  return { type: 'object', required: ['jsonrpc', ...required], properties: { jsonrpc, ...properties } }
}

/** The error member of an answer: a standard code without data, or one of the method's app errors. */
function errorSchema (errors: Array<{ name: string, code: number, data: JsonObject }>): JsonObject {
  const standard: JsonObject = {
    type: 'object',
    required: ['code', 'message'],
    description: '-32700 parse error, -32600 invalid request, -32601 unknown method, -32602 invalid params (the message names the failing path), -32603 internal error, -32800 cancelled',
    properties: { code: { enum: standardCodes }, message: { type: 'string' } }
  }
  if (errors.length === 0) return standard
  return {
    oneOf: [standard, ...errors.map(({ name, code, data }): JsonObject => ({
      type: 'object',
      title: name,
      required: ['code', 'message', 'name'],
      properties: { code: { const: code }, name: { const: name }, message: { type: 'string' }, data }
    }))]
  }
}

/**
 * Adds the messages and operations of a route's `requests` (received, answered by the server)
 * and `clientRequests` (sent, answered by the client). App error codes are numbered as the
 * server numbers them: from 1, in the order names first appear in `requests`.
 */
export function describeMethods (methods: RouteMethods, channel: string, operationId: string, add: Add, convert: Convert, operations: JsonObject): void {
  const codes = new Map<string, number>()
  const sides: Array<[string, Record<string, unknown> | undefined, 'receive' | 'send']> = [
    ['requests', methods.requests, 'receive'],
    ['clientRequests', methods.clientRequests, 'send']
  ]
  for (const [list, declared, action] of sides) {
    if (declared === undefined) continue
    const asked = action === 'receive' ? 'received' : 'sent'
    const answered = action === 'receive' ? 'sent' : 'received'
    for (const name of Object.keys(declared)) {
      const method = declared[name] as { params?: unknown, result?: unknown, errors?: Record<string, unknown> }
      const properties: JsonObject = { id, method: { const: name } }
      if (method.params !== undefined) properties.params = convert(`${list}.${name}.params`)(method.params)
      const request = add({
        name,
        title: `${name} (request)`,
        summary: action === 'receive' ? `A call of ${name}, answered by the server` : `The server calls ${name}; the client answers`,
        contentType: 'application/json',
        payload: envelope(properties, method.params === undefined ? ['id', 'method'] : ['id', 'method', 'params'])
      }, asked)
      const result = add({
        name: `${name}.result`,
        title: `${name} (result)`,
        contentType: 'application/json',
        payload: envelope({ id, result: method.result === undefined ? {} : convert(`${list}.${name}.result`)(method.result) }, ['id', 'result'])
      }, answered)
      // (The client's app errors are its own: the server does not number them.)
      const errors = Object.keys(action === 'receive' ? method.errors ?? {} : {}).map((error) => {
        let code = codes.get(error)
        if (code === undefined) codes.set(error, code = codes.size + 1)
        const data = (method.errors as Record<string, unknown>)[error]
        return { name: error, code, data: convert(`${list}.${name}.errors.${error}`)(data) }
      })
      const error = add({
        name: `${name}.error`,
        title: `${name} (error)`,
        contentType: 'application/json',
        payload: envelope({ id, error: errorSchema(errors) }, ['id', 'error'])
      }, answered)
      const operation: JsonObject = {
        action,
        channel: { $ref: channel },
        summary: action === 'receive' ? `JSON-RPC method ${name}` : `JSON-RPC method ${name}, called by the server`,
        messages: [request],
        reply: { channel: { $ref: channel }, messages: [result, error] }
      }
      if (errors.length > 0) operation['x-app-errors'] = errors.map(({ name, code }) => ({ name, code }))
      operations[`${operationId}.${action === 'receive' ? 'request' : 'call'}.${name}`] = operation
    }
    const cancel = add({
      name: 'cancelRequest',
      title: 'Cancel a request ($/cancelRequest)',
      summary: 'A notification: the request with this id is answered -32800 and its handler\'s signal aborts',
      contentType: 'application/json',
      payload: envelope({ method: { const: '$/cancelRequest' }, params: { type: 'object', required: ['id'], properties: { id } } }, ['method', 'params'])
    }, asked)
    operations[`${operationId}.${action === 'receive' ? 'cancel' : 'cancelCall'}`] = {
      action,
      channel: { $ref: channel },
      summary: action === 'receive' ? 'The client cancels one of its requests' : 'The server cancels one of its calls',
      messages: [cancel]
    }
  }
}
