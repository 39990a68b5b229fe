import type {
  FastifyBaseLogger,
  FastifyPluginCallback,
  FastifyTypeProvider,
  FastifyTypeProviderDefault,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerBase,
  RawServerDefault
} from 'fastify'
import type { FastifyErrorConstructor } from '@fastify/error'

// An augmentation repeats the interface's type parameters, used or not.
/* eslint-disable @typescript-eslint/no-unused-vars */
declare module 'fastify' {
  interface FastifyInstance<
    RawServer extends RawServerBase = RawServerDefault,
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    RawReply extends RawReplyDefaultExpression<RawServer> = RawReplyDefaultExpression<RawServer>,
    Logger extends FastifyBaseLogger = FastifyBaseLogger,
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault
  > {
    /**
     * The AsyncAPI 3.0.0 document of the app's websocket routes and topics (built once the app is ready).
     * @example const document = app.asyncapi()
     */
    asyncapi (): fastifyTypedWebsocketAsyncapi.AsyncAPIDocument
  }

  /* eslint-enable @typescript-eslint/no-unused-vars */
  interface FastifySchema {
    /** Leave this route out of the AsyncAPI (and Swagger) document. */
    hide?: boolean | undefined
    summary?: string | undefined
    description?: string | undefined
  }
}

type FastifyTypedWebsocketAsyncapi = FastifyPluginCallback<fastifyTypedWebsocketAsyncapi.AsyncapiOptions>

declare namespace fastifyTypedWebsocketAsyncapi {
  export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue }

  /** An AsyncAPI 3.0.0 document, as plain JSON data. */
  export interface AsyncAPIDocument {
    asyncapi: '3.0.0'
    info: { title: string, version: string, [key: string]: JsonValue }
    servers?: { [name: string]: JsonValue } | undefined
    defaultContentType: string
    channels: { [id: string]: JsonValue }
    operations: { [id: string]: JsonValue }
    components: { schemas?: { [name: string]: JsonValue }, messages?: { [name: string]: JsonValue }, [key: string]: JsonValue | undefined }
    [key: string]: unknown
  }

  /** An AsyncAPI 3 server object. */
  export interface AsyncAPIServer {
    host: string
    protocol: 'ws' | 'wss' | (string & {})
    pathname?: string | undefined
    title?: string | undefined
    summary?: string | undefined
    description?: string | undefined
    [key: string]: JsonValue | undefined
  }

  export interface AsyncapiOptions {
    /** The document's `info` object. Default `{ title: 'WebSocket API', version: '1.0.0' }`. */
    info?: { title?: string | undefined, version?: string | undefined, description?: string | undefined, [key: string]: JsonValue | undefined } | undefined
    /** AsyncAPI server objects by name, e.g. `{ production: { host: 'chat.example.com', protocol: 'wss' } }`. */
    servers?: { [name: string]: AsyncAPIServer } | undefined
    /** Where the page, `/json` and `/yaml` are served. Default `/asyncapi`. */
    routePrefix?: string | undefined
    /** Changes the generated document before it is cached and served. */
    transform?: ((document: AsyncAPIDocument) => AsyncAPIDocument) | undefined
  }

  /**
   * Describes every websocket route in an AsyncAPI 3.0.0 document, served at `{routePrefix}/json`,
   * `{routePrefix}/yaml` and as a page at `{routePrefix}`. Register it after the core plugin and before the routes.
   * @example await app.register(fastifyTypedWebsocketAsyncapi, { info: { title: 'Chat', version: '1.0.0' } })
   */
  /** A schema that AsyncAPI cannot describe, e.g. `Type.Function()` (fails `app.ready()`). */
  export const FST_WS_ASYNCAPI_SCHEMA: FastifyErrorConstructor<{ code: 'FST_WS_ASYNCAPI_SCHEMA', statusCode: 500 }, [where: string, which: string, problem: string]>

  export const fastifyTypedWebsocketAsyncapi: FastifyTypedWebsocketAsyncapi
  export { fastifyTypedWebsocketAsyncapi as default }
}

declare function fastifyTypedWebsocketAsyncapi (...params: Parameters<FastifyTypedWebsocketAsyncapi>): ReturnType<FastifyTypedWebsocketAsyncapi>
export = fastifyTypedWebsocketAsyncapi
