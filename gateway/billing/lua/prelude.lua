-- Prepended to every money script (billing.scripts.money_script): checks and the hold record, written once.

-- A whole number in [0, 2^53) or an error raised before the script's first write: Lua numbers are doubles,
-- and Redis does not roll back a script that fails halfway.
local function whole(text, name)
  local n = tonumber(text)
  if n == nil or n < 0 or n >= 9007199254740992 or n % 1 ~= 0 then
    error('invalid ' .. name .. ': ' .. tostring(text))
  end
  return n
end

-- The hold record: one string per request in the account's holds hash,
-- "amount_micros:deadline_ms:api_key_id:model" (API key ids have no ':'; model names may).
-- Only these two functions build and read it (Python: billing.scripts.Hold).
local function hold_encode(amount, deadline, api_key_id, model)
  return amount .. ':' .. deadline .. ':' .. api_key_id .. ':' .. model
end

-- Returns amount (number), deadline (number), API key id, model.
local function hold_decode(text)
  local first = string.find(text, ':', 1, true)
  local second = string.find(text, ':', first + 1, true)
  local third = string.find(text, ':', second + 1, true)
  return tonumber(string.sub(text, 1, first - 1)), tonumber(string.sub(text, first + 1, second - 1)),
    string.sub(text, second + 1, third - 1), string.sub(text, third + 1)
end

-- This period's charges, kept on the account hash for usage alerts; the period rolls over with the first
-- settlement in a new one. nil for a settlement of an earlier period (a late replay): it changes no alert.
local function period_add(account_key, period, amount)
  local current = redis.call('HGET', account_key, 'period')
  if current == period then
    return redis.call('HINCRBY', account_key, 'period_used', amount)
  end
  if current and current > period then
    return nil
  end
  redis.call('HSET', account_key, 'period', period, 'period_used', amount)
  return amount
end

-- This period's charges so far, for an event outside a settlement (0 if the period has not begun here).
local function period_used(account_key, period)
  if redis.call('HGET', account_key, 'period') ~= period then
    return 0
  end
  return tonumber(redis.call('HGET', account_key, 'period_used')) or 0
end

-- used >= percent% of budget, exactly: with budget = 100 * whole + rest, every product stays far below 2^53
-- wherever the two sides are close (doubles would round 100 * used once used passes 2^53 / 100).
local function crossed(used, budget, percent)
  if budget <= 0 then
    return false
  end
  local rest = budget % 100
  local whole = (budget - rest) / 100
  return 100 * (used - percent * whole) >= percent * rest
end

-- Webhook alerts. The alerts hash (gateway/webhooks/store.py) holds each subscription's thresholds,
-- `u:<sub>` percent, `l:<sub>` micros, `x:<sub>`, and their fired markers `uf:`, `lf:`, `xf:`; an event for
-- each crossing goes to the account's outbox stream in the same atomic step as the money that crossed it.
-- ctx: account, request, now (ms), period, used, total (balance + held), low (credits.low may fire),
-- rearm (a top-up: fired credits.low and credits.exhausted re-arm), exhausted (a request was refused).
local function alert_event(outbox, kind, sub, ctx, threshold)
  redis.call('XADD', outbox, 'MAXLEN', '~', 10000, '*',
    'id', 'evt_' .. redis.sha1hex(ctx.request .. ':' .. sub .. ':' .. kind), 'type', kind, 'sub', sub,
    'account', ctx.account, 'ms', ctx.now, 'period', ctx.period, 'used', ctx.used,
    'budget', ctx.total + ctx.used, 'remaining', ctx.total, 'threshold', threshold, 'request', ctx.request)
end

-- Returns how many events it appended.
local function alerts_check(alerts, outbox, ctx)
  local raw = redis.call('HGETALL', alerts)
  local values = {}
  for i = 1, #raw, 2 do
    values[raw[i]] = raw[i + 1]
  end
  local fired = 0
  for name, value in pairs(values) do
    local kind, sub = string.match(name, '^([ulx]):(.+)$')
    local mark = kind and (kind .. 'f:' .. sub)
    if kind == 'u' then
      if ctx.usage and values[mark] ~= ctx.period and crossed(ctx.used, ctx.total + ctx.used, tonumber(value)) then
        redis.call('HSET', alerts, mark, ctx.period)
        alert_event(outbox, 'usage.threshold', sub, ctx, value)
        fired = fired + 1
      end
    elseif kind == 'l' then
      if ctx.total < tonumber(value) then
        if ctx.low and not values[mark] then
          redis.call('HSET', alerts, mark, '1')
          alert_event(outbox, 'credits.low', sub, ctx, value)
          fired = fired + 1
        end
      elseif ctx.rearm and values[mark] then
        redis.call('HDEL', alerts, mark)
      end
    elseif kind == 'x' then
      if ctx.exhausted and not values[mark] then
        redis.call('HSET', alerts, mark, '1')
        alert_event(outbox, 'credits.exhausted', sub, ctx, 0)
        fired = fired + 1
      elseif ctx.rearm and values[mark] then
        redis.call('HDEL', alerts, mark)
      end
    end
  end
  return fired
end
