// Message collection for undici's WHATWG WebSocket (see connectWhatwg and whatwgClosed in server.ts).
import type { MessageEvent, WebSocket } from 'undici'

/**
 * Collects the next `count` messages of a WHATWG WebSocket (text as string, binary as
 * Buffer: it switches `binaryType` to 'arraybuffer'); fails after `ms`.
 */
export function whatwgMessages (ws: WebSocket, count: number, ms = 10_000): Promise<Array<string | Buffer>> {
  ws.binaryType = 'arraybuffer'
  return new Promise((resolve, reject) => {
    const got: Array<string | Buffer> = []
    const timer = setTimeout(() => {
      ws.removeEventListener('message', onMessage)
      reject(new Error(`got ${got.length} of ${count} messages within ${ms} ms`))
    }, ms)
    function onMessage (event: MessageEvent): void {
      got.push(typeof event.data === 'string' ? event.data : Buffer.from(event.data as ArrayBuffer))
      if (got.length === count) {
        clearTimeout(timer)
        ws.removeEventListener('message', onMessage)
        resolve(got)
      }
    }
    ws.addEventListener('message', onMessage)
  })
}
