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
