import { channel, tracingChannel } from 'node:diagnostics_channel'

/**
 * The `node:diagnostics_channel` channels of the plugin. Every payload is
 * built only when someone subscribes, so they cost nothing otherwise.
 *
 * - `fastify-typed-websocket:open` `{ socket, request }`: after the 101, before `open` runs.
 * - `fastify-typed-websocket:close` `{ socket, code, reason, closedBy, serverCode, serverReason,
 *   peerCode, peerReason, durationMs, messagesIn, messagesOut, bytesIn, bytesOut }`: the
 *   connection is gone (the `close` hook may still run).
 * - `fastify-typed-websocket:message` `{ socket, direction: 'in' | 'out', bytes, binary }`:
 *   a data message was received or handed to the network.
 * - `fastify-typed-websocket:publish` `{ topic, key, offset, subscribers }`: a topic message
 *   was accepted by the broker and delivered to this node's subscribers.
 * - `fastify-typed-websocket:drop` `{ socket, bufferedAmount, messages, limit }`: a reader too
 *   slow is cut off (1008 `send buffer full`); `limit` is `'maxBufferedAmount'` (its own
 *   queue) or `'maxBufferedTotal'` (the server's queues in all, it held the most).
 * - `fastify-typed-websocket:invalid-message` `{ socket, error, raw }`: text that is not JSON
 *   or fails `inbound`.
 * - `fastify-typed-websocket:rate-limit` `{ socket, action, waitMs }`: a message found the
 *   connection's token bucket empty; `pause` waits `waitMs`, `close` closes with 1008.
 * - `tracingChannel('fastify-typed-websocket:hook')` `{ hook, socket, args }` around every
 *   hook call (`open`, `message`, `close`, `ping`, `pong`, `error`, `invalidMessage`):
 *   `start`/`end` around the call, `asyncStart`/`asyncEnd` when its promise settles,
 *   `error` when it throws or rejects (`error` then holds the error, else `result` the value).
 */
export const openChannel = channel('fastify-typed-websocket:open')
export const closeChannel = channel('fastify-typed-websocket:close')
export const messageChannel = channel('fastify-typed-websocket:message')
export const publishChannel = channel('fastify-typed-websocket:publish')
export const dropChannel = channel('fastify-typed-websocket:drop')
export const invalidMessageChannel = channel('fastify-typed-websocket:invalid-message')
export const rateLimitChannel = channel('fastify-typed-websocket:rate-limit')

export interface HookContext {
  hook: string
  socket: unknown
  args: unknown[]
  result?: unknown
  error?: unknown
}

export const hookChannel = tracingChannel<unknown, HookContext>('fastify-typed-websocket:hook')

// TracingChannel.hasSubscribers is missing before Node 20.13/22.0.
const tracing = [hookChannel.start, hookChannel.end, hookChannel.asyncStart, hookChannel.asyncEnd, hookChannel.error]
function traced (): boolean {
  for (const sub of tracing) if (sub.hasSubscribers) return true
  return false
}

type Hook = (this: unknown, ...args: unknown[]) => unknown

/** Calls a user's hook, inside the hook tracing channel when anyone listens. */
export function callHook (name: string, hook: Hook, instance: unknown, socket: unknown, a?: unknown, b?: unknown, c?: unknown): unknown {
  if (!traced()) return hook.call(instance, socket, a, b, c)
  const args = [a, b, c]
  while (args.length > 0 && args[args.length - 1] === undefined) args.pop()
  const context: HookContext = { hook: name, socket, args }
  const result = hookChannel.traceSync(hook, context, instance, socket, a, b, c)
  if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
    (result as PromiseLike<unknown>).then((value) => {
      context.result = value
      hookChannel.asyncStart.publish(context)
      hookChannel.asyncEnd.publish(context)
    }, (err: unknown) => {
      context.error = err
      hookChannel.error.publish(context)
      hookChannel.asyncStart.publish(context)
      hookChannel.asyncEnd.publish(context)
    })
  }
  return result
}
