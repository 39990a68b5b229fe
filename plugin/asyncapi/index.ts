import type { FastifyInstance, FastifyPluginCallback, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
// The `app.asyncapi()` and `schema.hide` augmentations.
import type {} from 'fastify-typed-websocket/asyncapi'
import { FST_WS_ASYNCAPI_SCHEMA, FST_WS_INVALID_OPTION } from '../errors'
import type { ConnectionOptions } from '../options'
import { buildDocument, type DescribedRoute, type DescribedTopic } from './document'
import { cachedFile, contentSecurityPolicy, findRenderer, initScript, pageHtml } from './page'
import type { JsonObject } from './schema'
import { toYaml } from './yaml'

const kOptions = Symbol.for('fastify-typed-websocket.options')
const kTopics = Symbol.for('fastify-typed-websocket.topics')

type Transform = (document: JsonObject) => JsonObject

interface Collected {
  url: string
  instance: FastifyInstance
  schema: Record<string, unknown> | undefined
  websocket: unknown
}

const where = 'fastify-typed-websocket/asyncapi options'

function checkOptions (opts: Record<string, unknown>): { info: JsonObject, servers: JsonObject | undefined, routePrefix: string, transform: Transform | undefined } {
  const { info = {}, servers, routePrefix = '/asyncapi', transform } = opts
  if (info === null || typeof info !== 'object' || Array.isArray(info)) throw new FST_WS_INVALID_OPTION(where, 'info must be an object')
  if (servers !== undefined && (servers === null || typeof servers !== 'object' || Array.isArray(servers))) {
    throw new FST_WS_INVALID_OPTION(where, 'servers must be an object of AsyncAPI server objects, by name')
  }
  if (typeof routePrefix !== 'string' || !routePrefix.startsWith('/') || routePrefix.endsWith('/')) {
    throw new FST_WS_INVALID_OPTION(where, `routePrefix must be a path like "/asyncapi", got ${JSON.stringify(routePrefix)}`)
  }
  if (transform !== undefined && typeof transform !== 'function') throw new FST_WS_INVALID_OPTION(where, 'transform must be a function')
  return {
    info: { title: 'WebSocket API', version: '1.0.0', ...info as JsonObject },
    servers: servers as JsonObject | undefined,
    routePrefix,
    transform: transform as Transform | undefined
  }
}

const fastifyAsyncapi: FastifyPluginCallback<Record<string, unknown>> = function (fastify, opts, done) {
  const { prefix: _prefix, logLevel: _logLevel, logSerializers: _logSerializers, ...ours } = opts
  let options: ReturnType<typeof checkOptions>
  try {
    options = checkOptions(ours)
  } catch (err) {
    return done(err as Error)
  }
  const routes: Collected[] = []
  let cached: JsonObject | undefined

  fastify.addHook('onRoute', function (this: FastifyInstance, routeOptions: RouteOptions & { websocket?: unknown, hide?: boolean }) {
    const { websocket, schema } = routeOptions
    if (websocket === undefined || websocket === false || routeOptions.hide === true || schema?.hide === true) return
    if (!([] as string[]).concat(routeOptions.method).includes('GET')) return
    routes.push({ url: routeOptions.url, instance: this, schema: schema as Record<string, unknown> | undefined, websocket })
  })

  function build (): JsonObject {
    const described: DescribedRoute[] = routes.map((route) => ({
      url: route.url,
      schema: route.schema,
      websocket: route.websocket,
      base: (route.instance as unknown as Record<symbol, ConnectionOptions>)[kOptions],
      shared: route.instance.getSchemas()
    }))
    // The core plugin, a declared dependency, always decorates the app with its topics.
    const topics = (fastify as unknown as Record<symbol, ReadonlyMap<string, DescribedTopic>>)[kTopics]
    const document = buildDocument({
      info: options.info,
      servers: options.servers,
      routes: described,
      topics: topics.values(),
      shared: fastify.getSchemas()
    })
    return options.transform === undefined ? document : options.transform(document)
  }

  fastify.decorate('asyncapi', function asyncapi () {
    return (cached ?? build()) as never
  })
  fastify.addHook('onReady', function (ready) {
    cached = build()
    ready()
  })

  const base = `${fastify.prefix}${options.routePrefix}`
  const hide = { schema: { hide: true } }
  fastify.get(`${options.routePrefix}/json`, hide, async () => fastify.asyncapi())
  fastify.get(`${options.routePrefix}/yaml`, hide, async (_request, reply) => {
    return reply.type('application/yaml; charset=utf-8').send(toYaml(fastify.asyncapi() as never))
  })

  const renderer = findRenderer()
  if (renderer === undefined) {
    fastify.get(options.routePrefix, hide, async (_request, reply) => {
      return reply.code(501).type('text/plain; charset=utf-8').send(
        'The AsyncAPI page needs @asyncapi/react-component: npm install @asyncapi/react-component. ' +
        `The document itself is at ${base}/json and ${base}/yaml.`)
    })
    return done()
  }
  const page = pageHtml(base, String(options.info.title))
  const init = initScript(base)
  const script = cachedFile(renderer.script)
  const style = cachedFile(renderer.style)
  fastify.get(options.routePrefix, hide, async (_request, reply) => {
    return reply.type('text/html; charset=utf-8').header('content-security-policy', contentSecurityPolicy).send(page)
  })
  fastify.get(`${options.routePrefix}/static/init.js`, hide, async (_request, reply) => {
    return reply.type('text/javascript; charset=utf-8').send(init)
  })
  fastify.get(`${options.routePrefix}/static/standalone.js`, hide, async (_request, reply) => {
    return reply.type('text/javascript; charset=utf-8').header('cache-control', 'public, max-age=3600').send(await script())
  })
  fastify.get(`${options.routePrefix}/static/default.min.css`, hide, async (_request, reply) => {
    return reply.type('text/css; charset=utf-8').header('cache-control', 'public, max-age=3600').send(await style())
  })
  done()
}

fp(fastifyAsyncapi, { name: 'fastify-typed-websocket-asyncapi', fastify: '5.x', dependencies: ['fastify-typed-websocket'] })

// `require`, `import` default and `import { fastifyTypedWebsocketAsyncapi }` all get the plugin.
module.exports = fastifyAsyncapi
Object.assign(fastifyAsyncapi, { default: fastifyAsyncapi })
module.exports.fastifyTypedWebsocketAsyncapi = fastifyAsyncapi
module.exports.FST_WS_ASYNCAPI_SCHEMA = FST_WS_ASYNCAPI_SCHEMA
