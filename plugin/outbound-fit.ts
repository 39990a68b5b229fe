import type { WebSocket } from 'ws'
import type { Codec } from './codec'

export interface RouteOutbound { url: string, codec: Codec }

/** The outbound serializer of the route each socket came in on, for topics to check against. */
export const routeOutbound = new WeakMap<WebSocket, RouteOutbound>()

type Json = Record<string, unknown>

const NONE = Symbol('no example')

/**
 * A simple value of a JSON schema: literals, enums and required properties filled in
 * with the first thing that fits. Whatever it gives is checked against the schema itself
 * by the caller, so a wrong guess only means no example.
 */
function exampleOf (schema: unknown): unknown {
  if (schema === null || typeof schema !== 'object') return NONE
  const s = schema as Json
  if ('const' in s) return s.const
  if (Array.isArray(s.enum)) return s.enum[0]
  const branches = s.anyOf ?? s.oneOf
  if (Array.isArray(branches)) {
    for (const branch of branches) {
      const value = exampleOf(branch)
      if (value !== NONE) return value
    }
    return NONE
  }
  switch (s.type) {
    case 'object': {
      const properties = (s.properties ?? {}) as Json
      const value: Json = {}
      for (const name of Array.isArray(s.required) ? s.required as string[] : []) {
        const property = exampleOf(properties[name])
        if (property === NONE) return NONE
        value[name] = property
      }
      return value
    }
    case 'string': return 'x'.repeat(typeof s.minLength === 'number' ? s.minLength : 0)
    case 'integer':
    case 'number': return typeof s.minimum === 'number' ? Math.ceil(s.minimum) : 0
    case 'boolean': return false
    case 'null': return null
    case 'array': return []
    default: return NONE
  }
}

/** An example message of `schema` that `isValid` accepts, or undefined when none was found. */
export function exampleMessage (schema: object, isValid: (value: unknown) => boolean): { value: unknown } | undefined {
  const value = exampleOf(schema)
  return value !== NONE && isValid(value) ? { value } : undefined
}

/**
 * Why the route's outbound cannot hold `example` (a message of the topic), or undefined when it
 * can — or when the route does not check what it sends (validateOutbound: false).
 */
export function outboundRefusal (codec: Codec, example: unknown): string | undefined {
  try {
    codec.encode(example)
    return undefined
  } catch (err) {
    return (err as Error).message.replace(/^Outbound message does not match the outbound schema: /, '')
  }
}
