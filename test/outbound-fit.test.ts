// Example messages of a topic's schema, and whether a route's serializer can send them.
import t from 'tap'
import { Type } from '@sinclair/typebox'
import { Ajv } from 'ajv'
import { compileCodec, createAjv } from '../plugin/codec'
import { exampleMessage, outboundRefusal } from '../plugin/outbound-fit'

const ajv = new Ajv({ strict: false })
const valid = (schema: object) => { const check = ajv.compile(schema); return (value: unknown) => check(value) }
const example = (schema: object) => exampleMessage(schema, valid(schema))?.value

t.test('an example fits its schema: literals, enums, unions, required properties', async (t) => {
  t.strictSame(example(Type.Object({ type: Type.Literal('said'), text: Type.String(), n: Type.Optional(Type.Integer()) })), { type: 'said', text: '' })
  t.strictSame(example(Type.Object({ kind: Type.Union([Type.Literal('a'), Type.Literal('b')]) })), { kind: 'a' })
  t.strictSame(example(Type.Union([Type.Object({ x: Type.Never() }), Type.Object({ y: Type.Null() })])), { y: null })
  t.strictSame(example({ type: 'object', properties: { level: { enum: ['info', 'warn'] } }, required: ['level'] }), { level: 'info' })
  t.strictSame(example(Type.Object({ a: Type.String({ minLength: 3 }), b: Type.Integer({ minimum: 2.5 }), c: Type.Number(), d: Type.Boolean(), e: Type.Array(Type.String()) })),
    { a: 'xxx', b: 3, c: 0, d: false, e: [] })
  t.strictSame(example({ type: 'object' }), {})
})

t.test('no example when the schema is beyond the simple cases, or the guess does not fit', async (t) => {
  t.equal(exampleMessage(Type.Object({ at: Type.String({ format: 'date-time' }) }), () => false), undefined, 'a guess the schema refuses')
  t.equal(example({ anyOf: [Type.Object({ x: Type.Never() }), Type.Object({ y: Type.Never() })] }), undefined, 'no branch gives one')
  t.equal(exampleMessage(Type.Object({ r: Type.Ref('Other') }), () => true), undefined, 'a reference')
  t.equal(example({ type: 'object', properties: {}, required: ['missing'] }), undefined, 'a required property without a schema')
  t.equal(example({ type: ['string', 'null'] }), undefined, 'a list of types')
})

t.test('outboundRefusal: why a route cannot send a message, undefined when it can', async (t) => {
  const Said = Type.Object({ type: Type.Literal('said'), text: Type.String() })
  const Notice = Type.Object({ type: Type.Literal('notice'), text: Type.String() })
  const codec = (outbound: object | undefined, validateOutbound = true) =>
    compileCodec({ url: '/r', inbound: undefined, outbound, validateOutbound, schemas: {}, ajv: () => createAjv({}) })
  const said = { type: 'said', text: 'hi' }
  t.equal(outboundRefusal(codec(Type.Union([Said, Notice])), said), undefined)
  t.equal(outboundRefusal(codec(undefined), said), undefined)
  t.equal(outboundRefusal(codec(Notice), said), '/type must be equal to constant')
})
