'use strict'

// The message of one seq in the fan-out benchmark: the same object, and so the
// same JSON text, on every server; the load generator checks every delivery
// against it byte for byte.

const ROOM = 'bench'

function message (seq, size) {
  const base = { type: 'said', room: ROOM, seq, text: '' }
  const pad = size - JSON.stringify(base).length
  base.text = pad > 0 ? `m${seq}-`.padEnd(pad, 'x') : ''
  return base
}

module.exports = { message, ROOM }
