// Unit tests of plugin/handshake.ts: the pure checks of Tornado's get(), no server.
import t from 'tap'
import type { IncomingHttpHeaders } from 'node:http'
import {
  checkUpgrade, checkVersionAndKey, compileOriginCheck, isSameHost, parseSubprotocols,
  preferredSubprotocol, refusals, requestOrigin
} from '../plugin/handshake'

const KEY = 'dGhlIHNhbXBsZSBub25jZQ=='
const upgradeHeaders: IncomingHttpHeaders = { upgrade: 'websocket', connection: 'Upgrade' }

t.test('the refusals are the contract\'s answers', async (t) => {
  t.same(refusals.upgrade, { statusCode: 400, body: 'Can "Upgrade" only to "WebSocket".' })
  t.same(refusals.connection, { statusCode: 400, body: '"Connection" must be "Upgrade".' })
  t.same(refusals.origin, { statusCode: 403, body: 'Cross origin websockets not allowed' })
  t.same(refusals.version, {
    statusCode: 426,
    body: 'Sec-WebSocket-Version must be 13 or 8.',
    headers: { 'sec-websocket-version': '13, 8' }
  })
  t.same(refusals.key, { statusCode: 400, body: 'Missing or invalid Sec-WebSocket-Key header.' })
  t.same(refusals.protocol, { statusCode: 400, body: 'Invalid Sec-WebSocket-Protocol header.' })
  t.ok(Object.isFrozen(refusals))
})

t.test('checkUpgrade', async (t) => {
  t.test('accepts Upgrade: websocket with Connection: Upgrade', async (t) => {
    t.equal(checkUpgrade('GET', upgradeHeaders), undefined)
  })

  t.test('Upgrade is compared case-insensitively', async (t) => {
    t.equal(checkUpgrade('GET', { upgrade: 'WebSocket', connection: 'upgrade' }), undefined)
    t.equal(checkUpgrade('GET', { upgrade: 'WEBSOCKET', connection: 'upgrade' }), undefined)
  })

  t.test('no Upgrade header: the upgrade refusal', async (t) => {
    t.equal(checkUpgrade('GET', {}), refusals.upgrade)
    t.equal(checkUpgrade('GET', { connection: 'Upgrade' }), refusals.upgrade)
  })

  t.test('an Upgrade to anything but websocket: the upgrade refusal', async (t) => {
    t.equal(checkUpgrade('GET', { upgrade: 'h2c', connection: 'Upgrade' }), refusals.upgrade)
    t.equal(checkUpgrade('GET', { upgrade: 'websocket, h2c', connection: 'Upgrade' }), refusals.upgrade)
    t.equal(checkUpgrade('GET', { upgrade: '', connection: 'Upgrade' }), refusals.upgrade)
  })

  t.test('a method other than GET: the upgrade refusal', async (t) => {
    t.equal(checkUpgrade('HEAD', upgradeHeaders), refusals.upgrade)
    t.equal(checkUpgrade('POST', upgradeHeaders), refusals.upgrade)
  })

  t.test('Connection without the upgrade token: the connection refusal', async (t) => {
    t.equal(checkUpgrade('GET', { upgrade: 'websocket' }), refusals.connection)
    t.equal(checkUpgrade('GET', { upgrade: 'websocket', connection: 'keep-alive' }), refusals.connection)
    t.equal(checkUpgrade('GET', { upgrade: 'websocket', connection: 'close' }), refusals.connection)
    t.equal(checkUpgrade('GET', { upgrade: 'websocket', connection: '' }), refusals.connection)
    t.equal(checkUpgrade('GET', { upgrade: 'websocket', connection: 'upgraded, keep-alive' }), refusals.connection)
  })

  t.test('Connection is a comma list in any case', async (t) => {
    t.equal(checkUpgrade('GET', { upgrade: 'websocket', connection: 'keep-alive, Upgrade' }), undefined)
    t.equal(checkUpgrade('GET', { upgrade: 'websocket', connection: 'UPGRADE' }), undefined)
    t.equal(checkUpgrade('GET', { upgrade: 'websocket', connection: 'keep-alive,upgrade' }), undefined)
    t.equal(checkUpgrade('GET', { upgrade: 'websocket', connection: '  upgrade  ,  keep-alive' }), undefined)
  })

  t.test('Upgrade is checked before Connection (Tornado\'s order)', async (t) => {
    t.equal(checkUpgrade('GET', { upgrade: 'h2c', connection: 'keep-alive' }), refusals.upgrade)
  })
})

t.test('checkVersionAndKey', async (t) => {
  t.test('version 13 and 8 with a well-formed key pass', async (t) => {
    t.equal(checkVersionAndKey({ 'sec-websocket-version': '13', 'sec-websocket-key': KEY }), undefined)
    t.equal(checkVersionAndKey({ 'sec-websocket-version': '8', 'sec-websocket-key': KEY }), undefined)
  })

  t.test('a missing or other version: 426 naming 13 and 8', async (t) => {
    for (const version of [undefined, '', '7', '12', '14', '13, 8', '013']) {
      t.equal(checkVersionAndKey({ 'sec-websocket-version': version, 'sec-websocket-key': KEY }), refusals.version, String(version))
    }
  })

  t.test('a missing or malformed key: 400', async (t) => {
    const malformed = [
      undefined,
      '',
      'not a key',
      'dGhlIHNhbXBsZSBub25jZQ', // no padding
      'dGhlIHNhbXBsZSBub25jZQ=', // one pad
      'dGhlIHNhbXBsZSBub25jZQ===', // 17 bytes of padding
      'dGhlIHNhbXBsZSBub25jZSE=', // 17 bytes
      'dGhlIHNhbXBsZSBub25j', // 15 bytes
      'dGhlIHNhbXBsZSBub25jZQ-=', // base64url is not base64
      ' dGhlIHNhbXBsZSBub25jZQ=='
    ]
    for (const key of malformed) {
      t.equal(checkVersionAndKey({ 'sec-websocket-version': '13', 'sec-websocket-key': key }), refusals.key, String(key))
    }
  })

  t.test('the version is checked before the key (Tornado\'s order)', async (t) => {
    t.equal(checkVersionAndKey({ 'sec-websocket-version': '7' }), refusals.version)
  })

  t.test('keys with + and / are well formed', async (t) => {
    t.equal(checkVersionAndKey({ 'sec-websocket-version': '13', 'sec-websocket-key': '+/+/+/+/+/+/+/+/+/+/+w==' }), undefined)
  })
})

t.test('requestOrigin', async (t) => {
  t.equal(requestOrigin({}), undefined, 'no origin at all')
  t.equal(requestOrigin({ origin: 'http://a.test' }), 'http://a.test')
  t.equal(requestOrigin({ 'sec-websocket-origin': 'http://b.test' }), 'http://b.test', 'version 8 clients')
  t.equal(requestOrigin({ origin: 'http://a.test', 'sec-websocket-origin': 'http://b.test' }), 'http://a.test', 'Origin wins')
  t.equal(requestOrigin({ 'sec-websocket-origin': ['http://b.test', 'http://c.test'] } as unknown as IncomingHttpHeaders), 'http://b.test',
    'the first of repeated values')
})

t.test('isSameHost', async (t) => {
  t.test('the origin\'s host[:port] equals the Host header', async (t) => {
    t.equal(isSameHost('http://localhost', 'localhost'), true)
    t.equal(isSameHost('http://localhost:3000', 'localhost:3000'), true)
    t.equal(isSameHost('https://example.com', 'example.com'), true)
    t.equal(isSameHost('http://[::1]:8080', '[::1]:8080'), true)
  })

  t.test('compared case-insensitively', async (t) => {
    t.equal(isSameHost('http://LocalHost:3000', 'localhost:3000'), true)
    t.equal(isSameHost('HTTP://example.com', 'EXAMPLE.COM'), true)
  })

  t.test('the scheme\'s default port may be written or left out', async (t) => {
    t.equal(isSameHost('http://example.com:80', 'example.com'), true)
    t.equal(isSameHost('http://example.com', 'example.com:80'), true)
    t.equal(isSameHost('https://example.com:443', 'example.com'), true)
    t.equal(isSameHost('https://example.com', 'example.com:443'), true)
    t.equal(isSameHost('wss://example.com:443', 'example.com'), true)
    t.equal(isSameHost('ws://example.com:80', 'example.com'), true)
    t.equal(isSameHost('https://example.com:80', 'example.com'), false, '80 is not https\'s default')
    t.equal(isSameHost('http://example.com:443', 'example.com'), false, '443 is not http\'s default')
  })

  t.test('same host, different port fails', async (t) => {
    t.equal(isSameHost('http://localhost:3001', 'localhost:3000'), false)
    t.equal(isSameHost('http://localhost', 'localhost:3000'), false)
    t.equal(isSameHost('http://localhost:3000', 'localhost'), false)
  })

  t.test('a different host fails, including look-alikes', async (t) => {
    t.equal(isSameHost('http://evil.test', 'localhost'), false)
    t.equal(isSameHost('http://localhost.evil.test', 'localhost'), false)
    t.equal(isSameHost('http://evil-localhost', 'localhost'), false)
    t.equal(isSameHost('http://example.com.', 'example.com'), false)
  })

  t.test('null and scheme-less origins fail', async (t) => {
    t.equal(isSameHost('null', 'localhost'), false)
    t.equal(isSameHost('localhost', 'localhost'), false)
    t.equal(isSameHost('localhost:3000', 'localhost:3000'), false)
    t.equal(isSameHost('//localhost', 'localhost'), false)
    t.equal(isSameHost('://localhost', 'localhost'), false)
    t.equal(isSameHost('', 'localhost'), false)
  })

  t.test('an origin with credentials or no host fails', async (t) => {
    t.equal(isSameHost('http://user@localhost', 'localhost'), false)
    t.equal(isSameHost('http://localhost@evil.test', 'localhost@evil.test'), false)
    t.equal(isSameHost('http://', ''), false)
    t.equal(isSameHost('http:///', ''), false)
  })

  t.test('a path after the host is ignored', async (t) => {
    t.equal(isSameHost('http://localhost:3000/some/page', 'localhost:3000'), true)
    t.equal(isSameHost('http://evil.test/localhost:3000', 'localhost:3000'), false)
  })

  t.test('no Host header fails', async (t) => {
    t.equal(isSameHost('http://localhost', undefined), false)
  })
})

t.test('compileOriginCheck', async (t) => {
  const request = { id: 'req-1' }

  t.test('default: the same-host rule', async (t) => {
    const check = compileOriginCheck(undefined)
    t.equal(await check('http://localhost:3000', 'localhost:3000', request), true)
    t.equal(await check('http://LOCALHOST:3000', 'localhost:3000', request), true)
    t.equal(await check('http://localhost:3001', 'localhost:3000', request), false)
    t.equal(await check('null', 'localhost:3000', request), false)
    t.equal(await check('localhost:3000', 'localhost:3000', request), false)
  })

  t.test('true allows every origin', async (t) => {
    const check = compileOriginCheck(true)
    t.equal(await check('http://evil.test', 'localhost', request), true)
    t.equal(await check('null', 'localhost', request), true)
  })

  t.test('an array of strings: exact origins, case-insensitively', async (t) => {
    const check = compileOriginCheck(['https://app.example.com', 'HTTP://Admin.Example.com:8080'])
    t.equal(await check('https://app.example.com', 'localhost', request), true)
    t.equal(await check('HTTPS://APP.EXAMPLE.COM', 'localhost', request), true)
    t.equal(await check('http://admin.example.com:8080', 'localhost', request), true)
    t.equal(await check('http://app.example.com', 'localhost', request), false, 'another scheme')
    t.equal(await check('https://app.example.com:8443', 'localhost', request), false, 'another port')
    t.equal(await check('https://example.com', 'localhost', request), false)
    t.equal(await check('http://localhost', 'localhost', request), false, 'a list replaces the same-host rule')
  })

  t.test('an array of RegExps', async (t) => {
    const check = compileOriginCheck([/^https:\/\/[a-z]+\.example\.com$/])
    t.equal(await check('https://app.example.com', 'localhost', request), true)
    t.equal(await check('https://app.example.com.evil.test', 'localhost', request), false)
    t.equal(await check('http://app.example.com', 'localhost', request), false)
  })

  t.test('strings and RegExps mixed', async (t) => {
    const check = compileOriginCheck(['http://one.test', /^http:\/\/two\.test(:\d+)?$/])
    t.equal(await check('http://one.test', 'localhost', request), true)
    t.equal(await check('http://two.test:81', 'localhost', request), true)
    t.equal(await check('http://three.test', 'localhost', request), false)
  })

  t.test('a RegExp with the g or y flag gives the same answer every time', async (t) => {
    // RegExp#test advances lastIndex on global and sticky patterns
    for (const pattern of [/^https:\/\/app\.example\.com$/g, /^https:\/\/app\.example\.com$/y]) {
      const check = compileOriginCheck([pattern])
      const answers = []
      for (let i = 0; i < 4; i++) answers.push(await check('https://app.example.com', 'localhost', request))
      t.same(answers, [true, true, true, true], pattern.flags)
    }
  })

  t.test('an empty array allows no origin', async (t) => {
    const check = compileOriginCheck([])
    t.equal(await check('http://localhost', 'localhost', request), false)
  })

  t.test('a sync function receives the origin and the request', async (t) => {
    const calls: unknown[][] = []
    const check = compileOriginCheck((origin, req) => {
      calls.push([origin, req])
      return origin === 'http://ok.test'
    })
    t.equal(await check('http://ok.test', 'localhost', request), true)
    t.equal(await check('http://no.test', 'localhost', request), false)
    t.same(calls, [['http://ok.test', request], ['http://no.test', request]])
  })

  t.test('an async function', async (t) => {
    const check = compileOriginCheck(async (origin) => origin.endsWith('.ok.test'))
    t.equal(await check('http://a.ok.test', 'localhost', request), true)
    t.equal(await check('http://a.no.test', 'localhost', request), false)
  })
})

t.test('parseSubprotocols', async (t) => {
  t.same(parseSubprotocols(undefined), [], 'no header: none offered')
  t.same(parseSubprotocols('chat'), ['chat'])
  t.same(parseSubprotocols('v1, v2,v3'), ['v1', 'v2', 'v3'], 'the client\'s order')
  t.same(parseSubprotocols('  v1  ,  v2  '), ['v1', 'v2'], 'whitespace around items')
  t.same(parseSubprotocols('graphql-transport-ws, mqtt.v5, a+b'), ['graphql-transport-ws', 'mqtt.v5', 'a+b'], 'token characters')
  t.same(parseSubprotocols('V1, v1'), ['V1', 'v1'], 'case-sensitive')

  const malformed = ['', ' ', ',', 'v1,', ',v1', 'v1,,v2', 'v1 v2', 'v1;q=1', '"v1"', 'v1, v1', 'chat/1', 'ü', 'v1,\tv2 v3']
  for (const header of malformed) t.equal(parseSubprotocols(header), null, JSON.stringify(header))
})

t.test('preferredSubprotocol', async (t) => {
  t.equal(preferredSubprotocol(['v2', 'v1'], ['v1', 'v2']), 'v2', 'the server\'s preference wins')
  t.equal(preferredSubprotocol(['v2', 'v1'], ['v1', 'v0']), 'v1')
  t.equal(preferredSubprotocol(['v2', 'v1'], ['v3']), undefined)
  t.equal(preferredSubprotocol(['v2', 'v1'], []), undefined)
  t.equal(preferredSubprotocol(['V1'], ['v1']), undefined, 'case-sensitive')
})
