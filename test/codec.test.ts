// Unit tests of plugin/codec.ts: ajv set up to check messages as sent, the reason
// a validation error gives, decoding, encoding and outbound validation.
import t from 'tap'
import { Type } from '@sinclair/typebox'
import type Ajv from 'ajv'
import type { ErrorObject } from 'ajv'
import { compileCodec, createAjv, explainValidation, type Codec, type InvalidMessageError } from '../plugin/codec'

type Schemas = Record<string, unknown>

interface Build {
  inbound?: object
  outbound?: object
  validateOutbound?: boolean
  schemas?: Schemas
  url?: string
}

/** A codec as route.ts compiles it; `ajvCalls` counts how often it asked for an ajv. */
function build (settings: Build): Codec & { ajvCalls: () => number, ajv: () => Ajv } {
  const schemas = settings.schemas ?? {}
  let ajv: Ajv | undefined
  let calls = 0
  const getAjv = (): Ajv => {
    calls++
    ajv ??= createAjv(schemas)
    return ajv
  }
  const codec = compileCodec({
    url: settings.url ?? '/test',
    inbound: settings.inbound,
    outbound: settings.outbound,
    validateOutbound: settings.validateOutbound ?? false,
    schemas,
    ajv: getAjv
  })
  return { ...codec, ajvCalls: () => calls, ajv: getAjv }
}

/** The error decode() throws for `text`. */
function decodeError (codec: Codec, text: string): InvalidMessageError {
  try {
    codec.decode(text)
  } catch (err) {
    return err as InvalidMessageError
  }
  throw new Error(`decode accepted ${text}`)
}

function reason (codec: Codec, value: unknown): string {
  return decodeError(codec, JSON.stringify(value)).message
}

const Say = Type.Object({ type: Type.Literal('say'), text: Type.String({ maxLength: 5 }) }, { additionalProperties: false })
const Typing = Type.Object({ type: Type.Literal('typing') }, { additionalProperties: false })
const Move = Type.Object({ type: Type.Literal('move'), x: Type.Integer(), y: Type.Integer() }, { additionalProperties: false })
const ClientMsg = Type.Union([Say, Typing, Move])

t.test('createAjv checks messages as sent: no coercion, no defaults, no removal', async (t) => {
  const ajv = createAjv({})
  const validate = ajv.compile({
    type: 'object',
    properties: { n: { type: 'integer' }, d: { type: 'string', default: 'x' } },
    required: ['n'],
    additionalProperties: false
  })
  t.notOk(validate({ n: '5' }), '"5" is not an integer')
  t.notOk(validate({ n: 5, extra: 1 }), 'an extra property fails instead of being removed')
  const value = { n: 5 }
  t.ok(validate(value))
  t.strictSame(value, { n: 5 }, 'no default was added')

  const loose = ajv.compile({ type: 'object', properties: { a: { type: 'array', items: { type: 'number' } } }, additionalProperties: { type: 'string' } })
  const kept = { a: [1, 2], b: 'kept' }
  t.ok(loose(kept))
  t.strictSame(kept, { a: [1, 2], b: 'kept' })
  t.notOk(loose({ a: ['1'] }), 'no coercion inside arrays either')
})

t.test('createAjv: formats, unknown keywords and shared schemas', async (t) => {
  const ajv = createAjv({
    Point: { $id: 'Point', type: 'object', properties: { x: { type: 'integer' } }, required: ['x'] }
  })
  const email = ajv.compile({ type: 'string', format: 'email' })
  t.ok(email('a@b.example'))
  t.notOk(email('not an email'), 'ajv-formats is loaded')
  const date = ajv.compile({ type: 'string', format: 'date-time' })
  t.ok(date('2024-01-02T03:04:05Z'))
  t.notOk(date('yesterday'))
  t.doesNotThrow(() => ajv.compile({ type: 'string', 'x-custom': true }), 'not strict: unknown keywords are allowed')
  const ref = ajv.compile({ $ref: 'Point#' })
  t.ok(ref({ x: 1 }))
  t.notOk(ref({ x: 1.5 }))
  const typeboxRef = ajv.compile(Type.Ref('Point'))
  t.ok(typeboxRef({ x: 1 }))
  t.notOk(typeboxRef({}))
})

t.test('decode: a valid message is returned exactly as sent', async (t) => {
  const codec = build({ inbound: ClientMsg })
  t.strictSame(codec.decode('{"type":"say","text":"hi"}'), { type: 'say', text: 'hi' })
  t.strictSame(codec.decode('{"type":"move","x":1,"y":-2}'), { type: 'move', x: 1, y: -2 })
  t.strictSame(codec.decode(' { "type" : "typing" } '), { type: 'typing' })
  t.strictSame(codec.decode('{"type":"say","text":"👋你好"}'), { type: 'say', text: '👋你好' }, 'maxLength counts characters, not UTF-16 units')

  const loose = build({ inbound: Type.Object({ a: Type.String(), d: Type.Optional(Type.String({ default: 'x' })) }) })
  t.strictSame(loose.decode('{"a":"1","extra":{"deep":[1,null]}}'), { a: '1', extra: { deep: [1, null] } },
    'extra properties are kept and no default is filled in')
})

t.test('decode without inbound: JSON is parsed, nothing is checked', async (t) => {
  const codec = build({})
  t.strictSame(codec.decode('[1,"two",{"three":3}]'), [1, 'two', { three: 3 }])
  t.equal(codec.decode('"text"'), 'text')
  t.equal(codec.decode('null'), null)
  t.equal(codec.ajvCalls(), 0, 'no validator is compiled')
  const err = decodeError(codec, 'nope')
  t.equal(err.code, 'FST_WS_INVALID_MESSAGE')
  t.match(err.message, /^invalid JSON: /)
})

t.test('invalid JSON', async (t) => {
  const codec = build({ inbound: ClientMsg })
  for (const text of ['{', '', 'undefined', "{'type':'say'}", '{"type":"say",}', '\u{1F600}']) {
    const err = decodeError(codec, text)
    t.ok(err instanceof Error, JSON.stringify(text))
    t.equal(err.code, 'FST_WS_INVALID_MESSAGE')
    t.equal((err as unknown as { statusCode: number }).statusCode, 400)
    t.match(err.message, /^invalid JSON: \S/)
    t.equal(err.validation, null)
    t.equal(err.errors, null)
    t.ok(err.cause instanceof SyntaxError, 'the parser\'s error is the cause')
  }
})

t.test('schema errors: the reason names the path and the rule', async (t) => {
  const Obj = Type.Object({
    text: Type.String({ maxLength: 10 }),
    n: Type.Optional(Type.Integer({ minimum: 0 })),
    tags: Type.Optional(Type.Array(Type.String())),
    nested: Type.Optional(Type.Object({ inner: Type.Boolean() }, { additionalProperties: false }))
  }, { additionalProperties: false })
  const codec = build({ inbound: Obj })
  const cases: Array<[unknown, string]> = [
    [{ text: 5 }, '/text must be string'],
    [{}, '/text is required'],
    [{ text: 'a', extra: 1 }, '/extra is not allowed'],
    [{ text: 'a'.repeat(11) }, '/text must NOT have more than 10 characters'],
    [{ text: 'a', n: '5' }, '/n must be integer'],
    [{ text: 'a', n: 1.5 }, '/n must be integer'],
    [{ text: 'a', n: -1 }, '/n must be >= 0'],
    [{ text: 'a', tags: ['x', 2] }, '/tags/1 must be string'],
    [{ text: 'a', nested: {} }, '/nested/inner is required'],
    [{ text: 'a', nested: { inner: true, more: 1 } }, '/nested/more is not allowed'],
    [{ text: 'a', nested: { inner: 'true' } }, '/nested/inner must be boolean'],
    [5, '/ must be object'],
    [null, '/ must be object'],
    [[], '/ must be object'],
    ['text', '/ must be object']
  ]
  for (const [value, expected] of cases) {
    const err = decodeError(codec, JSON.stringify(value))
    t.equal(err.message, expected, JSON.stringify(value))
    t.equal(err.code, 'FST_WS_INVALID_MESSAGE')
    t.ok(Array.isArray(err.validation) && err.validation.length > 0, 'ajv\'s errors')
    t.equal(err.errors, err.validation, 'errors is validation')
    t.equal(err.cause, undefined)
  }
})

t.test('unions: the branch the message meant, by its tag', async (t) => {
  const codec = build({ inbound: ClientMsg })
  t.equal(reason(codec, { type: 'say', text: 5 }), '/text must be string')
  t.equal(reason(codec, { type: 'say' }), '/text is required')
  t.equal(reason(codec, { type: 'say', text: 'toolong' }), '/text must NOT have more than 5 characters')
  t.equal(reason(codec, { type: 'say', text: 'hi', extra: 1 }), '/extra is not allowed')
  t.equal(reason(codec, { type: 'move', x: '1', y: 2 }), '/x must be integer', 'not the first branch\'s error')
  t.equal(reason(codec, { type: 'move', x: 1 }), '/y is required')
  t.equal(reason(codec, { type: 'typing', extra: 1 }), '/extra is not allowed')
  t.equal(reason(codec, { type: 'shout', text: 'x' }), '/ must match one of type="say", type="typing", type="move"', 'wrong tag')
  t.equal(reason(codec, { text: 'x' }), '/ must match one of type="say", type="typing", type="move"', 'no tag')
  t.equal(reason(codec, 'say'), '/ must be object')
  const err = decodeError(codec, '{"type":"shout"}')
  t.ok(err.validation?.some(e => e.keyword === 'anyOf'), 'the raw ajv errors include the union itself')
})

t.test('unions nested in an object', async (t) => {
  const codec = build({
    inbound: Type.Object({
      id: Type.Integer(),
      body: Type.Union([
        Type.Object({ kind: Type.Literal('a'), v: Type.Integer() }),
        Type.Object({ kind: Type.Literal('b'), w: Type.String() })
      ])
    })
  })
  t.equal(reason(codec, { id: 1, body: { kind: 'b', w: 1 } }), '/body/w must be string')
  t.equal(reason(codec, { id: 1, body: { kind: 'a' } }), '/body/v is required')
  t.equal(reason(codec, { id: 1, body: { kind: 'c' } }), '/body must match one of kind="a", kind="b"')
  t.equal(reason(codec, { id: 1, body: 'x' }), '/body must be object')
  t.equal(reason(codec, { id: 'x', body: { kind: 'a', v: 1 } }), '/id must be integer')
})

t.test('unions without tags fall back to the first specific error', async (t) => {
  const codec = build({ inbound: Type.Union([Type.String({ maxLength: 2 }), Type.Integer()]) })
  t.equal(reason(codec, 'abc'), '/ must NOT have more than 2 characters')
  t.equal(reason(codec, 1.5), '/ must be string')
  const objects = build({ inbound: Type.Union([Type.Object({ a: Type.String() }), Type.Object({ b: Type.Integer() })]) })
  t.equal(reason(objects, {}), '/a is required')
  const oneOf = build({ inbound: { oneOf: [{ type: 'string' }, { type: 'integer' }] } })
  t.equal(reason(oneOf, true), '/ must be string')
})

t.test('a union branch with a boolean property schema still explains', async (t) => {
  // `true` is a valid JSON Schema (anything goes); ajv compiles it.
  const codec = build({
    inbound: {
      anyOf: [
        { type: 'object', properties: { kind: { const: 'a' }, data: true }, required: ['kind', 'x'] },
        { type: 'object', properties: { kind: { const: 'b' } }, required: ['kind'] }
      ]
    }
  })
  t.strictSame(codec.decode('{"kind":"b"}'), { kind: 'b' })
  const err = decodeError(codec, '{"kind":"a"}')
  t.equal(err.code, 'FST_WS_INVALID_MESSAGE')
  t.equal(err.message, '/x is required')
})

t.test('a $ref to a shared schema', async (t) => {
  const schemas = { Point: { $id: 'Point', type: 'object', properties: { x: { type: 'integer' }, y: { type: 'integer' } }, required: ['x', 'y'], additionalProperties: false } }
  for (const inbound of [{ $ref: 'Point#' }, Type.Ref('Point'), Type.Object({ at: Type.Ref('Point') })]) {
    const codec = build({ inbound, schemas })
    const wrap = (v: unknown): unknown => ('properties' in inbound ? { at: v } : v)
    const prefix = 'properties' in inbound ? '/at' : ''
    t.strictSame(codec.decode(JSON.stringify(wrap({ x: 1, y: 2 }))), wrap({ x: 1, y: 2 }))
    t.equal(reason(codec, wrap({ x: 1, y: '2' })), `${prefix}/y must be integer`)
    t.equal(reason(codec, wrap({ x: 1 })), `${prefix}/y is required`)
    t.equal(reason(codec, wrap({ x: 1, y: 2, z: 3 })), `${prefix}/z is not allowed`)
  }
})

t.test('schemas are compiled once; decode only checks', async (t) => {
  const codec = build({ inbound: ClientMsg, outbound: Move, validateOutbound: true })
  const before = codec.ajvCalls()
  const ajv = codec.ajv()
  const compile = ajv.compile.bind(ajv)
  let compiled = 0
  ajv.compile = ((schema: object) => {
    compiled++
    return compile(schema)
  }) as typeof ajv.compile
  for (let i = 0; i < 50; i++) {
    codec.decode('{"type":"typing"}')
    decodeError(codec, '{"type":"say"}')
    codec.encode({ type: 'move', x: i, y: i })
  }
  t.equal(compiled, 0, 'nothing compiled after compileCodec')
  t.equal(codec.ajvCalls(), before + 1, 'only the test asked for ajv again')
})

t.test('encode without outbound is JSON.stringify', async (t) => {
  const codec = build({})
  t.equal(codec.encode({ n: 1.7, s: 'a', nested: { list: [1, 'b', null] }, gone: undefined }), '{"n":1.7,"s":"a","nested":{"list":[1,"b",null]}}')
  t.equal(codec.encode([1, 2]), '[1,2]')
  t.equal(codec.encode('"quoted"'), '"\\"quoted\\""')
  t.equal(codec.encode({ toJSON: () => 'custom' }), '"custom"')
  t.equal(codec.encode({ emoji: '👋 你好' }), '{"emoji":"👋 你好"}')
  const withValidate = build({ validateOutbound: true })
  t.equal(withValidate.encode({ anything: true }), '{"anything":true}', 'validateOutbound needs an outbound schema')
  t.equal(withValidate.ajvCalls(), 0)
})

t.test('encode with outbound uses fast-json-stringify', async (t) => {
  const Out = Type.Object({ n: Type.Integer(), s: Type.String({ maxLength: 3 }), o: Type.Optional(Type.Boolean()) })
  const codec = build({ outbound: Out })
  t.equal(codec.encode({ n: 1.7, s: 'abc' }), '{"n":1,"s":"abc"}', 'an integer field is serialized as an integer')
  t.equal(codec.encode({ n: 2, s: 'abc', extra: 'dropped' }), '{"n":2,"s":"abc"}', 'what the schema does not know is not sent')
  t.equal(codec.encode({ n: 2, s: 'toolong' }), '{"n":2,"s":"toolong"}', 'without validateOutbound nothing is checked')
  t.equal(codec.encode({ n: '5', s: 'a' }), '{"n":5,"s":"a"}')
  t.equal(codec.encode({ n: 3, s: '👋你', o: true }), '{"n":3,"s":"👋你","o":true}')
  t.equal(codec.ajvCalls(), 0, 'no validator without validateOutbound')

  const union = build({ outbound: ClientMsg })
  t.strictSame(JSON.parse(union.encode({ type: 'move', x: 1, y: 2 })), { type: 'move', x: 1, y: 2 })
  t.strictSame(JSON.parse(union.encode({ type: 'say', text: 'hi' })), { type: 'say', text: 'hi' })

  const schemas = { Point: { $id: 'Point', type: 'object', properties: { x: { type: 'integer' }, y: { type: 'integer' } } } }
  const ref = build({ outbound: { $ref: 'Point#' }, schemas })
  t.equal(ref.encode({ x: 1.9, y: 2, z: 3 }), '{"x":1,"y":2}', 'a $ref to a shared schema')
})

t.test('without validateOutbound a mismatch the serializer finds is FST_WS_INVALID_OUTBOUND, not a bare error', async (t) => {
  const union = build({ outbound: ClientMsg })
  const err = t.throws(() => union.encode({ type: 'said', from: 'x' }), {
    code: 'FST_WS_INVALID_OUTBOUND',
    message: 'Outbound message does not match the outbound schema: / does not match the schema'
  }) as Error & { validation: unknown, cause: Error }
  t.ok(err instanceof TypeError)
  t.equal(err.validation, null, 'no ajv errors: nothing was validated')
  t.match(err.cause.message, /does not match schema definition/, 'the serializer\'s error is the cause')
  const Tagged = Type.Union([Type.Object({ t: Type.Literal('a') }), Type.Object({ t: Type.Literal('b') })])
  const nested = build({ outbound: Type.Object({ list: Type.Array(Tagged), one: Type.Optional(Tagged) }) })
  t.throws(() => nested.encode({ list: [{ t: 'a' }, { t: 'c' }] }), { message: /schema: \/list\/\* does not match the schema$/ })
  t.throws(() => nested.encode({ list: [], one: { t: 'c' } }), { message: /schema: \/one does not match the schema$/ })
  const required = build({ outbound: Type.Object({ from: Type.String() }) })
  t.throws(() => required.encode({}), { code: 'FST_WS_INVALID_OUTBOUND', message: 'Outbound message does not match the outbound schema: "from" is required!' })
  t.equal(union.ajvCalls() + nested.ajvCalls() + required.ajvCalls(), 0)
})

t.test('validateOutbound checks objects before serializing', async (t) => {
  const Out = Type.Object({ n: Type.Integer(), s: Type.String({ maxLength: 3 }) }, { additionalProperties: false })
  const codec = build({ outbound: Out, validateOutbound: true })
  t.equal(codec.encode({ n: 1, s: 'abc' }), '{"n":1,"s":"abc"}')
  const cases: Array<[unknown, string]> = [
    [{ n: 1, s: 'toolong' }, '/s must NOT have more than 3 characters'],
    [{ n: 1.5, s: 'a' }, '/n must be integer'],
    [{ n: '1', s: 'a' }, '/n must be integer'],
    [{ s: 'a' }, '/n is required'],
    [{ n: 1, s: 'a', extra: true }, '/extra is not allowed'],
    [[1], '/ must be object']
  ]
  for (const [value, expected] of cases) {
    const err = t.throws(() => codec.encode(value), {
      code: 'FST_WS_INVALID_OUTBOUND',
      message: `Outbound message does not match the outbound schema: ${expected}`
    }, JSON.stringify(value)) as Error & { validation: ErrorObject[] }
    t.ok(err instanceof TypeError)
    t.ok(Array.isArray(err.validation) && err.validation.length > 0)
  }
  const union = build({ outbound: ClientMsg, validateOutbound: true })
  t.throws(() => union.encode({ type: 'move', x: 1, y: 'two' }), { message: /: \/y must be integer$/ })
  t.throws(() => union.encode({ type: 'said' }), { message: /: \/ must match one of type="say", type="typing", type="move"$/ })
})

t.test('uncompilable schemas throw FST_WS_INVALID_SCHEMA naming the route and the schema', async (t) => {
  const cases: Array<[Build, RegExp]> = [
    [{ inbound: { type: 'nope' } }, /^Route "\/rooms\/:room": the inbound schema does not compile: /],
    [{ inbound: { $ref: 'Missing#' } }, /^Route "\/rooms\/:room": the inbound schema does not compile: .*Missing/],
    [{ inbound: { type: 'object', properties: { a: { $ref: '#/definitions/nope' } } } }, /the inbound schema does not compile/],
    [{ outbound: { type: 'nope' } }, /^Route "\/rooms\/:room": the outbound schema does not compile: /],
    [{ outbound: { $ref: 'Missing#' } }, /^Route "\/rooms\/:room": the outbound schema does not compile: .*Missing/],
    [{ outbound: { type: 'string', minLength: 'x' }, validateOutbound: true }, /^Route "\/rooms\/:room": the outbound schema does not compile: /]
  ]
  for (const [settings, message] of cases) {
    const err = t.throws(() => build({ ...settings, url: '/rooms/:room' }), { code: 'FST_WS_INVALID_SCHEMA', message }, JSON.stringify(settings)) as Error & { statusCode: number }
    t.equal(err.statusCode, 500)
  }
})

t.test('explainValidation on ajv errors', async (t) => {
  const error = (keyword: string, instancePath: string, params: Record<string, unknown>, message?: string): ErrorObject =>
    ({ keyword, instancePath, schemaPath: `#/${keyword}`, params, message })
  t.equal(explainValidation([error('required', '', { missingProperty: 'text' }, 'must have required property \'text\'')]), '/text is required')
  t.equal(explainValidation([error('required', '/a/0', { missingProperty: 'b' })]), '/a/0/b is required')
  t.equal(explainValidation([error('additionalProperties', '', { additionalProperty: 'extra' })]), '/extra is not allowed')
  t.equal(explainValidation([error('additionalProperties', '/deep', { additionalProperty: 'x' })]), '/deep/x is not allowed')
  t.equal(explainValidation([error('type', '', { type: 'object' }, 'must be object')]), '/ must be object')
  t.equal(explainValidation([error('type', '/n', { type: 'integer' }, 'must be integer')]), '/n must be integer')
  t.equal(explainValidation([error('custom', '/n', {})]), '/n is invalid', 'an error without a message')
  t.equal(explainValidation([
    error('const', '/type', { allowedValue: 'a' }, 'must be equal to constant'),
    error('anyOf', '', {}, 'must match a schema in anyOf')
  ]), '/type must be equal to constant', 'a branch error rather than the union')
  t.equal(explainValidation([error('anyOf', '', {}, 'must match a schema in anyOf')]), '/ must match a schema in anyOf', 'only the union')
  t.equal(explainValidation([
    error('oneOf', '/x', {}, 'must match exactly one schema in oneOf'),
    error('type', '/x/y', {}, 'must be string')
  ]), '/x/y must be string')
})

t.test('explainValidation with the schema and the value picks the tagged branch', async (t) => {
  const ajv = createAjv({})
  const validate = ajv.compile(ClientMsg)
  const value = { type: 'move', x: 1, y: 'two' }
  t.notOk(validate(value))
  const errors = validate.errors as ErrorObject[]
  t.equal(explainValidation(errors, ClientMsg, value), '/y must be integer')
  t.not(explainValidation(errors), '/y must be integer', 'without the schema it cannot tell which branch was meant')
  t.equal(explainValidation(errors, { anyOf: 'broken' }, value), explainValidation(errors), 'a schema it cannot follow falls back')
  t.equal(explainValidation(errors, ClientMsg, 'not an object'), explainValidation(errors))
})

t.test('explainValidation tolerates schemas and values it cannot follow', async (t) => {
  const anyOf = (schemaPath: string, instancePath = ''): ErrorObject =>
    ({ keyword: 'anyOf', instancePath, schemaPath, params: {}, message: 'must match a schema in anyOf' })
  const branch = (schemaPath: string, instancePath: string, message: string): ErrorObject =>
    ({ keyword: 'type', instancePath, schemaPath, params: {}, message })
  const errors = [branch('#/properties/body/anyOf/0/type', '/body', 'must be object'), anyOf('#/properties/body/anyOf', '/body')]
  t.equal(explainValidation(errors, { properties: 'broken' }, { body: {} }), '/body must be object', 'schema path through a non-object')
  t.equal(explainValidation(errors, { properties: { body: { anyOf: [{ properties: { k: { const: 1 } } }] } } }, 5),
    '/body must be object', 'instance path through a non-object')
  t.equal(explainValidation([branch('#/anyOf/1/type', '', 'must be string'), anyOf('#/anyOf')],
    { anyOf: [null, { properties: { k: { const: 'a' } } }] }, { k: 'a' }), '/ must be string', 'a null branch is skipped')
  t.equal(explainValidation([anyOf('#/anyOf')], { anyOf: [{ properties: { k: { const: 'a' } } }] }, { k: 'a' }),
    '/ must match a schema in anyOf', 'the tagged branch has no error of its own')

  // Through the codec: a oneOf whose two branches both match fails without any branch error.
  const codec = build({
    inbound: {
      oneOf: [
        { type: 'object', properties: { k: { const: 'a' } } },
        { type: 'object', properties: { k: { const: 'a' }, n: { type: 'integer' } } }
      ]
    }
  })
  t.equal(reason(codec, { k: 'a' }), '/ must match exactly one schema in oneOf')
  t.equal(reason(codec, { k: 'b' }), '/ must match one of k="a", k="a"')
})
