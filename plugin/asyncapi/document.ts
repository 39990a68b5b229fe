import { CloseCode, CloseReason } from '../close-codes'
import { resolveRouteOptions, type ConnectionOptions } from '../options'
import { componentKey, SchemaConverter, type Json, type JsonObject } from './schema'
import { describeMethods } from './requests'
import { describeSubscriptions } from './subscriptions'

/** A websocket route as `onRoute` saw it. */
export interface DescribedRoute {
  url: string
  schema: Record<string, unknown> | undefined
  websocket: unknown
  /** The core plugin's resolved options, seen from the route's instance. */
  base: ConnectionOptions
  /** The schemas added with `app.addSchema()` in the route's instance. */
  shared: Record<string, unknown>
}

/** A topic as the core plugin describes it (see TopicDescription in ../topics). */
export interface DescribedTopic {
  name: string
  message: unknown
  presence: unknown
  history: number
  historyTtl: number
  presenceTtl: number
  offsetField: string | undefined
}

export interface DocumentInput {
  info: JsonObject
  servers: JsonObject | undefined
  routes: DescribedRoute[]
  topics: Iterable<DescribedTopic>
  shared: Record<string, unknown>
}

const wsBindingVersion = '0.1.0'

/** Picks a key not in `taken`, then takes it. */
function unique (taken: Set<string>, wanted: string): string {
  let key = wanted
  for (let n = 2; taken.has(key); n++) key = `${wanted}_${n}`
  taken.add(key)
  return key
}

/** Fastify's `/chat/:room` (and `*`) as AsyncAPI's `/chat/{room}`, with the parameter names. */
export function channelAddress (url: string): { address: string, names: string[] } {
  const names: string[] = []
  const address = url
    .replace(/:([A-Za-z0-9_]+)(\([^)]*\))?/g, (_match, name: string) => { names.push(name); return `{${name}}` })
    .replace(/\*$/, () => { names.push('wildcard'); return '{wildcard}' })
  return { address, names }
}

function branchesOf (schema: Record<string, unknown>): Array<Record<string, unknown>> {
  const union = schema.anyOf ?? schema.oneOf
  if (!Array.isArray(union)) return [schema]
  return union.flatMap((branch: Record<string, unknown>) => branchesOf(branch))
}

/** The discriminator literal of a union branch: its `type` property's const, else the first const. */
function literalOf (branch: Record<string, unknown>): string | undefined {
  const properties = (branch.properties ?? {}) as Record<string, { const?: unknown }>
  const names = Object.keys(properties).sort((a, b) => Number(b === 'type') - Number(a === 'type'))
  for (const name of names) {
    const value = properties[name].const
    if (typeof value === 'string' || typeof value === 'number') return String(value)
  }
  return undefined
}

/** One message per union branch, named after its discriminator literal. */
function messagesOf (schema: unknown, fallback: string, convert: (branch: unknown) => JsonObject): Array<{ name: string, message: JsonObject }> {
  const branches = branchesOf(schema as Record<string, unknown>)
  return branches.map((branch, i) => {
    const name = literalOf(branch) ?? (typeof branch.title === 'string' ? branch.title : branches.length === 1 ? fallback : `${fallback}${i + 1}`)
    // The schema's title, else the name: renderers head an untitled message with its index.
    const message: JsonObject = { name, title: typeof branch.title === 'string' ? branch.title : name }
    if (typeof branch.description === 'string') message.description = branch.description
    message.contentType = 'application/json'
    message.payload = convert(branch)
    return { name, message }
  })
}

/** A heartbeat message: an empty text frame, either way. */
function emptyText (name: string, title: string, summary: string): JsonObject {
  return { name, title, summary, contentType: 'text/plain', payload: { type: 'string', maxLength: 0 } }
}
const heartbeat = emptyText('heartbeat', 'Heartbeat',
  'An empty text message. The server answers it at once, before validation, without calling the message hook.')
const heartbeatReply = emptyText('heartbeatReply', 'Heartbeat reply', 'The server\'s answer to a heartbeat: an empty text message.')
const anyText: JsonObject = { name: 'text', title: 'Text message', contentType: 'text/plain', payload: { type: 'string' } }
const anyBinary: JsonObject = {
  name: 'binary', title: 'Binary message', contentType: 'application/octet-stream', payload: { type: 'string', format: 'binary' }
}
const anyJson: JsonObject = { name: 'json', title: 'Any JSON value', contentType: 'application/json', payload: {} }

interface CloseCodeEntry { code: number, reason?: string, when: string }

/** The close codes the server may send on a route, from what it declares. */
function closeCodes (options: ReturnType<typeof resolveRouteOptions>, topics: boolean): CloseCodeEntry[] {
  const { pingInterval, pingTimeout, maxBufferedAmount, maxMessageSize } = options.options
  const accepts = options.handlers.message !== undefined
  const codes: CloseCodeEntry[] = []
  if (pingInterval > 0) codes.push({ code: CloseCode.Normal, reason: CloseReason.PingTimeout, when: `no pong within ${pingTimeout} ms of a ping (sent every ${pingInterval} ms)` })
  codes.push({ code: CloseCode.GoingAway, reason: CloseReason.ShuttingDown, when: 'the server is closing' })
  codes.push({ code: CloseCode.ProtocolError, when: 'a frame that breaks RFC 6455; the reason names the fault' })
  // (Text on a route with requests is JSON-RPC, answered even when it is not a request.)
  const rpc = options.requests !== undefined || options.clientRequests !== undefined || options.subscriptions !== undefined
  if (!accepts) codes.push({ code: CloseCode.UnsupportedData, reason: CloseReason.NoMessages, when: rpc ? 'a binary message' : 'any data message' })
  else if (options.inbound !== undefined && !options.binary) codes.push({ code: CloseCode.UnsupportedData, reason: CloseReason.NoBinary, when: 'a binary message' })
  codes.push({
    code: CloseCode.InvalidPayload,
    when: accepts && options.inbound !== undefined && options.handlers.invalidMessage === undefined
      ? 'text that is not UTF-8 or JSON, or does not match the inbound schema; the reason names the failing path'
      : 'text that is not UTF-8'
  })
  codes.push({ code: CloseCode.PolicyViolation, reason: CloseReason.SendBufferFull, when: `more than ${maxBufferedAmount} bytes wait for a client that does not read` })
  codes.push({ code: CloseCode.MessageTooBig, reason: CloseReason.MessageTooBig, when: `a message larger than ${maxMessageSize} bytes` })
  codes.push({ code: CloseCode.InternalError, reason: CloseReason.InternalError, when: 'a hook threw or rejected' })
  if (topics) codes.push({ code: CloseCode.ServiceRestart, reason: CloseReason.MissedMessages, when: 'a subscriber missed topic messages that history no longer holds; resubscribe' })
  return codes
}

/** The AsyncAPI 3.0.0 document of the routes and topics. */
export function buildDocument (input: DocumentInput): JsonObject {
  const converter = new SchemaConverter()
  const channels: JsonObject = {}
  const operations: JsonObject = {}
  const messages: JsonObject = {}
  const channelIds = new Set<string>()
  const topics = [...input.topics]

  for (const route of input.routes) {
    const where = `Route "${route.url}"`
    const settings = resolveRouteOptions(route.base, route.websocket, route.url)
    const convert = (what: string) => (schema: unknown): JsonObject => converter.convert(schema, where, what, route.shared)
    const { address, names } = channelAddress(route.url)
    const slug = route.url.replace(/^\//, '').replace(/[^A-Za-z0-9]+/g, '_').replace(/^_|_$/g, '')
    const id = unique(channelIds, slug === '' ? 'root' : slug)
    const channelRef = `#/channels/${id}`
    const keys = new Set<string>()
    const channelMessages: JsonObject = {}
    const add = (message: JsonObject, direction: string): Json => {
      const key = unique(keys, componentKey(keys.has(message.name as string) ? `${message.name as string}.${direction}` : message.name as string))
      channelMessages[key] = message
      return { $ref: `${channelRef}/messages/${key}` }
    }

    const received: Json[] = []
    if (settings.handlers.message !== undefined) {
      if (settings.inbound !== undefined) {
        for (const { message } of messagesOf(settings.inbound, 'inbound', convert('inbound'))) received.push(add(message, 'received'))
        if (settings.binary) received.push(add(anyBinary, 'received'))
      } else {
        received.push(add(anyText, 'received'), add(anyBinary, 'received'))
      }
    }
    const sent: Json[] = settings.outbound !== undefined
      ? messagesOf(settings.outbound, 'outbound', convert('outbound')).map(({ message }) => add(message, 'sent'))
      : [add(anyJson, 'sent')]

    const schema = route.schema ?? {}
    const params = (schema.params ?? {}) as { properties?: Record<string, Record<string, unknown>> }
    const parameters: JsonObject = {}
    for (const name of names) {
      const param = params.properties?.[name] ?? {}
      const described: JsonObject = {}
      if (typeof param.description === 'string') described.description = param.description
      if (Array.isArray(param.enum)) described.enum = param.enum.map(String)
      if (param.default !== undefined) described.default = String(param.default)
      if (Array.isArray(param.examples)) described.examples = param.examples.map(String)
      parameters[name] = described
    }
    const ws: JsonObject = { method: 'GET' }
    if (schema.querystring !== undefined) ws.query = convert('querystring')(schema.querystring)
    if (schema.headers !== undefined) ws.headers = convert('headers')(schema.headers)
    ws.bindingVersion = wsBindingVersion

    const channel: JsonObject = { address }
    if (typeof schema.summary === 'string') channel.summary = schema.summary
    if (typeof schema.description === 'string') channel.description = schema.description
    if (names.length > 0) channel.parameters = parameters
    channel.messages = channelMessages
    channel.bindings = { ws }
    channel['x-close-codes'] = closeCodes(settings, topics.length > 0) as unknown as Json[]
    channels[id] = channel

    if (received.length > 0) {
      operations[`${id}.receive`] = { action: 'receive', channel: { $ref: channelRef }, summary: `Messages the server receives on ${address}`, messages: received }
    }
    if (settings.options.heartbeat) {
      const beat = add(heartbeat, 'received')
      const reply = add(heartbeatReply, 'sent')
      sent.push(reply)
      operations[`${id}.heartbeat`] = {
        action: 'receive',
        channel: { $ref: channelRef },
        summary: 'The client\'s heartbeat and the server\'s reply, to measure the round trip',
        messages: [beat],
        reply: { channel: { $ref: channelRef }, messages: [reply] }
      }
    }
    operations[`${id}.send`] = { action: 'send', channel: { $ref: channelRef }, summary: `Messages the server sends on ${address}`, messages: sent }
    describeMethods(settings, channelRef, id, add, convert, operations)
    const subscribable = describeSubscriptions(settings.subscriptions, channelRef, id, add, convert, operations)
    if (subscribable.length > 0) channel['x-subscriptions'] = subscribable
  }

  for (const topic of topics) {
    const where = `Topic "${topic.name}"`
    const id = unique(channelIds, `topic.${componentKey(topic.name)}`)
    const channelRef = `#/channels/${id}`
    const channelMessages: JsonObject = {}
    const refs: Json[] = []
    const keys = new Set<string>()
    for (const { name, message } of messagesOf(topic.message, 'message', (s) => converter.convert(s, where, 'message', input.shared))) {
      const messageKey = `${id}.${unique(keys, componentKey(name))}`
      messages[messageKey] = message
      channelMessages[messageKey] = { $ref: `#/components/messages/${messageKey}` }
      refs.push({ $ref: `${channelRef}/messages/${messageKey}` })
    }
    const details: JsonObject = { name: topic.name, history: topic.history, historyTtl: topic.historyTtl }
    if (topic.offsetField !== undefined) details.offsetField = topic.offsetField
    if (topic.presence !== undefined) details.presence = converter.convert(topic.presence, where, 'presence', input.shared)
    details.presenceTtl = topic.presenceTtl
    channels[id] = {
      address: null,
      title: `Topic ${topic.name}`,
      description: `Messages published to a key of the topic "${topic.name}" reach every socket subscribed to that key, on every node, in offset order.`,
      messages: channelMessages,
      'x-topic': details
    }
    operations[`${id}.send`] = { action: 'send', channel: { $ref: channelRef }, summary: `Messages published to topic ${topic.name}`, messages: refs }
  }

  const document: JsonObject = { asyncapi: '3.0.0', info: input.info }
  if (input.servers !== undefined) document.servers = input.servers
  document.defaultContentType = 'application/json'
  document.channels = channels
  document.operations = operations
  const components: JsonObject = {}
  if (Object.keys(converter.components).length > 0) components.schemas = converter.components
  if (Object.keys(messages).length > 0) components.messages = messages
  document.components = components
  return document
}
