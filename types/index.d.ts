/// <reference types="node" />
import type {
  ContextConfigDefault,
  FastifyBaseLogger,
  FastifyInstance,
  FastifyPluginCallback,
  FastifyReply,
  FastifyRequest,
  FastifySchema,
  FastifyTypeProvider,
  FastifyTypeProviderDefault,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerBase,
  RawServerDefault,
  RouteGenericInterface,
  RouteShorthandOptions
} from 'fastify'
import type { FastifyErrorConstructor } from '@fastify/error'
import type { ErrorObject } from 'ajv'
import type { IncomingHttpHeaders } from 'node:http'
import type { PerMessageDeflateOptions, WebSocket } from 'ws'

declare module 'fastify' {
  interface FastifyInstance<
    RawServer extends RawServerBase = RawServerDefault,
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    RawReply extends RawReplyDefaultExpression<RawServer> = RawReplyDefaultExpression<RawServer>,
    Logger extends FastifyBaseLogger = FastifyBaseLogger,
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault
  > {
    /** The sockets open right now, on every route: for metrics, broadcasting and shutdown. */
    readonly websocketClients: ReadonlySet<fastifyTypedWebsocket.TypedWebSocket>
    /**
     * Opens a real `ws` client through every hook and the handshake, without a listening port.
     * Rejects with an {@link fastifyTypedWebsocket.UpgradeRefusedError} (it has `statusCode`) when the upgrade is refused.
     * @example const client = await app.injectWS('/chat/lobby', { headers: { authorization: 'Bearer t' } })
     */
    injectWS (path: string, options?: fastifyTypedWebsocket.InjectWSOptions): Promise<WebSocket>
    /**
     * Declares a topic: a family of keys (rooms, documents…) whose messages all match `message`.
     * @example const rooms = app.websocketTopic('rooms', { message: Said, history: 100, offsetField: 'id' })
     */
    websocketTopic<
      Message extends fastifyTypedWebsocket.MessageSchema,
      OffsetField extends string & keyof fastifyTypedWebsocket.StaticOf<Message> = never,
      Presence extends fastifyTypedWebsocket.MessageSchema | undefined = undefined,
      const Name extends string = string
    > (name: Name, options: fastifyTypedWebsocket.TopicOptions<Message, OffsetField, Presence>):
    fastifyTypedWebsocket.Topic<fastifyTypedWebsocket.StaticOf<Message>, OffsetField,
        Presence extends fastifyTypedWebsocket.MessageSchema ? fastifyTypedWebsocket.StaticOf<Presence> : never, Name>

    route<
      RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
      ContextConfig = ContextConfigDefault,
      const SchemaCompiler extends FastifySchema = FastifySchema,
      Inbound extends fastifyTypedWebsocket.MessageSchema | undefined = undefined,
      Outbound extends fastifyTypedWebsocket.MessageSchema | undefined = undefined,
      Binary extends boolean = false,
      Requests extends fastifyTypedWebsocket.RequestSchemas | undefined = undefined,
      ClientRequests extends fastifyTypedWebsocket.RequestSchemas | undefined = undefined
    >(
      opts: RouteShorthandOptions<RawServer, RawRequest, RawReply, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger> & {
        method: 'GET' | Array<'GET' | 'HEAD'>
        url: string
        websocket: true | fastifyTypedWebsocket.WebSocketRoute<Inbound, Outbound, Binary,
          FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>, Requests, ClientRequests>
        handler: fastifyTypedWebsocket.OpenHandler<fastifyTypedWebsocket.TypedWebSocket<fastifyTypedWebsocket.OutboundOf<Outbound>,
          FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>, fastifyTypedWebsocket.MethodsOf<ClientRequests>>>
      }
    ): FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider>
  }

  interface RouteShorthandMethod<
    RawServer extends RawServerBase = RawServerDefault,
    RawRequest extends RawRequestDefaultExpression<RawServer> = RawRequestDefaultExpression<RawServer>,
    RawReply extends RawReplyDefaultExpression<RawServer> = RawReplyDefaultExpression<RawServer>,
    TypeProvider extends FastifyTypeProvider = FastifyTypeProviderDefault,
    Logger extends FastifyBaseLogger = FastifyBaseLogger
  > {
    /** A WebSocket route: the handler is `open(socket, request)`, run after the 101. */
    <
      RouteGeneric extends RouteGenericInterface = RouteGenericInterface,
      ContextConfig = ContextConfigDefault,
      const SchemaCompiler extends FastifySchema = FastifySchema,
      Inbound extends fastifyTypedWebsocket.MessageSchema | undefined = undefined,
      Outbound extends fastifyTypedWebsocket.MessageSchema | undefined = undefined,
      Binary extends boolean = false,
      Requests extends fastifyTypedWebsocket.RequestSchemas | undefined = undefined,
      ClientRequests extends fastifyTypedWebsocket.RequestSchemas | undefined = undefined
    >(
      path: string,
      opts: RouteShorthandOptions<RawServer, RawRequest, RawReply, RouteGeneric, ContextConfig, SchemaCompiler, TypeProvider, Logger> & {
        websocket: true | fastifyTypedWebsocket.WebSocketRoute<Inbound, Outbound, Binary,
          FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>, Requests, ClientRequests>
      },
      open: fastifyTypedWebsocket.OpenHandler<fastifyTypedWebsocket.TypedWebSocket<fastifyTypedWebsocket.OutboundOf<Outbound>,
        FastifyRequest<RouteGeneric, RawServer, RawRequest, SchemaCompiler, TypeProvider, ContextConfig, Logger>, fastifyTypedWebsocket.MethodsOf<ClientRequests>>>
    ): FastifyInstance<RawServer, RawRequest, RawReply, Logger, TypeProvider>
  }
}

type FastifyTypedWebsocket = FastifyPluginCallback<fastifyTypedWebsocket.FastifyTypedWebsocketOptions>

declare namespace fastifyTypedWebsocket {
  /**
   * A message schema: a TypeBox schema, whose static type becomes the message's type, or any
   * JSON schema object (its messages are `unknown`). TypeBox is matched by shape rather than by
   * its symbols, so its CommonJS and ESM builds both fit.
   */
  export type MessageSchema = object

  /** The static type of a TypeBox schema (TypeBox's `Static<S>`), `unknown` for other schemas. */
  export type StaticOf<S> = S extends { static: unknown } ? (S & { params: [] })['static'] : unknown

  /** What `message` receives: the `inbound` schema's type, else a string (text) or a Buffer (binary). */
  export type InboundOf<Inbound extends MessageSchema | undefined, Binary extends boolean = false> =
    Inbound extends MessageSchema ? StaticOf<Inbound> | (Binary extends true ? Buffer : never) : string | Buffer

  /** What `socket.send()` takes besides strings and Buffers: the `outbound` schema's type, else any JSON value. */
  export type OutboundOf<Outbound extends MessageSchema | undefined> = Outbound extends MessageSchema ? StaticOf<Outbound> : unknown

  export interface SendOptions {
    /** Send as a binary frame; the default is text for strings and objects, binary for Buffers. */
    binary?: boolean | undefined
  }

  /**
   * The socket every hook receives (Tornado's handler instance).
   * @example await socket.send({ type: 'said', from: 'ann', text: 'hi' })
   */
  /** One method of `requests` or `clientRequests`: TypeBox schemas of its params, its result and its app errors. */
  export interface RequestSchema {
    params?: MessageSchema | undefined
    result?: MessageSchema | undefined
    /** App errors by name, each the schema of its `data`; answered with codes from 1 up (see docs/requests.md). */
    errors?: Record<string, MessageSchema> | undefined
  }
  /** A route's `requests` or `clientRequests`: methods by name. */
  export type RequestSchemas = Record<string, RequestSchema>
  /** The methods of a `requests` / `clientRequests` option (none when it is absent). */
  export type MethodsOf<R> = R extends RequestSchemas ? R : Record<never, never>
  /** What a method takes: its `params` schema's type, else `undefined`. */
  export type ParamsOf<M> = M extends { params: infer S } ? StaticOf<S> : undefined
  /** What a method answers: its `result` schema's type, else any JSON value. */
  export type ResultOf<M> = M extends { result: infer S } ? StaticOf<S> : unknown
  /** A method's app errors: the type of each one's `data`, by name. */
  export type ErrorsOf<M> = M extends { errors: infer E } ? { [N in keyof E & string]: StaticOf<E[N]> } : Record<never, never>

  /** The error a request handler throws to answer with a declared app error; made by `socket.requestError()`. */
  export interface RequestError<Name extends string = string, Data = unknown> extends Error {
    readonly name: Name
    readonly data: Data
  }

  /** The arguments of `socket.requestError()`: a declared app error's name, its data, and a message. */
  export type RequestErrorArgs<Errors> = { [N in keyof Errors & string]: [name: N, data: Errors[N], message?: string] }[keyof Errors & string]

  /** The third argument of a request handler. */
  export interface RequestContext {
    /** The request's id, as the client sent it. */
    readonly id: string | number
    readonly method: string
    /** Aborts when the client cancels (`$/cancelRequest`), the connection closes, or `requestTimeout` passes. */
    readonly signal: AbortSignal
  }

  /** The arguments of `socket.call()`: the params (optional for a method that takes none), then the options. */
  export type CallArgs<Params> = [Params] extends [undefined] ? [params?: undefined, options?: CallOptions] : [params: Params, options?: CallOptions]

  export interface CallOptions {
    /** Milliseconds to wait for the answer; default the route's `requestTimeout`, else 30000. The cancellation is sent on timeout. */
    timeout?: number | undefined
    /** Aborting rejects the call and sends the cancellation. */
    signal?: AbortSignal | undefined
  }

  /** The error answer of a request: `code` and `message`, and for a declared app error its `name` and `data`. */
  export type RemoteErrorOf<M> =
    | { [N in keyof ErrorsOf<M> & string]: RemoteError & { readonly name: N, readonly data: ErrorsOf<M>[N] } }[keyof ErrorsOf<M> & string]
    | (RemoteError & { readonly name: 'RemoteError' })

  /** A request handler: returns (or resolves to) the method's result, or throws `socket.requestError()`. */
  export type RequestHandler<Socket, M> = (this: FastifyInstance, socket: Socket, params: ParamsOf<M>, context: RequestContext) => ResultOf<M> | Promise<ResultOf<M>>

  /** A handler for every method of `requests`. */
  export type RequestHandlers<Requests, Outbound, Request, ClientRequests> = {
    [M in keyof Requests]: RequestHandler<TypedWebSocket<Outbound, Request, ClientRequests, ErrorsOf<Requests[M]>>, Requests[M]>
  }

  export interface TypedWebSocket<Outbound = unknown, Request = FastifyRequest, ClientRequests = Record<never, never>, Errors = Record<never, never>> {
    /**
     * Calls one of the route's `clientRequests` on the client (JSON-RPC 2.0) and resolves with its result.
     * Rejects with a {@link RemoteError} (a client without a handler answers -32601), `FST_WS_REQUEST_TIMEOUT`,
     * `FST_WS_REQUEST_ABORTED`, `FST_WS_CLOSED` or `FST_WS_INVALID_RESULT`.
     * @example const ok = await socket.call('confirm', { question: 'Delete the room?' }, { timeout: 30_000 })
     */
    call<M extends keyof ClientRequests & string> (method: M, ...args: CallArgs<ParamsOf<ClientRequests[M]>>): Promise<ResultOf<ClientRequests[M]>>
    /**
     * In a request handler: the error to throw to answer with one of the method's declared app errors.
     * @example throw socket.requestError('room_full', { capacity: 10 }, 'the room is full')
     */
    requestError (...args: RequestErrorArgs<Errors>): RequestError
    /**
     * Sends an object (serialized from the `outbound` schema), a string (text) or a Buffer (binary).
     * Resolves when the frame is flushed to the network; throws {@link WebSocketClosedError} at once
     * when the socket is closing or closed.
     */
    send (data: Outbound | string | Buffer | ArrayBufferView | ArrayBuffer, options?: SendOptions): Promise<void>
    /** Starts the closing handshake; idempotent. The reason is cut to 123 UTF-8 bytes. */
    close (code?: number, reason?: string): void
    /** Sends a ping (at most 125 bytes, else `RangeError`). */
    ping (data?: string | Buffer): void
    /** The request that opened the connection: params, query, headers and decorations. */
    readonly request: Request
    /** The request's logger. */
    readonly log: FastifyBaseLogger
    /** The subprotocol chosen during the handshake, or `''`. */
    readonly protocol: string
    /** The peer's close code once the connection is gone (1005: none sent, 1006: link lost). */
    readonly closeCode: number | undefined
    /** The peer's close reason once the connection is gone. */
    readonly closeReason: string | undefined
    /** Once the connection is gone: whose close frame came first, or `network` when the link died without one. */
    readonly closedBy: ClosedBy | undefined
    /** The code the server sent in its close frame (1005: none given), if it sent one. */
    readonly serverCloseCode: number | undefined
    /** The reason the server sent in its close frame, if it sent one. */
    readonly serverCloseReason: string | undefined
    /** True while messages can be sent. */
    readonly isOpen: boolean
    /** Bytes queued for sending but not yet flushed. */
    readonly bufferedAmount: number
    /** The underlying `ws` WebSocket, an escape hatch. */
    readonly raw: WebSocket
  }

  export type HookResult = void | Promise<unknown>

  /** Who ended a connection: the server's close frame came first, the client's, or neither (the link died). */
  export type ClosedBy = 'server' | 'client' | 'network'

  /** The `close` hook's 4th argument; also the fields of the `websocket closed` log line. */
  export interface CloseDetails {
    closedBy: ClosedBy
    /** The code of the side that closed first (1006 when the link died). */
    code: number
    reason: string
    /** What the server sent in its close frame, if it sent one. */
    serverCode: number | undefined
    serverReason: string | undefined
    /** What the peer sent (1005: a close frame without a code, 1006: none). */
    peerCode: number
    peerReason: string
    durationMs: number
    messagesIn: number
    messagesOut: number
    /** Bytes on the wire after the handshake, frame headers included. */
    bytesIn: number
    bytesOut: number
  }

  /** A token bucket per connection: `messages` (and `bytes`) per `interval` ms, which is also the burst allowed. */
  export interface RateLimitOptions {
    messages: number
    bytes?: number | undefined
    interval: number
    /** `pause`: stop reading until tokens return (TCP backpressure, nothing dropped); `close`: close with 1008 `rate limit exceeded`. */
    action: 'pause' | 'close'
  }

  /** The route handler: Tornado's `open()`. Messages that arrive while it runs wait, in order. */
  export type OpenHandler<Socket> = (this: FastifyInstance, socket: Socket, request: Socket extends TypedWebSocket<unknown, infer R> ? R : FastifyRequest) => HookResult

  /** The error given to `invalidMessage`: `validation` (and `errors`) hold ajv's errors, `null` for invalid JSON. */
  export interface InvalidMessageError extends Error {
    code: 'FST_WS_INVALID_MESSAGE'
    validation: ErrorObject[] | null
    errors: ErrorObject[] | null
  }

  /** The error `app.injectWS()` rejects with when the server answers the upgrade with plain HTTP. */
  export interface UpgradeRefusedError extends Error {
    code: 'FST_WS_UPGRADE_REFUSED'
    statusCode: number
    headers: IncomingHttpHeaders
    body: string
  }

  export type OriginCheck<Request = FastifyRequest> = (origin: string, request: Request) => boolean | Promise<boolean>
  export type SubprotocolSelector<Request = FastifyRequest> =
    (offered: string[], request: Request) => string | false | null | undefined | Promise<string | false | null | undefined>

  /** Options of the plugin (defaults for every route) and of each route's `websocket` object. */
  export interface WebSocketOptions<Request = FastifyRequest> {
    /** Largest message in bytes, after inflation and across fragments; larger closes with 1009. Default 10 MiB. */
    maxMessageSize?: number | undefined
    /** Milliseconds between server pings; `0` turns keepalive off. Default 30000. */
    pingInterval?: number | undefined
    /** Milliseconds to wait for a pong before closing with 1000 `ping timed out`. Default: `pingInterval`. */
    pingTimeout?: number | undefined
    /** Milliseconds to wait for the peer's close frame before destroying the connection. Default 5000. */
    closeTimeout?: number | undefined
    /** Default: the Origin's host must be the Host header. `true` allows all; or a list, or a function. */
    checkOrigin?: true | Array<string | RegExp> | OriginCheck<Request> | undefined
    /** permessage-deflate: `true` or ws's options. Default `false`. */
    compression?: boolean | PerMessageDeflateOptions | undefined
    /** Bytes queued for a slow reader beyond which the socket is closed with 1008. Default 16 MiB. */
    maxBufferedAmount?: number | undefined
    /** Messages waiting behind a slow `message` hook before the socket stops reading. Default 1024. */
    maxPendingMessages?: number | undefined
    /**
     * Bytes of received messages not yet handled (waiting, or in an async `message` hook)
     * at which the socket stops reading. Default: `maxMessageSize`.
     */
    maxPendingBytes?: number | undefined
    /** Check outgoing objects against `outbound` before serializing; a mismatch throws `FST_WS_INVALID_OUTBOUND`. Default `true`. */
    validateOutbound?: boolean | undefined
    /**
     * Answer the client's heartbeat (an empty text message, as sent by `fastify-typed-websocket/client`)
     * with an empty text message, before validation and without calling `message`. Default `false`.
     */
    heartbeat?: boolean | undefined
    /** Subprotocols the server speaks, most preferred first. Default: none. */
    subprotocols?: string[] | undefined
    /** Picks a subprotocol from those the client offered; return nothing for none. Default: none. */
    selectSubprotocol?: SubprotocolSelector<Request> | undefined
    /** Open connections allowed: in all for the plugin's option, on the route for a route's. Beyond it an upgrade gets 503 with `Retry-After`. Default: unlimited. */
    maxConnections?: number | undefined
    /** Messages (and bytes) a connection may send per interval. Default: unlimited. */
    rateLimit?: RateLimitOptions | undefined
    /** Request handlers that may run at once on a connection; beyond it the socket stops reading (TCP backpressure). Default 16. */
    maxConcurrentRequests?: number | undefined
    /** Milliseconds a request handler may take: then its signal aborts and the request is answered -32800. Default: no limit. */
    requestTimeout?: number | undefined
    /** Keys a connection may subscribe to with `$/subscribe` (client subscriptions) at once; beyond it the call is refused -32602. Default 100. */
    maxSubscriptions?: number | undefined
  }

  export interface FastifyTypedWebsocketOptions extends WebSocketOptions {
    /** Where topics publish and subscribe. Default: an in-memory broker, one process. */
    broker?: Broker | undefined
    /**
     * Bytes queued, on the whole server, to readers that do not keep up (a frame shared by
     * many sockets, a topic's message, counts once). Past it, the connections holding the most
     * are closed with 1008 `send buffer full` first. A plugin option only. Default 512 MiB.
     */
    maxBufferedTotal?: number | undefined
  }

  export type Broker = import('./broker').Broker
  export type BrokerEntry = import('./broker').BrokerEntry
  export type BrokerMessage = import('./broker').BrokerMessage
  export type BrokerSink = import('./broker').BrokerSink
  export type BrokerTopic = import('./broker').BrokerTopic

  export interface TopicOptions<Message extends MessageSchema = MessageSchema, OffsetField extends string = never, Presence extends MessageSchema | undefined = undefined> {
    /** The schema every message of the topic matches. */
    message: Message
    /** Messages kept per key for `history()` and recovery with `since`. Default 0. */
    history?: number | undefined
    /** Milliseconds a key's history outlives its last publish. Default 600000. */
    historyTtl?: number | undefined
    /** An integer field of the message that the topic sets to the message's offset. */
    offsetField?: OffsetField | undefined
    /** The schema of what a member shows in `presence()`. */
    presence?: Presence | undefined
    /** Milliseconds a dead node's members stay in `presence()`. Default 30000. */
    presenceTtl?: number | undefined
  }

  /** Whether a socket's `outbound` type holds every message of a topic (`subscribe` refuses it otherwise). */
  export type CanHold<Socket, Message> = Socket extends TypedWebSocket<infer Outbound, unknown>
    ? ([Message] extends [Outbound] ? true : false)
    : false

  /**
   * The type of `subscribe`'s `key`: a string when the socket can hold the topic's messages, else
   * a sentence that the compiler shows as the error ("Argument of type 'string' is not assignable to …").
   */
  export type SubscribeKey<Socket, Message, Name extends string> = CanHold<Socket, Message> extends true
    ? string
    : `Topic ${string extends Name ? string : `"${Name}"`}: this socket's outbound type cannot hold the topic's messages; add the topic's message schema to the route's outbound (e.g. in a Type.Union)`

  export interface SubscribeOptions<Presence> {
    /** The last offset the client saw: messages after it are replayed when history covers them. */
    since?: number | undefined
    /** Makes the socket a member of the key, as shown by `presence()`. */
    presence?: Presence | undefined
  }

  /**
   * A declared topic.
   * @example await rooms.subscribe(socket, 'lobby', { since: 41 }); await rooms.publish('lobby', { type: 'said', text: 'hi' })
   */
  export interface Topic<Message = unknown, OffsetField extends string = never, Presence = never, Name extends string = string> {
    readonly name: Name
    /** Checks, serializes and frames the message once and delivers it to every subscriber of `key` but `except`. */
    publish (key: string, message: [OffsetField] extends [never] ? Message : Omit<Message, OffsetField>,
      options?: { except?: TypedWebSocket<unknown, unknown> | undefined }): Promise<{ offset: number }>
    /** Subscribes a socket to `key`; with `since`, replays what it missed when `recovered`. */
    subscribe<Socket extends TypedWebSocket<unknown, unknown>> (socket: Socket, key: SubscribeKey<Socket, Message, Name>,
      options?: SubscribeOptions<Presence>): Promise<{ offset: number, recovered: boolean }>
    unsubscribe (socket: TypedWebSocket<unknown, unknown>, key: string): Promise<void>
    /** The sockets of this process subscribed to `key`. */
    subscribers (key: string): ReadonlySet<TypedWebSocket<unknown, unknown>>
    /** Stored messages in offset order: with `since`, the oldest `limit` after it; without, the newest `limit`. */
    history (key: string, options?: { since?: number | undefined, limit?: number | undefined }): Promise<Array<{ offset: number, message: Message }>>
    /** One entry per subscribed member socket, on every node. */
    presence (key: string): Promise<Presence[]>
  }

  /**
   * One entry of a route's `subscriptions`: a topic the client may subscribe to with
   * `client.subscribe(name, key)`, who may, and what the subscriber shows in `presence()`.
   */
  export interface SubscriptionEntry<Request = FastifyRequest, Message = unknown, OffsetField extends string = string, Presence = unknown, Name extends string = string> {
    topic: Topic<Message, OffsetField, Presence, Name>
    /** Whether the socket may subscribe to `key`; `false` refuses with the app error `forbidden`. Default: any key. */
    authorize?: ((this: FastifyInstance, socket: TypedWebSocket<unknown, Request>, key: string) => boolean | Promise<boolean>) | undefined
    /** What the subscriber shows in `presence()` (the topic's presence schema). */
    presence?: ((this: FastifyInstance, socket: TypedWebSocket<unknown, Request>) => Presence | Promise<Presence>) | undefined
  }

  /** A route's `subscriptions`: each entry's name is its topic's name. */
  export type SubscriptionEntries<Request = FastifyRequest> = {
    [Name in string]: SubscriptionEntry<Request, unknown, string, unknown, Name>
  }

  /** A route's `websocket` object: its options, and a handler for each of its `requests`. */
  export type WebSocketRoute<
    Inbound extends MessageSchema | undefined = undefined,
    Outbound extends MessageSchema | undefined = undefined,
    Binary extends boolean = false,
    Request = FastifyRequest,
    Requests extends RequestSchemas | undefined = undefined,
    ClientRequests extends RequestSchemas | undefined = undefined
  > = WebSocketRouteOptions<Inbound, Outbound, Binary, Request, Requests, ClientRequests> & ([Requests] extends [RequestSchemas]
    ? {
        /** A handler for every method of `requests`, called with the socket, the checked params and `{ id, method, signal }`. */
        handlers: RequestHandlers<Requests, OutboundOf<Outbound>, Request, MethodsOf<ClientRequests>>
      }
    : { handlers?: undefined })

  /** A route's `websocket` option: schemas, hooks and option overrides. */
  export interface WebSocketRouteOptions<
    Inbound extends fastifyTypedWebsocket.MessageSchema | undefined = undefined,
    Outbound extends fastifyTypedWebsocket.MessageSchema | undefined = undefined,
    Binary extends boolean = false,
    Request = FastifyRequest,
    Requests extends RequestSchemas | undefined = undefined,
    ClientRequests extends RequestSchemas | undefined = undefined
  > extends WebSocketOptions<Request> {
    /**
     * JSON-RPC 2.0 methods the client may call, each with TypeBox schemas of its params, result and app errors.
     * @example requests: { join: { params: Type.Object({ room: Type.String() }), result: Type.Object({ members: Type.Array(Type.String()) }) } }
     */
    requests?: Requests | undefined
    /** JSON-RPC 2.0 methods the server may call on the client with `socket.call()`. */
    clientRequests?: ClientRequests | undefined
    /**
     * Topics the client may subscribe to (`client.subscribe(name, key)`), by topic name.
     * @example subscriptions: { rooms: { topic: rooms, authorize: (socket, key) => key !== 'staff' } }
     */
    subscriptions?: SubscriptionEntries<Request> | undefined
    /** Schema of every text message (JSON); a message that fails it never reaches `message`. */
    inbound?: Inbound | undefined
    /** Schema of the objects `socket.send()` takes; compiled into a serializer. */
    outbound?: Outbound | undefined
    /** With `inbound`: also accept binary frames, delivered to `message` as Buffers. */
    binary?: Binary | undefined
    /**
     * The answer to a plain GET or HEAD without `Upgrade` (instead of the 400), after the same hooks.
     * @example http: (request, reply) => reply.type('text/html').send(page)
     */
    http?: ((this: FastifyInstance, request: Request, reply: FastifyReply) => unknown) | undefined
    /** Each data message, one at a time per connection, in arrival order. */
    message?: ((this: FastifyInstance, socket: TypedWebSocket<OutboundOf<Outbound>, Request, MethodsOf<ClientRequests>>, msg: InboundOf<Inbound, Binary>) => HookResult) | undefined
    /** Once, after the connection is gone, if `open` completed: the peer's code and reason, and who closed with what. */
    close?: ((this: FastifyInstance, socket: TypedWebSocket<OutboundOf<Outbound>, Request, MethodsOf<ClientRequests>>, code: number, reason: string, details: CloseDetails) => HookResult) | undefined
    /** A ping arrived (it was already answered). */
    ping?: ((this: FastifyInstance, socket: TypedWebSocket<OutboundOf<Outbound>, Request, MethodsOf<ClientRequests>>, data: Buffer) => HookResult) | undefined
    /** A pong arrived. */
    pong?: ((this: FastifyInstance, socket: TypedWebSocket<OutboundOf<Outbound>, Request, MethodsOf<ClientRequests>>, data: Buffer) => HookResult) | undefined
    /** `open`, `message`, `ping` or `pong` threw. Default: log and close 1011 `internal error`. */
    error?: ((this: FastifyInstance, socket: TypedWebSocket<OutboundOf<Outbound>, Request, MethodsOf<ClientRequests>>, err: unknown) => HookResult) | undefined
    /** A text message that is not JSON or fails `inbound`. Default: close 1007 naming the failing path. */
    invalidMessage?: ((this: FastifyInstance, socket: TypedWebSocket<OutboundOf<Outbound>, Request, MethodsOf<ClientRequests>>, err: InvalidMessageError, raw: string) => HookResult) | undefined
  }

  export interface InjectWSOptions {
    headers?: Record<string, string> | undefined
    protocols?: string | string[] | undefined
  }

  /**
   * The close codes of RFC 6455, by name.
   * @example socket.close(CloseCode.PolicyViolation, 'quota exceeded')
   */
  export const CloseCode: {
    readonly Normal: 1000
    readonly GoingAway: 1001
    readonly ProtocolError: 1002
    readonly UnsupportedData: 1003
    readonly NoStatus: 1005
    readonly Abnormal: 1006
    readonly InvalidPayload: 1007
    readonly PolicyViolation: 1008
    readonly MessageTooBig: 1009
    readonly MandatoryExtension: 1010
    readonly InternalError: 1011
    readonly ServiceRestart: 1012
    readonly TryAgainLater: 1013
    readonly BadGateway: 1014
  }
  export type CloseCode = typeof CloseCode[keyof typeof CloseCode]

  /**
   * Thrown by `socket.send()` and `socket.ping()` once the socket is closing or closed (`code: 'FST_WS_CLOSED'`).
   * @example if (err instanceof WebSocketClosedError) return
   */
  export const WebSocketClosedError: FastifyErrorConstructor<{ code: 'FST_WS_CLOSED', statusCode: 500 }, [string]>

  // Every error class the plugin throws, for `instanceof` (docs/reference.md, Errors); each instance has its `code`.
  /** `websocket` on a route that is not GET (thrown at registration). */
  export const FST_WS_NOT_GET: FastifyErrorConstructor<{ code: 'FST_WS_NOT_GET', statusCode: 500 }, [url: string, method: string]>
  /** A broken plugin, route or topic option (fails `app.ready()`). */
  export const FST_WS_INVALID_OPTION: FastifyErrorConstructor<{ code: 'FST_WS_INVALID_OPTION', statusCode: 500 }, [where: string, problem: string]>
  /** A route with a `websocket` option the plugin never saw (fails `app.ready()`). */
  export const FST_WS_PLUGIN_NOT_REGISTERED: FastifyErrorConstructor<{ code: 'FST_WS_PLUGIN_NOT_REGISTERED', statusCode: 500 }, [url: string]>
  /** An `inbound` / `outbound` schema that does not compile (fails `app.ready()`). */
  export const FST_WS_INVALID_SCHEMA: FastifyErrorConstructor<{ code: 'FST_WS_INVALID_SCHEMA', statusCode: 500 }, [url: string, which: string, problem: string]>
  /** The class of the error given to `invalidMessage` (see `InvalidMessageError`). */
  export const FST_WS_INVALID_MESSAGE: FastifyErrorConstructor<{ code: 'FST_WS_INVALID_MESSAGE', statusCode: 400 }, [message: string]>
  /** `send()` with an object that does not match `outbound`. */
  export const FST_WS_INVALID_OUTBOUND: FastifyErrorConstructor<{ code: 'FST_WS_INVALID_OUTBOUND', statusCode: 500 }, [problem: string]>
  /** `selectSubprotocol` chose a protocol the client did not offer. */
  export const FST_WS_SUBPROTOCOL_NOT_OFFERED: FastifyErrorConstructor<{ code: 'FST_WS_SUBPROTOCOL_NOT_OFFERED', statusCode: 500 }, [protocol: string]>
  /** `app.inject()` with upgrade headers: use `app.injectWS()`. */
  export const FST_WS_NO_UPGRADE_SOCKET: FastifyErrorConstructor<{ code: 'FST_WS_NO_UPGRADE_SOCKET', statusCode: 400 }, []>
  /** `app.injectWS()` was answered with plain HTTP (see `UpgradeRefusedError`). */
  export const FST_WS_UPGRADE_REFUSED: FastifyErrorConstructor<{ code: 'FST_WS_UPGRADE_REFUSED', statusCode: 500 }, [status: number | string]>
  /** `app.websocketTopic()` with a name already declared. */
  export const FST_WS_DUPLICATE_TOPIC: FastifyErrorConstructor<{ code: 'FST_WS_DUPLICATE_TOPIC', statusCode: 500 }, [name: string]>
  /** A topic used before `app.ready()` has resolved or after `app.close()`. */
  export const FST_WS_TOPIC_NOT_READY: FastifyErrorConstructor<{ code: 'FST_WS_TOPIC_NOT_READY', statusCode: 500 }, [name: string, method: string, when: string]>
  /** `topic.subscribe()` with a socket whose `outbound` cannot hold the topic's messages. */
  export const FST_WS_OUTBOUND_CANNOT_HOLD: FastifyErrorConstructor<{ code: 'FST_WS_OUTBOUND_CANNOT_HOLD', statusCode: 500 }, [topic: string, url: string, problem: string]>
  /** The broker did not answer in time. */
  export const FST_WS_BROKER_UNAVAILABLE: FastifyErrorConstructor<{ code: 'FST_WS_BROKER_UNAVAILABLE', statusCode: 503 }, [problem: string]>
  /** A presence that fails the topic's `presence` schema. */
  export const FST_WS_INVALID_PRESENCE: FastifyErrorConstructor<{ code: 'FST_WS_INVALID_PRESENCE', statusCode: 400 }, [topic: string, problem: string]>
  /** `socket.call()` of a method not among the route's `clientRequests`. */
  export const FST_WS_UNKNOWN_METHOD: FastifyErrorConstructor<{ code: 'FST_WS_UNKNOWN_METHOD', statusCode: 500 }, [method: string]>
  /** `socket.call()` got no answer within its timeout. */
  export const FST_WS_REQUEST_TIMEOUT: FastifyErrorConstructor<{ code: 'FST_WS_REQUEST_TIMEOUT', statusCode: 500 }, [method: string, ms: number]>
  /** `socket.call()`'s signal aborted. */
  export const FST_WS_REQUEST_ABORTED: FastifyErrorConstructor<{ code: 'FST_WS_REQUEST_ABORTED', statusCode: 500 }, [method: string]>
  /** The client's answer to `socket.call()` does not match the method's `result` schema. */
  export const FST_WS_INVALID_RESULT: FastifyErrorConstructor<{ code: 'FST_WS_INVALID_RESULT', statusCode: 500 }, [method: string, problem: string]>

  /**
   * The reasons the server closes a connection with (and the client's own), by name.
   * @example ws.on('close', (code, reason) => { if (String(reason) === CloseReason.SendBufferFull) slowDown() })
   */
  export const CloseReason: {
    readonly PingTimeout: 'ping timed out'
    readonly ShuttingDown: 'server shutting down'
    readonly NoMessages: 'this endpoint accepts no messages'
    readonly NoBinary: 'binary messages are not accepted'
    readonly SendBufferFull: 'send buffer full'
    readonly RateLimited: 'rate limit exceeded'
    readonly MessageTooBig: 'message too big'
    readonly InternalError: 'internal error'
    readonly MissedMessages: 'missed messages'
    readonly HeartbeatTimeout: 'heartbeat timed out'
  }
  export type CloseReason = typeof CloseReason[keyof typeof CloseReason]

  /**
   * The error answer of a JSON-RPC request: `code` and `message`, and for a declared app error its `name` and `data`
   * (`name` is `'RemoteError'` otherwise).
   * @example if (err instanceof RemoteError && err.code === -32601) console.log('the client cannot confirm')
   */
  export class RemoteError extends Error {
    constructor (code: number, message: string, data?: unknown, name?: string)
    readonly code: number
    readonly data: unknown
  }

  /** The standard JSON-RPC 2.0 error codes, and -32800 for a cancelled request. */
  export const RpcCode: {
    readonly ParseError: -32700
    readonly InvalidRequest: -32600
    readonly MethodNotFound: -32601
    readonly InvalidParams: -32602
    readonly InternalError: -32603
    readonly Cancelled: -32800
  }

  /**
   * The plugin: registers the `websocket` route option, `app.websocketClients` and `app.injectWS()`.
   * @example await app.register(fastifyTypedWebsocket, { pingInterval: 30_000 })
   */
  export const fastifyTypedWebsocket: FastifyTypedWebsocket
  export { fastifyTypedWebsocket as default }
}

declare function fastifyTypedWebsocket (...params: Parameters<FastifyTypedWebsocket>): ReturnType<FastifyTypedWebsocket>
export = fastifyTypedWebsocket
