// plugin/close-codes.ts: the named close codes and the close-reason cut.
import t from 'tap'
import { CloseCode, CloseReason, MAX_REASON_BYTES, truncateReason } from '../plugin/close-codes'
import typedWebsocket, { CloseCode as ExportedCloseCode } from './helpers/plugin'
import { RFC_CLOSE_CODES } from './helpers/rfc6455'

t.test('CloseCode holds the numbers of RFC 6455 section 7.4.1 (and the IANA registry)', async (t) => {
  t.same(CloseCode, RFC_CLOSE_CODES)
  t.ok(Object.isFrozen(CloseCode), 'frozen')
  t.equal(ExportedCloseCode, CloseCode, 'the package exports the same object')
})

t.test('CloseReason: one table of the reasons, shared by the server and the client', async (t) => {
  t.ok(Object.isFrozen(CloseReason), 'frozen')
  t.equal(typedWebsocket.CloseReason, CloseReason, 'the package exports the same object')
  const reasons = Object.values(CloseReason)
  t.equal(new Set(reasons).size, reasons.length, 'no two names for one reason')
  for (const reason of reasons) t.equal(truncateReason(reason), reason, `"${reason}" fits a close frame`)
})

t.test('truncateReason', async (t) => {
  t.equal(MAX_REASON_BYTES, 123, '125-byte control payload minus the 2-byte code')

  t.test('leaves a short reason alone', async (t) => {
    for (const reason of ['', 'bye', 'é', '€'.repeat(41), '😀'.repeat(20)]) {
      t.equal(truncateReason(reason), reason, JSON.stringify(reason))
    }
  })

  t.test('ASCII: exactly 123 bytes is kept, longer is cut to 123', async (t) => {
    const exact = 'x'.repeat(123)
    t.equal(truncateReason(exact), exact)
    t.equal(truncateReason(exact + 'y'), exact)
    t.equal(truncateReason('z'.repeat(1000)), 'z'.repeat(123))
  })

  t.test('multi-byte reasons of exactly 123 bytes are kept', async (t) => {
    for (const reason of ['a' + 'é'.repeat(61), '€'.repeat(41), 'abc' + '😀'.repeat(30)]) {
      t.equal(Buffer.byteLength(reason), 123)
      t.equal(truncateReason(reason), reason, JSON.stringify(reason))
    }
  })

  // For each character width, every offset of the boundary inside a character:
  // the cut keeps the longest prefix of whole characters.
  const widths: Array<[string, number]> = [['é', 2], ['€', 3], ['😀', 4]]
  for (const [char, width] of widths) {
    t.test(`${width}-byte characters at the 123-byte boundary`, async (t) => {
      for (let pad = 0; pad < width; pad++) {
        const reason = 'a'.repeat(pad) + char.repeat(100)
        const whole = Math.floor((123 - pad) / width)
        const expected = 'a'.repeat(pad) + char.repeat(whole)
        const cut = truncateReason(reason)
        t.equal(cut, expected, `${pad} ASCII byte(s) first`)
        t.ok(Buffer.byteLength(cut) <= 123)
        t.ok(Buffer.byteLength(cut) > 123 - width, 'nothing more fits')
      }
    })
  }

  t.test('always a prefix of whole characters, valid UTF-8, at most 123 bytes', async (t) => {
    const alphabet = ['a', 'Z', ' ', 'é', 'ß', '€', '中', '😀', '𝄞']
    let seed = 42
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    }
    let failures = 0
    for (let i = 0; i < 500; i++) {
      let reason = ''
      const length = random(130)
      for (let j = 0; j < length; j++) reason += alphabet[random(alphabet.length)]
      const cut = truncateReason(reason)
      const bytes = Buffer.from(cut)
      const ok = reason.startsWith(cut) &&
        bytes.length <= 123 &&
        bytes.toString() === cut && // round-trips: no broken sequence or lone surrogate
        !/[\uD800-\uDBFF]$/.test(cut) &&
        (cut === reason || bytes.length + Buffer.byteLength(String.fromCodePoint(reason.codePointAt(cut.length) as number)) > 123)
      if (!ok) {
        failures++
        t.fail(`bad cut of ${JSON.stringify(reason)}: ${JSON.stringify(cut)}`)
      }
    }
    t.equal(failures, 0)
  })

  t.end()
})
