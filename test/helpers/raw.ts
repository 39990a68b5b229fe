import { randomBytes } from 'node:crypto'
import { connect as netConnect, type Socket } from 'node:net'

export const Opcode = { Continuation: 0, Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 } as const

export interface FrameSpec {
  opcode: number
  payload?: Buffer | string
  fin?: boolean
  rsv1?: boolean
  rsv2?: boolean
  rsv3?: boolean
  /** Clients must mask; false sends an unmasked frame. */
  mask?: boolean
  /** Announce this payload length in the header instead of the real one (the payload is not sent then). */
  announce?: bigint
}

/** Encodes one WebSocket frame, as a client would (masked unless told otherwise). */
export function frame (spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : (spec.payload ?? Buffer.alloc(0))
  const length = spec.announce ?? BigInt(payload.length)
  const mask = spec.mask ?? true
  let first = spec.opcode & 0x0f
  if (spec.fin ?? true) first |= 0x80
  if (spec.rsv1 === true) first |= 0x40
  if (spec.rsv2 === true) first |= 0x20
  if (spec.rsv3 === true) first |= 0x10
  let header: Buffer
  if (length < 126n) {
    header = Buffer.from([first, Number(length)])
  } else if (length < 65536n) {
    header = Buffer.alloc(4)
    header[0] = first
    header[1] = 126
    header.writeUInt16BE(Number(length), 2)
  } else {
    header = Buffer.alloc(10)
    header[0] = first
    header[1] = 127
    header.writeBigUInt64BE(length, 2)
  }
  if (mask) header[1] |= 0x80
  if (spec.announce !== undefined) return mask ? Buffer.concat([header, randomBytes(4)]) : header
  if (!mask) return Buffer.concat([header, payload])
  const key = randomBytes(4)
  const masked = Buffer.alloc(payload.length)
  for (let i = 0; i < payload.length; i++) masked[i] = payload[i] ^ key[i & 3]
  return Buffer.concat([header, key, masked])
}

/** A close frame's payload: a code and a reason. */
export function closePayload (code: number, reason: Buffer | string = ''): Buffer {
  const head = Buffer.alloc(2)
  head.writeUInt16BE(code)
  return Buffer.concat([head, typeof reason === 'string' ? Buffer.from(reason) : reason])
}

export interface ServerFrame {
  fin: boolean
  opcode: number
  payload: Buffer
}

export interface HttpAnswer {
  status: number
  headers: Record<string, string>
  body: string
}

/** Parses an HTTP/1.1 response head (and the body read so far). */
export function parseHttp (text: string): HttpAnswer {
  const end = text.indexOf('\r\n\r\n')
  const [statusLine, ...lines] = text.slice(0, end === -1 ? undefined : end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: end === -1 ? '' : text.slice(end + 4) }
}

/** Sends raw bytes as an HTTP request and reads until the server closes the connection. */
export function rawHttp (port: number, request: string, ms = 5000): Promise<HttpAnswer & { raw: string }> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`server kept the connection open for ${ms} ms: ${Buffer.concat(chunks).toString()}`))
    }, ms)
    socket.on('data', (c) => chunks.push(c))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      const raw = Buffer.concat(chunks).toString()
      resolve({ ...parseHttp(raw), raw })
    })
    socket.write(request)
  })
}

/**
 * Sends raw bytes as an HTTP request and resolves with the first complete response
 * (its head and Content-Length bytes of body), without waiting for the server to
 * close: for keep-alive answers (not for HEAD, whose answer has no body). `closed`
 * tells whether the server had closed by then.
 */
export function rawResponse (port: number, request: string, ms = 5000): Promise<HttpAnswer & { raw: string, closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1')
    let received = Buffer.alloc(0)
    let closed = false
    let done = false
    const timer = setTimeout(() => {
      done = true
      socket.destroy()
      reject(new Error(`no complete response within ${ms} ms: ${received.toString()}`))
    }, ms)
    const check = (): void => {
      const end = received.indexOf('\r\n\r\n')
      if (end === -1) {
        if (closed) finish()
        return
      }
      const answer = parseHttp(received.subarray(0, end + 4).toString())
      const length = Number(answer.headers['content-length'] ?? 0)
      if (received.length - end - 4 >= length || closed) finish()
    }
    const finish = (): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      const raw = received.toString()
      socket.destroy()
      resolve({ ...parseHttp(raw), raw, closed })
    }
    socket.on('data', (c: Buffer) => {
      received = Buffer.concat([received, c])
      check()
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      if (done) return
      closed = true
      check()
    })
    socket.write(request)
  })
}

export const GOOD_KEY = 'dGhlIHNhbXBsZSBub25jZQ=='

/** A complete upgrade request; `headers` override or add (a null value removes one). */
export function upgradeRequest (path: string, headers: Record<string, string | null> = {}): string {
  const all: Record<string, string | null> = {
    host: 'localhost',
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': GOOD_KEY,
    'sec-websocket-version': '13',
    ...headers
  }
  const lines = Object.entries(all).filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${String(v)}`)
  return `GET ${path} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`
}

/**
 * A WebSocket client on a raw TCP socket: it sends whatever frames a test
 * builds (valid or not) and parses what the server sends back.
 */
export class RawClient {
  readonly socket: Socket
  readonly frames: ServerFrame[] = []
  handshake: HttpAnswer | undefined
  closedAt: number | undefined
  #buffer = Buffer.alloc(0)
  #waiters: Array<() => void> = []

  private constructor (socket: Socket) {
    this.socket = socket
    socket.on('error', () => {})
    socket.on('data', (chunk) => this.#onData(chunk))
    socket.on('close', () => {
      this.closedAt = Date.now()
      this.#wake()
    })
  }

  /** Connects and completes the upgrade; rejects unless the server answers 101. */
  static async open (port: number, path: string, headers: Record<string, string | null> = {}, ms = 5000): Promise<RawClient> {
    const socket = netConnect(port, '127.0.0.1')
    const client = new RawClient(socket)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    socket.write(upgradeRequest(path, headers))
    await client.until(() => client.handshake !== undefined, ms, 'the handshake answer')
    if (client.handshake?.status !== 101) {
      socket.destroy()
      throw new Error(`upgrade refused: ${String(client.handshake?.status)}`)
    }
    return client
  }

  /** Connects without sending anything. */
  static async connectOnly (port: number): Promise<RawClient> {
    const socket = netConnect(port, '127.0.0.1')
    const client = new RawClient(socket)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return client
  }

  send (spec: FrameSpec | Buffer): void {
    this.socket.write(Buffer.isBuffer(spec) ? spec : frame(spec))
  }

  get closed (): boolean {
    return this.closedAt !== undefined
  }

  /** The close frame the server sent, as code and reason. */
  get close (): { code: number, reason: string } | undefined {
    const f = this.frames.find(x => x.opcode === Opcode.Close)
    if (f === undefined) return undefined
    return f.payload.length >= 2 ? { code: f.payload.readUInt16BE(0), reason: f.payload.subarray(2).toString() } : { code: 1005, reason: '' }
  }

  /** Waits for a condition checked after each chunk the server sends. */
  until (check: () => boolean, ms = 5000, what = 'the server'): Promise<void> {
    if (check()) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter(w => w !== waiter)
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`))
      }, ms)
      const waiter = (): void => {
        if (!check()) return
        clearTimeout(timer)
        this.#waiters = this.#waiters.filter(w => w !== waiter)
        resolve()
      }
      this.#waiters.push(waiter)
    })
  }

  /** Waits for the server's close frame and the end of the TCP connection. */
  async closing (ms = 5000): Promise<{ code: number, reason: string }> {
    await this.until(() => this.close !== undefined, ms, 'a close frame')
    return this.close as { code: number, reason: string }
  }

  destroy (): void {
    this.socket.destroy()
  }

  #wake (): void {
    for (const waiter of [...this.#waiters]) waiter()
  }

  #onData (chunk: Buffer): void {
    this.#buffer = Buffer.concat([this.#buffer, chunk])
    if (this.handshake === undefined) {
      const end = this.#buffer.indexOf('\r\n\r\n')
      if (end === -1) return
      this.handshake = parseHttp(this.#buffer.subarray(0, end + 4).toString())
      this.#buffer = this.#buffer.subarray(end + 4)
    }
    for (;;) {
      const parsed = parseFrame(this.#buffer)
      if (parsed === undefined) break
      this.frames.push(parsed.frame)
      this.#buffer = this.#buffer.subarray(parsed.size)
    }
    this.#wake()
  }
}

function parseFrame (buffer: Buffer): { frame: ServerFrame, size: number } | undefined {
  if (buffer.length < 2) return undefined
  let length = buffer[1] & 0x7f
  let offset = 2
  if (length === 126) {
    if (buffer.length < 4) return undefined
    length = buffer.readUInt16BE(2)
    offset = 4
  } else if (length === 127) {
    if (buffer.length < 10) return undefined
    length = Number(buffer.readBigUInt64BE(2))
    offset = 10
  }
  if (buffer.length < offset + length) return undefined
  return {
    frame: { fin: (buffer[0] & 0x80) !== 0, opcode: buffer[0] & 0x0f, payload: Buffer.from(buffer.subarray(offset, offset + length)) },
    size: offset + length
  }
}
