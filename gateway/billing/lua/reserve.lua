-- Authenticate an API key and hold credits for one request, atomically and idempotently by request id.
-- Called through billing.scripts.ReserveCall / ReserveOutcome, which build and read these lists:
-- KEYS: 1 account hash, 2 live API keys hash, 3 holds hash, 4 settled request ids, 5 alerts hash,
--       6 outbox stream (all in one {acct:ID} slot)
-- ARGV: 1 sha256(API key), 2 request id, 3 hold (micros), 4 least acceptable hold (micros), 5 deadline (ms),
--       6 model, 7 account id, 8 now (ms), 9 billing period (YYYYMM)
-- With a request fingerprint (billing.scripts.ReserveCall.request_hash), KEYS 7 is its insight state and
--   ARGV 10 that state's lifetime (ms): a refusal marks it (status 402, now), so a repeat is seen as a retry.
-- Reply {code, api_key_id, balance_micros, alerts}: alerts is how many webhook events were appended (a refusal
-- may fire credits.exhausted).
--    1  held ARGV[3] (or already held for this request id: nothing more is taken); balance is what is left
--    0  balance covers ARGV[4] but not ARGV[3]: nothing held, the caller may ask for less
--   -1  unknown or revoked key (or account gone)
--   -2  balance below ARGV[4]: insufficient credits
--   -3  this request id was settled or released already (a late or repeated call): nothing held
local hold = whole(ARGV[3], 'hold')
local least = whole(ARGV[4], 'least hold')
whole(ARGV[5], 'deadline')
local now = whole(ARGV[8], 'now')
whole(ARGV[9], 'period')
if KEYS[7] then
  whole(ARGV[10], 'request state lifetime')
end
local api_key_id = redis.call('HGET', KEYS[2], ARGV[1])
if not api_key_id then
  return {-1, '', 0, 0}
end
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance'))
if not balance then
  return {-1, '', 0, 0}
end
if redis.call('ZSCORE', KEYS[4], ARGV[2]) then
  return {-3, api_key_id, balance, 0}
end
if redis.call('HEXISTS', KEYS[3], ARGV[2]) == 1 then
  return {1, api_key_id, balance, 0}
end
if balance < hold then
  if balance >= least then
    return {0, api_key_id, balance, 0}
  end
  local alerts = 0
  if redis.call('EXISTS', KEYS[5]) == 1 then
    local held = tonumber(redis.call('HGET', KEYS[1], 'held')) or 0
    local ctx = {account = ARGV[7], request = ARGV[2], now = now, period = ARGV[9],
      used = period_used(KEYS[1], ARGV[9]), total = balance + held, exhausted = true}
    alerts = alerts_check(KEYS[5], KEYS[6], ctx)
  end
  if KEYS[7] then
    redis.call('HSET', KEYS[7], 't', now, 's', 402)
    redis.call('PEXPIRE', KEYS[7], ARGV[10])
  end
  return {-2, api_key_id, balance, alerts}
end
local after = redis.call('HINCRBY', KEYS[1], 'balance', 0 - hold)  -- never "-0", which is no integer to Redis
redis.call('HINCRBY', KEYS[1], 'held', hold)
-- The deadline lets the sweeper return holds of a gateway that died before settling.
redis.call('HSET', KEYS[3], ARGV[2], hold_encode(ARGV[3], ARGV[5], api_key_id, ARGV[6]))
return {1, api_key_id, after, 0}
