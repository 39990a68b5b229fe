// The gate in plugin/internals.ts on the installed ws: every private access is laid out
// as expected, nothing falls back, nothing is warned; receiver errors map by public code.
// (Each fallback has a file of its own: ws-layout, internals-sender, internals-frame,
// internals-off; the gate decides once per process.)
import t from 'tap'
import { closeCodeOf, currentLayout, ENV, wsVersion } from '../plugin/internals'
import { exercise, layoutServer, warnings } from './helpers/internals'

const off = process.env[ENV] === 'off'
const version = (require('ws/package.json') as { version: string }).version

t.test(`the installed ws (${version}): ${off ? 'every access off, as asked' : 'no fallback, no warning'}`, async (t) => {
  const setup = await layoutServer(t)
  const on = !off
  t.same(currentLayout(), { receiver: on, sender: on, socket: on, frame: on })
  t.equal(warnings(setup.server).length, off ? 1 : 0)
  t.equal(wsVersion(), version)
  await exercise(t, setup)
})

t.test('receiver errors map to close codes by their public code', async (t) => {
  const coded = (code: string): Error => Object.assign(new Error('x'), { code })
  t.equal(closeCodeOf(coded('WS_ERR_INVALID_UTF8')), 1007)
  t.equal(closeCodeOf(coded('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH')), 1009)
  t.equal(closeCodeOf(coded('WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH')), 1009)
  t.equal(closeCodeOf(coded('WS_ERR_TOO_MANY_BUFFERED_PARTS')), 1008)
  t.equal(closeCodeOf(coded('WS_ERR_INVALID_OPCODE')), 1002)
  t.equal(closeCodeOf(coded('WS_ERR_SOMETHING_NEW')), 1002)
  t.equal(closeCodeOf(new Error('no code')), 1002)
})
