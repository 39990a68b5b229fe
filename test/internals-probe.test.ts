// The gate's probe sees a ws laid out otherwise: a receiver it cannot find, a receiver that
// does not point back at its WebSocket, a net socket kept elsewhere. Only the probe (a
// WebSocket over an in-memory stream) is changed, so real connections show each fallback
// working on an unchanged ws.
import t from 'tap'
import { Socket } from 'node:net'
import WebSocket from 'ws'
import { currentLayout } from '../plugin/internals'
import { exercise, layoutServer, warnings } from './helpers/internals'

type Internal = { setSocket (...args: unknown[]): void, _receiver: unknown, _socket: unknown }
const proto = WebSocket.prototype as unknown as Internal
const setSocket = proto.setSocket
let change: ((ws: Internal) => void) | undefined
proto.setSocket = function (this: Internal, ...args: unknown[]) {
  setSocket.apply(this, args)
  if (!(args[0] instanceof Socket)) change?.(this)
}
t.teardown(() => { proto.setSocket = setSocket })

const changes: Array<[string, keyof ReturnType<typeof currentLayout>, (ws: Internal) => void]> = [
  ['no receiver where it was', 'receiver', (ws) => { ws._receiver = undefined }],
  ['a receiver without its WebSocket symbol', 'receiver', (ws) => {
    const receiver = ws._receiver as Record<symbol, unknown>
    for (const key of Object.getOwnPropertySymbols(receiver)) if (key.description === 'websocket') receiver[key] = {}
  }],
  ['the net socket kept under another name', 'socket', (ws) => { ws._socket = undefined }]
]

for (const [name, access, mutate] of changes) {
  t.test(`${name}: ${access} falls back alone, and everything still works`, async (t) => {
    change = mutate
    const setup = await layoutServer(t)
    change = undefined
    t.same(Object.entries(currentLayout()).filter(([, ok]) => !ok).map(([key]) => key), [access])
    t.match(warnings(setup.server), [{ fallback: [access] }])
    await exercise(t, setup)
  })
}
