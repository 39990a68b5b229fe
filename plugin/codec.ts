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
export interface InvalidMessageError extends Error {
  code: 'FST_WS_INVALID_MESSAGE'
  validation: ErrorObject[] | null
  errors: ErrorObject[] | null
}

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

function compileValidator (settings: CodecSettings, which: 'inbound' | 'outbound', schema: object): ValidateFunction {
  try {
    return settings.ajv().compile(schema)
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

/** The most specific of ajv's errors: a failing branch of a union rather than the union itself. */
export function explainValidation (errors: ErrorObject[]): string {
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
    throw invalidMessage(`invalid JSON: ${(cause as Error).message}`, null, cause)
  }
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
        throw invalidMessage(explainValidation(errors), errors)
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
    encode = stringify
    if (settings.validateOutbound) {
      const validate = compileValidator(settings, 'outbound', outbound)
      encode = (value) => {
        if (!validate(value)) {
          const errors = validate.errors as ErrorObject[]
          const err = new FST_WS_INVALID_OUTBOUND(explainValidation(errors))
          Object.assign(err, { validation: errors })
          throw err
        }
        return stringify(value)
      }
    }
  }
  return { decode, encode }
}
