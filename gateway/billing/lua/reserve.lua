-- Authenticate an API key and hold credits for one request, atomically.
-- Called through billing.scripts.ReserveCall / ReserveOutcome, which build and read these lists:
-- KEYS: 1 account hash, 2 live API keys hash, 3 holds hash (all in one {acct:ID} slot)
-- ARGV: 1 sha256(API key), 2 request id, 3 hold (micros), 4 least acceptable hold (micros), 5 deadline (ms)
-- Reply {code, api_key_id, balance_micros}:
--    1  held ARGV[3]; balance is what stays available
--    0  balance covers ARGV[4] but not ARGV[3]: nothing held, the caller may ask for less
--   -1  unknown or revoked key (or account gone)
--   -2  balance below ARGV[4]: insufficient credits
local api_key_id = redis.call('HGET', KEYS[2], ARGV[1])
if not api_key_id then
  return {-1, '', 0}
end
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance'))
if not balance then
  return {-1, '', 0}
end
local hold = tonumber(ARGV[3])
if balance < hold then
  if balance >= tonumber(ARGV[4]) then
    return {0, api_key_id, balance}
  end
  return {-2, api_key_id, balance}
end
local after = redis.call('HINCRBY', KEYS[1], 'balance', '-' .. ARGV[3])
-- The deadline lets a sweeper return holds of a gateway that died before settling.
redis.call('HSET', KEYS[3], ARGV[2], hold_encode(ARGV[3], ARGV[5], api_key_id))
return {1, api_key_id, after}
