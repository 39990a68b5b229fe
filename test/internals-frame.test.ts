// A ws whose Sender.frame builds something else than an unmasked text frame, and whose
// version cannot be read: frames are not pre-built, topic messages go as ordinary sends.
import t from 'tap'
import Module from 'node:module'
import WebSocket from 'ws'
import { currentLayout, wsVersion } from '../plugin/internals'
import { exercise, layoutServer, warnings } from './helpers/internals'

// ws builds its own frames with lib/sender.js directly; only the export the gate reads is changed.
type Exported = { Sender: { frame?: (data: Buffer, options: object) => Buffer[] } | undefined }
const exported = WebSocket as unknown as Exported
const Sender = exported.Sender
const M = Module as unknown as { _resolveFilename (request: string, ...rest: unknown[]): string }
const resolve = M._resolveFilename
t.teardown(() => {
  exported.Sender = Sender
  M._resolveFilename = resolve
})

t.test('Sender.frame that throws, or builds another frame, or is missing: the frame access falls back', async (t) => {
  M._resolveFilename = function (request: string, ...rest: unknown[]) {
    if (request === 'ws/package.json') throw new Error('not exported')
    return resolve.call(this, request, ...rest)
  }
  t.equal(wsVersion(), 'unknown', 'a ws without a readable version')
  exported.Sender = { frame: () => [Buffer.from([0x82, 0x00])] }
  const setup = await layoutServer(t)
  t.same(currentLayout(), { receiver: true, sender: true, socket: true, frame: false })
  t.match(warnings(setup.server), [{ ws: 'unknown', fallback: ['frame'], msg: 'ws unknown is not laid out as this plugin expects (frame); using its public API instead' }])
  await exercise(t, setup)
  M._resolveFilename = resolve
  for (const broken of [{ frame: () => { throw new Error('no') } }, {}, undefined]) {
    exported.Sender = broken
    const again = await layoutServer(t)
    t.same(currentLayout().frame, false, broken === undefined ? 'no Sender' : broken.frame === undefined ? 'no frame' : 'throws')
    t.equal(warnings(again.server).length, 1)
  }
})
