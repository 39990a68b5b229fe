// Unit tests of plugin/options.ts: the defaults of the contract's option table, and
// every check of the plugin's and a route's options.
import t from 'tap'
import { defaults, resolvePluginOptions, resolveRouteOptions, type ConnectionOptions } from '../plugin/options'

const MiB = 1024 * 1024

const contractDefaults = {
  maxMessageSize: 10 * MiB,
  pingInterval: 30_000,
  pingTimeout: 30_000,
  closeTimeout: 5000,
  checkOrigin: undefined,
  compression: false,
  maxBufferedAmount: 16 * MiB,
  maxPendingMessages: 1024,
  maxPendingBytes: undefined,
  validateOutbound: true,
  heartbeat: false,
  subprotocols: undefined,
  selectSubprotocol: undefined,
  maxConnections: undefined,
  rateLimit: undefined,
  maxConcurrentRequests: 16,
  maxSubscriptions: 100,
  requestTimeout: undefined
}

const invalidOption = (_where: string, message: RegExp) => ({ code: 'FST_WS_INVALID_OPTION', message })

function escape (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

t.test('defaults are exactly those of the option table', async (t) => {
  t.strictSame({ ...defaults }, contractDefaults)
  t.ok(Object.isFrozen(defaults), 'the defaults cannot be changed by accident')
  t.strictSame(resolvePluginOptions(undefined), contractDefaults)
  t.strictSame(resolvePluginOptions({}), contractDefaults)
  const first = resolvePluginOptions({})
  first.maxMessageSize = 1
  t.equal(resolvePluginOptions({}).maxMessageSize, 10 * MiB, 'each call gets its own copy')
})

t.test('pingTimeout follows pingInterval unless given', async (t) => {
  t.equal(resolvePluginOptions({ pingInterval: 1000 }).pingTimeout, 1000, 'only pingInterval set')
  t.equal(resolvePluginOptions({ pingInterval: 1000, pingTimeout: 200 }).pingTimeout, 200)
  t.equal(resolvePluginOptions({ pingTimeout: 200 }).pingInterval, 30_000)
  t.equal(resolvePluginOptions({ pingTimeout: 200 }).pingTimeout, 200)
  t.strictSame(
    [resolvePluginOptions({ pingInterval: 0 }).pingInterval, resolvePluginOptions({ pingInterval: 0 }).pingTimeout],
    [0, 0], 'keepalive off')
  t.equal(resolvePluginOptions({ pingInterval: 0, pingTimeout: 0 }).pingTimeout, 0)
  t.equal(resolvePluginOptions({ pingInterval: 0, pingTimeout: 500 }).pingTimeout, 500)

  const base = resolvePluginOptions({ pingInterval: 1000 })
  t.equal(resolveRouteOptions(base, { pingInterval: 5000 }, '/r').options.pingTimeout, 5000,
    'a route that sets only pingInterval gets it as pingTimeout too')
  t.equal(resolveRouteOptions(base, {}, '/r').options.pingTimeout, 1000, 'inherited')
  t.equal(resolveRouteOptions(base, { pingTimeout: 300 }, '/r').options.pingTimeout, 300)
})

t.test('a route overriding only pingInterval keeps the plugin\'s explicit pingTimeout', async (t) => {
  // The plugin set pingTimeout itself: it is the plugin-wide value, not the default.
  const base = resolvePluginOptions({ pingInterval: 1000, pingTimeout: 200 })
  const route = resolveRouteOptions(base, { pingInterval: 5000 }, '/r').options
  t.equal(route.pingInterval, 5000)
  t.equal(route.pingTimeout, 200)
})

t.test('every option is accepted with a valid value', async (t) => {
  const check = (origin: string) => origin === 'x'
  const select = (offered: string[]) => offered[0]
  const resolved = resolvePluginOptions({
    maxMessageSize: 1,
    pingInterval: 0,
    pingTimeout: 0,
    closeTimeout: 1,
    checkOrigin: check,
    compression: { threshold: 10 },
    maxBufferedAmount: 1,
    maxPendingMessages: 1,
    maxPendingBytes: 1,
    validateOutbound: false,
    selectSubprotocol: select,
    maxConnections: 1,
    rateLimit: { messages: 1, interval: 1, action: 'close' },
    maxConcurrentRequests: 2,
    maxSubscriptions: 4,
    requestTimeout: 3
  })
  t.strictSame(resolved, {
    maxMessageSize: 1,
    pingInterval: 0,
    pingTimeout: 0,
    closeTimeout: 1,
    checkOrigin: check,
    compression: { threshold: 10 },
    maxBufferedAmount: 1,
    maxPendingMessages: 1,
    maxPendingBytes: 1,
    validateOutbound: false,
    heartbeat: false,
    subprotocols: undefined,
    selectSubprotocol: select,
    maxConnections: 1,
    rateLimit: { messages: 1, bytes: undefined, interval: 1, action: 'close' },
    maxConcurrentRequests: 2,
    maxSubscriptions: 4,
    requestTimeout: 3
  })
  t.equal(resolvePluginOptions({ checkOrigin: true }).checkOrigin, true)
  const list = ['https://a.example', /\.b\.example$/]
  t.equal(resolvePluginOptions({ checkOrigin: list }).checkOrigin, list)
  t.strictSame(resolvePluginOptions({ checkOrigin: [] }).checkOrigin, [], 'an empty list allows no Origin')
  t.equal(resolvePluginOptions({ compression: true }).compression, true)
  t.equal(resolvePluginOptions({ compression: false }).compression, false)
  t.strictSame(resolvePluginOptions({ subprotocols: ['v2', 'v1'] }).subprotocols, ['v2', 'v1'])
  t.equal(resolvePluginOptions({ maxMessageSize: Number.MAX_SAFE_INTEGER }).maxMessageSize, Number.MAX_SAFE_INTEGER)
})

t.test('undefined values are ignored (the default stays)', async (t) => {
  t.strictSame(resolvePluginOptions({ maxMessageSize: undefined, checkOrigin: undefined, nope: undefined }), contractDefaults)
  const route = resolveRouteOptions(resolvePluginOptions({}), { message: undefined, inbound: undefined, maxMessageSize: undefined }, '/r')
  t.strictSame(route.handlers, {})
  t.equal(route.inbound, undefined)
  t.equal(route.options.maxMessageSize, 10 * MiB)
})

const where = 'fastify-typed-websocket options'

t.test('counts must be integers in range', async (t) => {
  const atLeastOne = ['maxMessageSize', 'maxPendingMessages', 'maxPendingBytes', 'closeTimeout', 'maxBufferedAmount']
  const atLeastZero = ['pingInterval', 'pingTimeout']
  for (const name of [...atLeastOne, ...atLeastZero]) {
    const min = atLeastOne.includes(name) ? 1 : 0
    for (const value of [min - 1, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, '10', null, true, {}, 10n]) {
      // pingTimeout 0 with pingInterval on is a separate check
      if (name === 'pingTimeout' && value === 0) continue
      t.throws(() => resolvePluginOptions({ [name]: value }),
        invalidOption(where, new RegExp(`^${escape(where)}: ${name} must be an integer >= ${min}, got `)),
        `${name}: ${typeof value === 'bigint' ? `${value}n` : JSON.stringify(value) ?? String(value)}`)
    }
    t.equal(resolvePluginOptions({ [name]: min + 1 })[name as keyof ConnectionOptions], min + 1)
  }
  t.throws(() => resolvePluginOptions({ maxMessageSize: -1 }), { message: `${where}: maxMessageSize must be an integer >= 1, got -1` })
})

t.test('pingTimeout must be > 0 while pingInterval is on', async (t) => {
  t.throws(() => resolvePluginOptions({ pingTimeout: 0 }),
    invalidOption(where, /pingTimeout must be > 0 while pingInterval is on/))
  t.throws(() => resolvePluginOptions({ pingInterval: 10, pingTimeout: 0 }),
    invalidOption(where, /pingTimeout must be > 0 while pingInterval is on/))
  const off = resolvePluginOptions({ pingInterval: 0 })
  t.throws(() => resolveRouteOptions(off, { pingInterval: 10, pingTimeout: 0 }, '/r'),
    invalidOption('Route "/r"', /^Route "\/r": pingTimeout must be > 0 while pingInterval is on$/))
  t.equal(resolveRouteOptions(off, { pingInterval: 10 }, '/r').options.pingTimeout, 10,
    'a route that turns keepalive on gets pingTimeout = its pingInterval')
})

t.test('checkOrigin', async (t) => {
  t.throws(() => resolvePluginOptions({ checkOrigin: false }), invalidOption(where, /checkOrigin: false is ambiguous/))
  for (const value of ['https://a.example', 1, null, {}, [1], ['a', 2], [null]]) {
    t.throws(() => resolvePluginOptions({ checkOrigin: value }),
      invalidOption(where, /checkOrigin must be a boolean, an array of strings and RegExps, or a function$/), JSON.stringify(value))
  }
})

t.test('compression', async (t) => {
  for (const value of [null, 'yes', 1, () => true]) {
    t.throws(() => resolvePluginOptions({ compression: value }),
      invalidOption(where, /compression must be a boolean or a permessage-deflate options object$/), String(value))
  }
})

t.test('validateOutbound, heartbeat and binary are booleans', async (t) => {
  for (const value of ['true', 1, null, {}]) {
    t.throws(() => resolvePluginOptions({ validateOutbound: value }), invalidOption(where, /validateOutbound must be a boolean$/))
    t.throws(() => resolveRouteOptions(defaults, { heartbeat: value }, '/r'), invalidOption('Route "/r"', /^Route "\/r": heartbeat must be a boolean$/))
    t.throws(() => resolveRouteOptions(defaults, { binary: value }, '/r'), invalidOption('Route "/r"', /^Route "\/r": binary must be a boolean$/))
  }
  t.equal(resolveRouteOptions(defaults, { binary: true }, '/r').binary, true)
  t.equal(resolveRouteOptions(defaults, { binary: false }, '/r').binary, false)
  t.equal(resolveRouteOptions(defaults, {}, '/r').binary, false)
  t.equal(resolveRouteOptions(defaults, { heartbeat: true }, '/r').options.heartbeat, true)
  t.equal(resolvePluginOptions({ heartbeat: true }).heartbeat, true)
})

t.test('subprotocols', async (t) => {
  for (const value of ['v1', [], [''], ['v1', 2], [null], {}, null]) {
    t.throws(() => resolvePluginOptions({ subprotocols: value }),
      invalidOption(where, /subprotocols must be a non-empty array of strings$/), JSON.stringify(value))
  }
})

t.test('subprotocols and selectSubprotocol exclude each other', async (t) => {
  const select = (): string => 'v1'
  t.throws(() => resolvePluginOptions({ subprotocols: ['v1'], selectSubprotocol: select }),
    invalidOption(where, /give either subprotocols or selectSubprotocol, not both$/))
  t.throws(() => resolveRouteOptions(defaults, { subprotocols: ['v1'], selectSubprotocol: select }, '/r'),
    invalidOption('Route "/r"', /^Route "\/r": give either subprotocols or selectSubprotocol, not both$/))
  t.throws(() => resolvePluginOptions({ selectSubprotocol: 'v1' }), invalidOption(where, /selectSubprotocol must be a function$/))
})

t.test('inbound and outbound must be schema objects', async (t) => {
  for (const name of ['inbound', 'outbound']) {
    for (const value of [null, 'Msg', 1, true]) {
      t.throws(() => resolveRouteOptions(defaults, { [name]: value }, '/r'),
        invalidOption('Route "/r"', new RegExp(`^Route "/r": ${name} must be a schema object$`)), `${name}: ${String(value)}`)
    }
  }
  const inbound = { type: 'object' }
  const outbound = { type: 'string' }
  const route = resolveRouteOptions(defaults, { inbound, outbound }, '/r')
  t.equal(route.inbound, inbound)
  t.equal(route.outbound, outbound)
})

t.test('hooks must be functions', async (t) => {
  for (const name of ['message', 'close', 'ping', 'pong', 'error', 'invalidMessage']) {
    for (const value of ['handler', 1, {}, null, true]) {
      t.throws(() => resolveRouteOptions(defaults, { [name]: value }, '/hooks'),
        invalidOption('Route "/hooks"', new RegExp(`^Route "/hooks": ${name} must be a function$`)), `${name}: ${String(value)}`)
    }
  }
  const fns = {
    message () {},
    close () {},
    ping () {},
    pong () {},
    error () {},
    invalidMessage () {}
  }
  const route = resolveRouteOptions(defaults, { ...fns, maxMessageSize: 5 }, '/hooks')
  t.strictSame(route.handlers, fns)
  t.equal(route.options.maxMessageSize, 5)
})

t.test('a typo\'d option suggests the name it was near', async (t) => {
  const cases: Array<[string, string]> = [
    ['pingIntervall', 'pingInterval'],
    ['maxmessagesize', 'maxMessageSize'],
    ['pingTiemout', 'pingTimeout'],
    ['checkorigin', 'checkOrigin'],
    ['brokr', 'broker'],
    ['maxBufferedTotl', 'maxBufferedTotal'],
    ['compresion', 'compression']
  ]
  for (const [typo, meant] of cases) {
    t.throws(() => resolvePluginOptions({ [typo]: 1 }), { message: `fastify-typed-websocket options: unknown option "${typo}"; did you mean "${meant}"?` }, typo)
  }
  t.throws(() => resolveRouteOptions(defaults, { mesage () {} }, '/r'), { message: 'Route "/r": unknown option "mesage"; did you mean "message"?' })
  t.throws(() => resolveRouteOptions(defaults, { outbund: {} }, '/r'), { message: 'Route "/r": unknown option "outbund"; did you mean "outbound"?' })
  t.throws(() => resolveRouteOptions(defaults, { broker: {} }, '/r'), { message: 'Route "/r": unknown option "broker"' }, 'a plugin-only name is not suggested on a route')
  t.throws(() => resolvePluginOptions({ timeout: 1 }), { message: 'fastify-typed-websocket options: unknown option "timeout"' }, 'nothing near enough')
})

t.test('unknown options', async (t) => {
  t.throws(() => resolvePluginOptions({ maxMesageSize: 1 }), invalidOption(where, /^fastify-typed-websocket options: unknown option "maxMesageSize"; did you mean "maxMessageSize"\?$/))
  for (const routeOnly of ['inbound', 'outbound', 'binary', 'message', 'close', 'ping', 'pong', 'error', 'invalidMessage']) {
    t.throws(() => resolvePluginOptions({ [routeOnly]: {} }), invalidOption(where, new RegExp(`unknown option "${routeOnly}"$`)),
      `${routeOnly} is a route option, not a plugin option`)
  }
  t.throws(() => resolveRouteOptions(defaults, { onMessage () {} }, '/r'), invalidOption('Route "/r"', /^Route "\/r": unknown option "onMessage"; did you mean "message"\?$/))
  t.throws(() => resolvePluginOptions({ nope: 1 }, 'custom place'), { message: 'custom place: unknown option "nope"' }, 'where names the source')
})

t.test('the websocket route option: true or an object', async (t) => {
  const base = resolvePluginOptions({ maxMessageSize: 77 })
  const pushOnly = resolveRouteOptions(base, true, '/push')
  t.strictSame(pushOnly, { options: base, inbound: undefined, outbound: undefined, binary: false, handlers: {}, requests: undefined, requestHandlers: undefined, clientRequests: undefined, subscriptions: undefined })
  for (const value of ['yes', 1, null, [], [{}], false]) {
    t.throws(() => resolveRouteOptions(base, value, '/bad'),
      invalidOption('Route "/bad"', /^Route "\/bad": the websocket option must be true or an object$/), JSON.stringify(value))
  }
})

t.test('a route overrides the plugin\'s options and inherits the rest', async (t) => {
  const base = resolvePluginOptions({ maxMessageSize: 100, closeTimeout: 50, validateOutbound: true, checkOrigin: true })
  const route = resolveRouteOptions(base, { maxMessageSize: 200, validateOutbound: false, subprotocols: ['chat'] }, '/r').options
  t.equal(route.maxMessageSize, 200)
  t.equal(route.validateOutbound, false)
  t.strictSame(route.subprotocols, ['chat'])
  t.equal(route.closeTimeout, 50)
  t.equal(route.checkOrigin, true)
  t.equal(base.maxMessageSize, 100, 'the plugin options are not changed')
  t.equal(base.subprotocols, undefined)
})

t.test('a route error names the route', async (t) => {
  const err = t.throws(() => resolveRouteOptions(defaults, { maxMessageSize: -1 }, '/rooms/:room')) as Error
  t.equal(err.message, 'Route "/rooms/:room": maxMessageSize must be an integer >= 1, got -1')
  t.ok(err instanceof TypeError)
  t.equal((err as Error & { statusCode?: number }).statusCode, 500)
})

t.test('rateLimit is checked', async (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [null, /rateLimit must be an object \{ messages, bytes\?, interval, action \}/],
    [[], /rateLimit must be an object/],
    [{ messages: 1, interval: 1, action: 'pause', burst: 2 }, /rateLimit: unknown option "burst"$/],
    [{ messages: 1, interval: 1, action: 'pause', byte: 2 }, /rateLimit: unknown option "byte"; did you mean "bytes"\?$/],
    [{ interval: 1, action: 'pause' }, /rateLimit\.messages must be an integer >= 1, got undefined/],
    [{ messages: 1, bytes: 0, interval: 1, action: 'pause' }, /rateLimit\.bytes must be an integer >= 1, got 0/],
    [{ messages: 1, interval: 0.5, action: 'pause' }, /rateLimit\.interval must be an integer >= 1, got 0\.5/],
    [{ messages: 1, interval: 1 }, /rateLimit\.action must be 'pause' or 'close', got undefined/],
    [{ messages: 1, interval: 1, action: 'drop' }, /rateLimit\.action must be 'pause' or 'close', got drop/]
  ]
  for (const [rateLimit, message] of bad) {
    t.throws(() => resolvePluginOptions({ rateLimit }), invalidOption(where, message), JSON.stringify(rateLimit))
  }
  const route = resolveRouteOptions(resolvePluginOptions({}), { rateLimit: { messages: 5, bytes: 100, interval: 1000, action: 'pause' } }, '/r')
  t.strictSame(route.options.rateLimit, { messages: 5, bytes: 100, interval: 1000, action: 'pause' })
  t.throws(() => resolvePluginOptions({ maxConnections: 0 }), invalidOption(where, /maxConnections must be an integer >= 1, got 0/))
})
