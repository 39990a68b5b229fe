// A ws whose Sender is laid out otherwise (here: `_firstFragment` truthy but not the boolean
// the gate checks for): topic frames go through ws as ordinary sends, in the same order.
import t from 'tap'
import WebSocket from 'ws'
import { currentLayout } from '../plugin/internals'
import { exercise, layoutServer, warnings } from './helpers/internals'

type Internal = { setSocket (...args: unknown[]): void, _sender: { _firstFragment: unknown } }
const proto = WebSocket.prototype as unknown as Internal
const setSocket = proto.setSocket
proto.setSocket = function (this: Internal, ...args: unknown[]) {
  setSocket.apply(this, args)
  this._sender._firstFragment = 1
}
t.teardown(() => { proto.setSocket = setSocket })
const version = (require('ws/package.json') as { version: string }).version

t.test('the sender falls back alone, with a warning naming the ws version', async (t) => {
  const setup = await layoutServer(t)
  t.same(currentLayout(), { receiver: true, sender: false, socket: true, frame: true })
  t.match(warnings(setup.server), [{ ws: version, fallback: ['sender'], msg: `ws ${version} is not laid out as this plugin expects (sender); using its public API instead` }])
  await exercise(t, setup)
})
