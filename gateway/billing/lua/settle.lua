-- Settle one request, once: charge its real cost against its hold and release the rest, writing the usage
-- aggregates and the request record; or, in release mode, return the hold and write nothing else.
-- Called through billing.scripts.SettleCall / SettleOutcome, which build and read these lists:
-- KEYS: 1 account, 2 holds, 3 usage day hash, 4 usage hour hash, 5 key last-used hash, 6 request log stream,
--       7 settled request ids (sorted set, scored by settlement ms), 8 alerts hash, 9 outbox stream
-- ARGV: 1 request id, 2 cost (micros), 3 prompt tokens, 4 completion tokens, 5 model, 6 now (ms),
--       7 hour hash ttl (s), 8 request log max length, 9 failed (1 when the request ended in an error),
--       10 request log retention cutoff (ms; records older may be trimmed; 0: none),
--       11 mode ("charge" or "release"), 12 settled-ids cutoff (ms; ids settled before it are forgotten),
--       13 billing period (YYYYMM of now), 14 account id, 15 API (billing.record.API_NAMES),
--       16.. extra request-record fields as name, value pairs
-- With insights (a fingerprinted charge: billing.scripts.SettleCall.counts_insights; see insights.lua), KEYS
--   10-13 are the day's insights hash, the fingerprint's state, the conversation's state and its previous turn's
--   state, and ARGV 16-20 are the rules: duplicate window (ms), retry window (ms), retry loop min, examples kept,
--   conversation idle time (ms); the record fields then start at ARGV 21.
-- Aggregates are kept per API: the day hash's `a:<api>:<stat>`, `a:<api>:m:<model>:<stat>` and
-- `a:<api>:k:<key id>:<stat>`, the hour hash's `a:<api>:<stat>` (usage.reader sums them).
-- Reply {settled, balance_after, charged, alerts}: alerts is how many webhook events were appended.
-- settled 0 means there was no hold (settled already, or never held):
-- nothing moved. The id of a request without a hold, or released, is remembered, so that a reserve that runs
-- late (it timed out in the gateway) holds nothing.
local cost = whole(ARGV[2], 'cost')
local prompt = whole(ARGV[3], 'prompt tokens')
local completion = whole(ARGV[4], 'completion tokens')
local now = whole(ARGV[6], 'now')
whole(ARGV[7], 'hour ttl')
whole(ARGV[8], 'request log length')
whole(ARGV[10], 'retention cutoff')
whole(ARGV[12], 'settled-ids cutoff')
whole(ARGV[13], 'period')
local mode = ARGV[11]
local first_field, rules, fields = 16, nil, nil
if #KEYS > 9 then
  rules = insight_rules()
  first_field = 21
  fields = insight_fields(first_field)
end
if (mode ~= 'charge' and mode ~= 'release') or (ARGV[9] ~= '0' and ARGV[9] ~= '1')
    or (#ARGV - first_field + 1) % 2 ~= 0 or not string.match(ARGV[15], '^[a-z][a-z.]*$') then
  error('invalid settle arguments')
end

-- Remembered ids matter only where a reserve may still run after its settlement: a request released because
-- its reserve timed out. A charged request's reserve had answered before it was settled.
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held or mode == 'release' then
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. ARGV[12])
  redis.call('ZADD', KEYS[7], 'NX', now, ARGV[1])
end
if not held then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'balance')) or 0, 0, 0}
end
redis.call('HDEL', KEYS[2], ARGV[1])
local hold, _, api_key_id = hold_decode(held)
-- What is held for requests in flight, kept beside the balance (balance + held: what the account really has).
local held_after = redis.call('HINCRBY', KEYS[1], 'held', 0 - hold)
if held_after < 0 then  -- holds taken before this field existed
  redis.call('HSET', KEYS[1], 'held', 0)
  held_after = 0
end
if mode == 'release' then
  return {1, redis.call('HINCRBY', KEYS[1], 'balance', hold), 0, 0}
end

-- The hold was taken out of the balance; a cost above it may use the rest of the balance, never more.
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance')) or 0
local charge = cost
if charge > balance + hold then
  charge = balance + hold
end
local after = redis.call('HINCRBY', KEYS[1], 'balance', hold - charge)

local api = 'a:' .. ARGV[15] .. ':'
for _, prefix in ipairs({api, api .. 'm:' .. ARGV[5] .. ':', api .. 'k:' .. api_key_id .. ':'}) do
  redis.call('HINCRBY', KEYS[3], prefix .. 'requests', 1)
  redis.call('HINCRBY', KEYS[3], prefix .. 'prompt_tokens', prompt)
  redis.call('HINCRBY', KEYS[3], prefix .. 'completion_tokens', completion)
  redis.call('HINCRBY', KEYS[3], prefix .. 'credits', charge)
  if ARGV[9] == '1' then
    redis.call('HINCRBY', KEYS[3], prefix .. 'errors', 1)
  end
end
redis.call('HINCRBY', KEYS[4], api .. 'requests', 1)
redis.call('HINCRBY', KEYS[4], api .. 'prompt_tokens', prompt)
redis.call('HINCRBY', KEYS[4], api .. 'completion_tokens', completion)
redis.call('HINCRBY', KEYS[4], api .. 'credits', charge)
redis.call('EXPIRE', KEYS[4], ARGV[7])
redis.call('HSET', KEYS[5], api_key_id, ARGV[6])

-- Record ids carry the settlement time, so exports can range over time; kept strictly increasing
-- even if gateway clocks disagree (Redis 6.2 has no "<ms>-*" ids).
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
  'request_id', ARGV[1], 'key_id', api_key_id, 'model', ARGV[5], 'api', ARGV[15], 'prompt_tokens', ARGV[3],
  'completion_tokens', ARGV[4], 'credits_micros', charge, 'cost_micros', ARGV[2]}
for i = first_field, #ARGV do
  record[#record + 1] = ARGV[i]
end
redis.call(unpack(record))
-- Age retention, approximate (whole stream nodes) so it stays cheap; the export hides what is left over.
if ARGV[10] ~= '0' then
  redis.call('XTRIM', KEYS[6], 'MINID', '~', ARGV[10])
end

local used = period_add(KEYS[1], ARGV[13], charge)
local alerts = 0
if used and redis.call('EXISTS', KEYS[8]) == 1 then
  local ctx = {account = ARGV[14], request = ARGV[1], now = now, period = ARGV[13], used = used,
    total = after + held_after, usage = true, low = true}
  alerts = alerts_check(KEYS[8], KEYS[9], ctx)
end
if rules then
  insights_count({rules = rules, fields = fields, now = now, charge = charge, request = ARGV[1], model = ARGV[5],
    prompt = prompt, status = fields.status or 0, scopes = {api, api .. 'k:' .. api_key_id .. ':'}})
end
return {1, after, charge, alerts}
