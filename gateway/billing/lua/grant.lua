-- Add (or, with a negative amount, take back) credits, never taking the balance below zero; once per grant id.
-- Called through billing.scripts.GrantCall / GrantOutcome, which build and read these lists:
-- KEYS: 1 account hash, 2 grant log stream, 3 applied grant ids (sorted set, scored by ms), 4 alerts hash,
--       5 outbox stream
-- ARGV: 1 amount (micros, may be negative), 2 now (ms), 3 note, 4 grant id, 5 grant-ids cutoff (ms; older ids
--       are forgotten), 6 account id, 7 billing period (YYYYMM)
-- Reply {code, balance_after, alerts}: 1 done (or done before under this grant id), -1 no such account,
--   -2 would go below zero, -3 would pass 2^53 micro-credits; alerts: webhook events appended (a top-up re-arms
--   credits.low and credits.exhausted; taking credits back may fire credits.low)
local amount = tonumber(ARGV[1])
if amount == nil or amount % 1 ~= 0 or math.abs(amount) >= 9007199254740992 or amount == 0 then
  error('invalid amount: ' .. tostring(ARGV[1]))
end
local now = whole(ARGV[2], 'now')
whole(ARGV[5], 'grant-ids cutoff')
whole(ARGV[7], 'period')
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0, 0}
end
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance'))
if redis.call('ZSCORE', KEYS[3], ARGV[4]) then
  return {1, balance, 0}
end
if balance + amount < 0 then
  return {-2, balance, 0}
end
if balance + amount >= 9007199254740992 then
  return {-3, balance, 0}
end
local after = redis.call('HINCRBY', KEYS[1], 'balance', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'granted', ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[5])
redis.call('ZADD', KEYS[3], now, ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*',
  'amount_micros', ARGV[1], 'balance_after', after, 'time_ms', ARGV[2], 'note', ARGV[3], 'grant_id', ARGV[4])
local alerts = 0
if redis.call('EXISTS', KEYS[4]) == 1 then
  local held = tonumber(redis.call('HGET', KEYS[1], 'held')) or 0
  local ctx = {account = ARGV[6], request = ARGV[4], now = now, period = ARGV[7],
    used = period_used(KEYS[1], ARGV[7]), total = after + held, low = amount < 0, rearm = amount > 0}
  alerts = alerts_check(KEYS[4], KEYS[5], ctx)
end
return {1, after, alerts}
