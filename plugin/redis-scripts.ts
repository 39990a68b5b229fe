/*
 * The Redis side of offsets, epochs and history, in one place.
 *
 * Per (topic, key), with `base` the key's name (see `keyBase` in redis.ts):
 *   base + ':s'  hash  { offset, epoch }: the last offset given out, and a random
 *                      epoch chosen when the offset restarts from 1
 *   base + ':h'  stream of the last `history` entries, entry id `<offset>-1`,
 *                      one field `d` holding the message text
 *   base (channel)     every publish, as `<epoch>:<offset>:<text>`, or as
 *                      `<epoch>:<offset>:~<tag>:<text>` for a publish with a tag
 *                      (a JSON text never starts with `~`)
 *
 * Offset, history entry, expiry and PUBLISH happen in one script, so they are one
 * atomic step: one order per key, the same on every node. A node that sees the
 * epoch change knows the key's state was lost (Redis restarted empty, or the key
 * sat idle until it expired) and that its offsets started again.
 *
 * A Stream keeps the history because its ids are the offsets: `XRANGE base:h
 * (since+1)-1 + COUNT n` reads exactly what a reconnecting subscriber missed, and
 * `MAXLEN` bounds it on every write.
 */

/**
 * KEYS: state hash, history stream. ARGV: channel, hasHead ('1' | '0'), head,
 * body, history length, history TTL (ms), state TTL (ms), epoch for a new state,
 * tag ('' for none).
 * Returns { offset, epoch }.
 */
export const PUBLISH_SCRIPT = `
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if offset == 1 then
  -- A new state, or one a subscriber created (an epoch without offsets yet).
  if not epoch then
    epoch = ARGV[8]
    redis.call('HSET', KEYS[1], 'epoch', epoch)
  end
  redis.call('DEL', KEYS[2])
end
local data = ARGV[4]
if ARGV[2] == '1' then data = ARGV[3] .. offset .. ARGV[4] end
local history = tonumber(ARGV[5])
if history > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', history, offset .. '-1', 'd', data)
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if ARGV[9] == '' then
  redis.call('PUBLISH', ARGV[1], epoch .. ':' .. offset .. ':' .. data)
else
  redis.call('PUBLISH', ARGV[1], epoch .. ':' .. offset .. ':~' .. ARGV[9] .. ':' .. data)
end
return { offset, epoch }
`

/**
 * KEYS: state hash. ARGV: epoch for a new state, state TTL (ms). Returns
 * [offset, epoch]. A key nobody published to yet gets its epoch now, so that a
 * subscriber can tell, after Redis restarted empty, that the first messages it
 * was waiting for were lost with it.
 */
export const SUBSCRIBE_SCRIPT = `
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('HMGET', KEYS[1], 'offset', 'epoch')
`
