-- Settle one request: charge its real cost against its hold, release the rest, and write the usage
-- aggregates and the request record, all in one atomic step.
-- Called through billing.scripts.SettleCall / SettleOutcome, which build and read these lists:
-- KEYS: 1 account, 2 holds, 3 usage day hash, 4 usage hour hash, 5 key last-used hash, 6 request log stream
-- ARGV: 1 request id, 2 cost (micros), 3 prompt tokens, 4 completion tokens, 5 model, 6 now (ms),
--       7 hour hash ttl (s), 8 request log max length, 9 failed (1 when the request ended in an error),
--       10 request log retention cutoff (ms; records older may be trimmed; 0: none),
--       11.. extra request-record fields as name, value pairs
-- Reply {settled, balance_after, charged}: settled 0 means there was no hold (already settled): no-op.
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'balance')) or 0, 0}
end
redis.call('HDEL', KEYS[2], ARGV[1])
local hold, _, api_key_id = hold_decode(held)

-- The hold was taken out of the balance; a cost above it may use the rest of the balance, never more.
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance')) or 0
local charge = tonumber(ARGV[2])
if charge > balance + hold then
  charge = balance + hold
end
local after = redis.call('HINCRBY', KEYS[1], 'balance', hold - charge)

local prompt, completion = ARGV[3], ARGV[4]
for _, prefix in ipairs({'', 'm:' .. ARGV[5] .. ':', 'k:' .. api_key_id .. ':'}) do
  redis.call('HINCRBY', KEYS[3], prefix .. 'requests', 1)
  redis.call('HINCRBY', KEYS[3], prefix .. 'prompt_tokens', prompt)
  redis.call('HINCRBY', KEYS[3], prefix .. 'completion_tokens', completion)
  redis.call('HINCRBY', KEYS[3], prefix .. 'credits', charge)
  if ARGV[9] == '1' then
    redis.call('HINCRBY', KEYS[3], prefix .. 'errors', 1)
  end
end
redis.call('HINCRBY', KEYS[4], 'requests', 1)
redis.call('HINCRBY', KEYS[4], 'prompt_tokens', prompt)
redis.call('HINCRBY', KEYS[4], 'completion_tokens', completion)
redis.call('HINCRBY', KEYS[4], 'credits', charge)
redis.call('EXPIRE', KEYS[4], ARGV[7])
redis.call('HSET', KEYS[5], api_key_id, ARGV[6])

-- Record ids carry the settlement time, so exports can range over time; kept strictly increasing
-- even if gateway clocks disagree (Redis 6.2 has no "<ms>-*" ids).
local now = tonumber(ARGV[6])
local id = ARGV[6] .. '-0'
local last = redis.call('XREVRANGE', KEYS[6], '+', '-', 'COUNT', 1)[1]
if last then
  local dash = string.find(last[1], '-', 1, true)
  local last_ms = tonumber(string.sub(last[1], 1, dash - 1))
  if last_ms >= now then
    id = string.sub(last[1], 1, dash - 1) .. '-' .. (tonumber(string.sub(last[1], dash + 1)) + 1)
  end
end
local record = {'XADD', KEYS[6], 'MAXLEN', '~', ARGV[8], id,
  'request_id', ARGV[1], 'key_id', api_key_id, 'model', ARGV[5], 'prompt_tokens', prompt,
  'completion_tokens', completion, 'credits_micros', charge, 'cost_micros', ARGV[2]}
for i = 11, #ARGV do
  record[#record + 1] = ARGV[i]
end
redis.call(unpack(record))
-- Age retention, approximate (whole stream nodes) so it stays cheap; the export hides what is left over.
if ARGV[10] ~= '0' then
  redis.call('XTRIM', KEYS[6], 'MINID', '~', ARGV[10])
end
return {1, after, charge}
