-- Add (or, with a negative amount, take back) credits, never taking the balance below zero.
-- Called through billing.scripts.GrantCall / GrantOutcome, which build and read these lists:
-- KEYS: 1 account hash, 2 grant log stream
-- ARGV: 1 amount (micros, may be negative), 2 now (ms), 3 note
-- Reply {code, balance_after}: 1 done, -1 no such account, -2 would go below zero
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0}
end
local balance = tonumber(redis.call('HGET', KEYS[1], 'balance'))
if balance + tonumber(ARGV[1]) < 0 then
  return {-2, balance}
end
local after = redis.call('HINCRBY', KEYS[1], 'balance', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'granted', ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*',
  'amount_micros', ARGV[1], 'balance_after', after, 'time_ms', ARGV[2], 'note', ARGV[3])
return {1, after}
