/*
 * Writes a topic's message: a text frame built once (internals.ts, buildFrame)
 * goes to every subscriber as the same buffer, and the frames of one tick
 * leave each socket in one write.
 *
 * The ticks: the first frame of a tick for a socket is written at once (one
 * write, as a lone message needs anyway); the socket is corked for any
 * further frames of the same tick, and every corked socket is uncorked in one
 * callback at the end of the tick, so that a burst leaves in one more write.
 */
import WebSocket from 'ws'
import { messageChannel } from './diagnostics'
import { senderIdle, socketOf } from './internals'
import type { WebSocketConnection } from './connection'
import { flushOf, hold, overLimit, TEXT, waitingSends } from './outbound'
import { Flag, kFlags, kFlush, kFrameTick, kMessagesOut, kRoute } from './state'

let frameTick = 1
let tickScheduled = false
let corkedConnections: WebSocketConnection[] = []

function endFrameTick (): void {
  // Stays a small integer (a wrap to 0 only corks a fresh socket's first frame).
  frameTick = (frameTick + 1) & 0x3fffffff
  tickScheduled = false
  const corked = corkedConnections
  if (corked.length === 0) return
  corkedConnections = []
  for (let i = 0; i < corked.length; i++) uncork(corked[i])
}

function uncork (connection: WebSocketConnection): void {
  connection[kFlags] &= ~Flag.Corked
  socketOf(connection.raw).uncork()
}

/**
 * Writes `frame`, the pre-built text frame of `text`. Where the pre-built
 * frame is not safe (compression negotiated, ws's sender busy or holding
 * frames, a fragmented message half sent) the payload goes through ws as an
 * ordinary send, in order. While the reader is behind, what it is sent counts
 * in the server's budget until it is flushed.
 */
export function sendFrame (connection: WebSocketConnection, frame: Buffer, text: string): void {
  const raw = connection.raw
  if (raw.readyState !== WebSocket.OPEN) return
  if (overLimit(connection, waitingSends(connection))) return
  connection[kMessagesOut]++
  if (messageChannel.hasSubscribers) messageChannel.publish({ socket: connection, direction: 'out', bytes: Buffer.byteLength(text), binary: false })
  const socket = socketOf(raw)
  let flags = connection[kFlags]
  if (connection[kFrameTick] !== frameTick) {
    // The first frame of this tick for this socket: written at once. Bytes
    // still waiting from before: this reader is behind, and what it is sent
    // now counts in the server's budget until it is flushed.
    connection[kFrameTick] = frameTick
    if (!tickScheduled) {
      tickScheduled = true
      process.nextTick(endFrameTick)
    }
    const flush = connection[kFlush]
    flags = connection[kFlags] = raw.bufferedAmount > 0 || (flush !== undefined && flush.entries.length > 0)
      ? flags | Flag.Behind
      : flags & ~Flag.Behind
  } else if ((flags & Flag.Corked) === 0) {
    flags = connection[kFlags] = flags | Flag.Corked
    socket.cork()
    corkedConnections.push(connection)
  }
  if (raw.extensions !== '' || !senderIdle(raw)) {
    if ((flags & Flag.Behind) === 0) {
      raw.send(text, TEXT)
      return
    }
    const flush = flushOf(connection)
    hold(connection, flush, Buffer.byteLength(text))
    raw.send(text, TEXT, flush.callback)
  } else if ((flags & Flag.Behind) === 0) {
    socket.write(frame)
    return
  } else {
    const flush = flushOf(connection)
    hold(connection, flush, frame)
    socket.write(frame, flush.callback)
  }
  connection[kRoute].budget.check()
}
