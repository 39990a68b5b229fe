import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import fastJson from 'fast-json-stringify'
import { FST_WS_INVALID_MESSAGE, FST_WS_INVALID_OUTBOUND, FST_WS_INVALID_SCHEMA } from './errors'

type Schemas = Record<string, unknown>

/** One ajv per set of shared schemas (`app.addSchema()`), so `$ref` resolves to them. */
export function createAjv (schemas: Schemas): Ajv {
  // The message is checked as sent: no coercion, no defaults, no removal.
  const ajv = new Ajv({ coerceTypes: false, useDefaults: false, removeAdditional: false, strict: false })
  addFormats(ajv)
  for (const id of Object.keys(schemas)) ajv.addSchema(schemas[id] as object, id)
  return ajv
}

/** Error given to the `invalidMessage` hook: `validation` (and `errors`) hold ajv's errors. */
import type { InvalidMessageError } from '../types'
export type { InvalidMessageError }

export interface Codec {
  /** Parses and checks a text message; throws an `InvalidMessageError`. */
  decode (text: string): unknown
  /** Serializes an outbound object (checks it first under `validateOutbound`). */
  encode (value: unknown): string
}

export interface CodecSettings {
  url: string
  inbound: object | undefined
  outbound: object | undefined
  validateOutbound: boolean
  ajv: () => Ajv
  schemas: Schemas
}

/** Compiles one schema of a route; `which` names it in the error (`inbound`, `requests.join.params`…). */
export function compileValidator (settings: Pick<CodecSettings, 'url' | 'ajv'>, which: string, schema: object): ValidateFunction {
  try {
    const ajv = settings.ajv()
    // The same schema may have been shared with app.addSchema(): use that copy.
    const id = (schema as { $id?: unknown }).$id
    const shared = typeof id === 'string' ? ajv.getSchema(id) : undefined
    return shared ?? ajv.compile(schema)
  } catch (err) {
    throw new FST_WS_INVALID_SCHEMA(settings.url, which, (err as Error).message)
  }
}

function describe (error: ErrorObject): string {
  const path = error.instancePath
  if (error.keyword === 'required') return `${path}/${String(error.params.missingProperty)} is required`
  if (error.keyword === 'additionalProperties') return `${path}/${String(error.params.additionalProperty)} is not allowed`
  return `${path === '' ? '/' : path} ${error.message ?? 'is invalid'}`
}

type Json = Record<string, unknown>

/** Follows a JSON pointer (`/a/0/b`, or ajv's `#/anyOf/1`) into a value. */
function follow (root: unknown, pointer: string): unknown {
  let node = root
  for (const raw of pointer.split('/').slice(1)) {
    if (node === null || typeof node !== 'object') return undefined
    node = (node as Json)[raw.replace(/~1/g, '/').replace(/~0/g, '~')]
  }
  return node
}

/** The constants a union branch uses as its tag, e.g. `{ type: 'say' }`. */
function tagsOf (branch: unknown): Array<[string, unknown]> {
  const properties = (branch as Json | undefined)?.properties as Record<string, unknown> | undefined
  if (properties === undefined) return []
  const tags: Array<[string, unknown]> = []
  for (const key of Object.keys(properties)) {
    const property = properties[key]
    if (property !== null && typeof property === 'object' && 'const' in property) tags.push([key, property.const])
  }
  return tags
}

/**
 * For a failed union (TypeBox's Type.Union is `anyOf`), the errors of the branch
 * whose tag the message carries; or, when no branch's tag matches, which tags are allowed.
 */
function explainUnion (errors: ErrorObject[], union: ErrorObject, schema: object, value: unknown): string | undefined {
  const branches = follow(schema, union.schemaPath.slice(1))
  const data = follow(value, union.instancePath) as Json
  if (!Array.isArray(branches) || data === null || typeof data !== 'object') return undefined
  const tagged: string[] = []
  for (let i = 0; i < branches.length; i++) {
    const tags = tagsOf(branches[i])
    if (tags.length === 0) continue
    tagged.push(...tags.map(([key, constant]) => `${key}=${JSON.stringify(constant)}`))
    if (tags.every(([key, constant]) => data[key] === constant)) {
      const prefix = `${union.schemaPath}/${i}/`
      const own = errors.find(e => e.schemaPath.startsWith(prefix))
      return own === undefined ? undefined : describe(own)
    }
  }
  if (tagged.length === 0) return undefined
  return `${union.instancePath === '' ? '/' : union.instancePath} must match one of ${tagged.join(', ')}`
}

/**
 * The most useful of ajv's errors as one line: the failing path and rule. For
 * unions, the branch the message meant (by its tag) rather than the first one.
 */
export function explainValidation (errors: ErrorObject[], schema?: object, value?: unknown): string {
  const union = errors.find(e => e.keyword === 'anyOf' || e.keyword === 'oneOf')
  if (union !== undefined && schema !== undefined) {
    const explained = explainUnion(errors, union, schema, value)
    if (explained !== undefined) return explained
  }
  const specific = errors.find(e => e.keyword !== 'anyOf' && e.keyword !== 'oneOf') ?? errors[0]
  return describe(specific)
}

function invalidMessage (message: string, errors: ErrorObject[] | null, cause?: unknown): InvalidMessageError {
  const err = new FST_WS_INVALID_MESSAGE(message) as unknown as InvalidMessageError
  err.validation = errors
  err.errors = errors
  if (cause !== undefined) err.cause = cause
  return err
}

function parseJson (text: string): unknown {
  try {
    return JSON.parse(text)
  } catch (cause) {
    // An empty message is what a client heartbeat sends: say so, rather than "Unexpected end".
    const detail = text === '' ? 'an empty message (a client heartbeat? this route has no heartbeat: true)' : (cause as Error).message
    throw invalidMessage(`invalid JSON: ${detail}`, null, cause)
  }
}

function outboundError (message: string, errors: ErrorObject[] | null, cause?: unknown): Error {
  const err = new FST_WS_INVALID_OUTBOUND(message)
  Object.assign(err, { validation: errors })
  if (cause !== undefined) err.cause = cause
  return err
}

/**
 * fast-json-stringify's own complaint, its schema pointer (`#/properties/list/items`)
 * turned into the path of the value (`/list/*`).
 */
function serializerMismatch (err: Error): string {
  const mismatch = /^The value of '#([^']*)' does not match schema definition\.$/.exec(err.message)
  if (mismatch === null) return err.message
  const path = mismatch[1].replace(/\/properties\//g, '/').replace(/\/items(?=\/|$)/g, '/*')
  return `${path === '' ? '/' : path} does not match the schema`
}

/** Compiles a route's schemas once; the returned functions only check. */
export function compileCodec (settings: CodecSettings): Codec {
  const { inbound, outbound } = settings
  let decode = parseJson
  if (inbound !== undefined) {
    const validate = compileValidator(settings, 'inbound', inbound)
    decode = (text) => {
      const value = parseJson(text)
      if (!validate(value)) {
        const errors = validate.errors as ErrorObject[]
        throw invalidMessage(explainValidation(errors, inbound, value), errors)
      }
      return value
    }
  }

  let encode: (value: unknown) => string = JSON.stringify
  if (outbound !== undefined) {
    let stringify: (value: unknown) => string
    try {
      stringify = fastJson(outbound, { schema: settings.schemas as Record<string, never> })
    } catch (err) {
      throw new FST_WS_INVALID_SCHEMA(settings.url, 'outbound', (err as Error).message)
    }
    const serialize = (value: unknown): string => {
      try {
        return stringify(value)
      } catch (err) {
        throw outboundError(serializerMismatch(err as Error), null, err)
      }
    }
    encode = serialize
    if (settings.validateOutbound) {
      const validate = compileValidator(settings, 'outbound', outbound)
      encode = (value) => {
        if (!validate(value)) {
          const errors = validate.errors as ErrorObject[]
          throw outboundError(explainValidation(errors, outbound, value), errors)
        }
        return serialize(value)
      }
    }
  }
  return { decode, encode }
}
