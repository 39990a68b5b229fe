import { FST_WS_ASYNCAPI_SCHEMA } from '../errors'

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
export type JsonObject = { [key: string]: Json }

// What JSON Schema's `type` may name; TypeBox's Date, Uint8Array, Function, Undefined,
// BigInt... use names outside this list and have no JSON form.
const jsonTypes = new Set(['string', 'number', 'integer', 'boolean', 'object', 'array', 'null'])

/** Characters AsyncAPI allows in the keys of channels, operations and components. */
export function componentKey (name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_')
}

/**
 * Turns schemas into plain JSON for the document: TypeBox's symbols dropped, kinds that are
 * not JSON Schema refused, and schemas added with `app.addSchema()` and referenced by `$ref`
 * moved to `components.schemas`.
 */
export class SchemaConverter {
  readonly components: JsonObject = {}
  #names = new Map<string, string>()

  /** `where` and `what` name the schema in errors: `Route "/chat/:room"`, `inbound`. */
  convert (schema: unknown, where: string, what: string, shared: Record<string, unknown>): JsonObject {
    return this.#walk(schema, where, what, '', shared) as JsonObject
  }

  #walk (value: unknown, where: string, what: string, path: string, shared: Record<string, unknown>): Json {
    if (Array.isArray(value)) return value.map((item, i) => this.#walk(item, where, what, `${path}/${i}`, shared))
    if (value === null || typeof value !== 'object') return value as Json
    const schema = value as Record<string, unknown>
    for (const type of Array.isArray(schema.type) ? schema.type : [schema.type]) {
      if (typeof type === 'string' && !jsonTypes.has(type)) {
        throw new FST_WS_ASYNCAPI_SCHEMA(where, what, `${path === '' ? 'the schema' : path} is of type "${type}", which JSON has no value for`)
      }
    }
    const out: JsonObject = {}
    for (const key of Object.keys(schema)) {
      const item = schema[key]
      if (item === undefined) continue
      out[key] = key === '$ref' && typeof item === 'string'
        ? this.#ref(item, where, what, shared)
        : this.#walk(item, where, what, `${path}/${key}`, shared)
    }
    return out
  }

  #ref (ref: string, where: string, what: string, shared: Record<string, unknown>): string {
    const hash = ref.indexOf('#')
    const id = hash === -1 ? ref : ref.slice(0, hash)
    const fragment = hash === -1 ? '' : ref.slice(hash + 1)
    let name = this.#names.get(id)
    if (name === undefined) {
      const target = shared[id]
      if (target === undefined) throw new FST_WS_ASYNCAPI_SCHEMA(where, what, `$ref "${ref}" names no schema added with app.addSchema() (local references cannot be moved into the document)`)
      name = componentKey(id)
      this.#names.set(id, name)
      const { $id: _id, ...rest } = target as Record<string, unknown>
      this.components[name] = this.convert(rest, where, `"${id}"`, shared)
    }
    return `#/components/schemas/${name}${fragment}`
  }
}
