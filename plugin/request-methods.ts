import type Ajv from 'ajv'
import type { ErrorObject, ValidateFunction } from 'ajv'
import fastJson from 'fast-json-stringify'
import { compileValidator, explainValidation } from './codec'
import { FST_WS_INVALID_OPTION, FST_WS_INVALID_SCHEMA } from './errors'
import type { Handler } from './options'

/** A check compiled once: `undefined` when the value passes, else the failing path and rule. */
export type Check = (value: unknown) => string | undefined

/** A declared app error of a method: its code on the wire and the check of its `data`. */
export interface AppError {
  code: number
  check: Check | undefined
}

/** A method the client may call, compiled once per route. */
export interface ServerMethod {
  name: string
  handler: Handler
  params: Check | undefined
  /** Checks (under validateOutbound) and serializes a handler's result. */
  result: (value: unknown) => string
  /** The result's mismatch, or undefined; always undefined without validateOutbound. */
  checkResult: Check | undefined
  errors: Map<string, AppError>
}

/** A method the server may call on the client. */
export interface ClientMethod {
  name: string
  params: Check | undefined
  result: Check | undefined
  /** The names of its declared app errors: a client's error with one of them keeps its name. */
  errors: Set<string>
}

export interface MethodSettings {
  url: string
  requests: Record<string, unknown> | undefined
  handlers: Record<string, unknown> | undefined
  clientRequests: Record<string, unknown> | undefined
  validateOutbound: boolean
  ajv: () => Ajv
  schemas: Record<string, unknown>
}

const methodKeys = new Set(['params', 'result', 'errors'])

function isObject (value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function checkOf (settings: MethodSettings, which: string, schema: unknown): Check | undefined {
  if (schema === undefined) return undefined
  const validate: ValidateFunction = compileValidator(settings, which, schema as object)
  return (value) => validate(value) ? undefined : explainValidation(validate.errors as ErrorObject[], schema as object, value)
}

function declaration (where: string, list: string, name: string, value: unknown): Record<string, unknown> {
  if (name.startsWith('rpc.') || name.startsWith('$/')) {
    throw new FST_WS_INVALID_OPTION(where, `${list}.${name}: method names starting with "rpc." or "$/" are reserved`)
  }
  if (!isObject(value)) throw new FST_WS_INVALID_OPTION(where, `${list}.${name} must be an object { params?, result?, errors? }`)
  for (const key of Object.keys(value)) {
    if (!methodKeys.has(key)) throw new FST_WS_INVALID_OPTION(where, `${list}.${name}: unknown key "${key}"`)
  }
  return value
}

function serializerOf (settings: MethodSettings, which: string, schema: unknown): (value: unknown) => string {
  if (schema === undefined) return (value) => JSON.stringify(value) ?? 'null'
  try {
    return fastJson(schema as object, { schema: settings.schemas as Record<string, never> })
  } catch (err) {
    throw new FST_WS_INVALID_SCHEMA(settings.url, which, (err as Error).message)
  }
}

/**
 * Compiles a route's `requests`, `handlers` and `clientRequests` once. App errors
 * get codes from 1 up, in the order their names first appear on the route, the
 * same name sharing one code: outside JSON-RPC's reserved range, stable for a
 * given declaration.
 */
export function compileMethods (settings: MethodSettings): { server: Map<string, ServerMethod>, client: Map<string, ClientMethod> } {
  const where = `Route "${settings.url}"`
  const server = new Map<string, ServerMethod>()
  const client = new Map<string, ClientMethod>()
  const requests = settings.requests ?? {}
  const handlers = settings.handlers ?? {}
  for (const name of Object.keys(handlers)) {
    if (!Object.hasOwn(requests, name)) throw new FST_WS_INVALID_OPTION(where, `handlers.${name}: no such method in requests`)
  }
  const codes = new Map<string, number>()
  for (const name of Object.keys(requests)) {
    const declared = declaration(where, 'requests', name, requests[name])
    const handler = handlers[name]
    if (typeof handler !== 'function') throw new FST_WS_INVALID_OPTION(where, `handlers.${name} must be a function`)
    const errors = new Map<string, AppError>()
    if (declared.errors !== undefined) {
      if (!isObject(declared.errors)) throw new FST_WS_INVALID_OPTION(where, `requests.${name}.errors must be an object of schemas keyed by error name`)
      for (const error of Object.keys(declared.errors)) {
        let code = codes.get(error)
        if (code === undefined) codes.set(error, code = codes.size + 1)
        errors.set(error, { code, check: checkOf(settings, `requests.${name}.errors.${error}`, declared.errors[error]) })
      }
    }
    const serialize = serializerOf(settings, `requests.${name}.result`, declared.result)
    const checkResult = settings.validateOutbound ? checkOf(settings, `requests.${name}.result`, declared.result) : undefined
    server.set(name, {
      name,
      handler: handler as Handler,
      params: checkOf(settings, `requests.${name}.params`, declared.params),
      result: serialize,
      checkResult,
      errors
    })
  }
  const clientRequests = settings.clientRequests ?? {}
  for (const name of Object.keys(clientRequests)) {
    const declared = declaration(where, 'clientRequests', name, clientRequests[name])
    client.set(name, {
      name,
      params: settings.validateOutbound ? checkOf(settings, `clientRequests.${name}.params`, declared.params) : undefined,
      result: checkOf(settings, `clientRequests.${name}.result`, declared.result),
      errors: new Set(isObject(declared.errors) ? Object.keys(declared.errors) : [])
    })
  }
  return { server, client }
}
