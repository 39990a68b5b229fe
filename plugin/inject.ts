import { Duplex } from 'node:stream'
import type { Server } from 'node:http'
import WebSocket from 'ws'
import { FST_WS_UPGRADE_REFUSED } from './errors'

function deliver (peer: Pipe, chunk: Buffer | null): void {
  if (!peer.destroyed) peer.push(chunk)
}

/**
 * One end of an in-memory connection: what one side writes, the other reads,
 * on a later tick as from a network, never within the writer's own call.
 */
class Pipe extends Duplex {
  peer: Pipe | undefined

  override _read (): void {}

  override _write (chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.peer !== undefined) process.nextTick(deliver, this.peer, chunk)
    callback()
  }

  override _final (callback: (error?: Error | null) => void): void {
    if (this.peer !== undefined) process.nextTick(deliver, this.peer, null)
    callback()
  }

  override _destroy (error: Error | null, callback: (error?: Error | null) => void): void {
    const peer = this.peer
    this.peer = undefined
    if (peer !== undefined) {
      process.nextTick(() => {
        deliver(peer, null)
        peer.destroy()
      })
    }
    callback(error)
  }
}

function pipePair (): [Pipe, Pipe] {
  const a = new Pipe()
  const b = new Pipe()
  a.peer = b
  b.peer = a
  return [a, b]
}

import type { InjectWSOptions, UpgradeRefusedError } from '../types'
export type { InjectWSOptions, UpgradeRefusedError }

/**
 * Connects a real `ws` client to the server through an in-memory connection:
 * the request goes through Node's HTTP parser, every hook and the handshake,
 * exactly as from the network, without a listening port.
 */
export function injectWS (server: Server, path: string, options: InjectWSOptions = {}): Promise<WebSocket> {
  const [client, side] = pipePair()
  server.emit('connection', side)
  const ws = new WebSocket(new URL(path, 'ws://localhost').href, options.protocols, {
    headers: options.headers,
    createConnection: () => client as never
  })
  return new Promise((resolve, reject) => {
    let settled = false
    // Stays attached: a client error after the handshake shows as its 'close' event.
    ws.on('error', (err) => {
      if (settled) return
      settled = true
      reject(err)
    })
    ws.once('open', () => {
      settled = true
      resolve(ws)
    })
    ws.once('unexpected-response', (_request, response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.once('end', () => {
        const err = new FST_WS_UPGRADE_REFUSED(response.statusCode) as unknown as UpgradeRefusedError
        err.statusCode = response.statusCode as number
        err.headers = response.headers
        err.body = Buffer.concat(chunks).toString()
        settled = true
        reject(err)
        ws.terminate()
      })
    })
  })
}
