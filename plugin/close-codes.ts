/**
 * The close codes of RFC 6455 section 7.4.1, by name.
 * @example socket.close(CloseCode.PolicyViolation, 'quota exceeded')
 */
export const CloseCode = Object.freeze({
  Normal: 1000,
  GoingAway: 1001,
  ProtocolError: 1002,
  UnsupportedData: 1003,
  NoStatus: 1005,
  Abnormal: 1006,
  InvalidPayload: 1007,
  PolicyViolation: 1008,
  MessageTooBig: 1009,
  MandatoryExtension: 1010,
  InternalError: 1011,
  ServiceRestart: 1012,
  TryAgainLater: 1013,
  BadGateway: 1014
} as const)

// A close frame's payload is at most 125 bytes, two of which hold the code.
export const MAX_REASON_BYTES = 123

/** Cuts `reason` to at most 123 UTF-8 bytes without splitting a character. */
export function truncateReason (reason: string): string {
  // Fast path: every UTF-16 unit takes at most 3 UTF-8 bytes.
  if (reason.length <= MAX_REASON_BYTES / 3) return reason
  const bytes = Buffer.from(reason, 'utf8')
  if (bytes.length <= MAX_REASON_BYTES) return reason
  let end = MAX_REASON_BYTES
  // Step back over continuation bytes (10xxxxxx) to the start of a character.
  while ((bytes[end] & 0xc0) === 0x80) end--
  return bytes.toString('utf8', 0, end)
}
