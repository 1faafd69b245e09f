-- The hold record: one string per request in the account's holds hash, "amount_micros:deadline_ms:api_key_id".
-- Prepended to every money script; only these two functions build and read it (Python: billing.scripts.Hold).
local function hold_encode(amount, deadline, api_key_id)
  return amount .. ':' .. deadline .. ':' .. api_key_id
end

-- Returns amount (number), deadline (number), api key id (string).
local function hold_decode(text)
  local first = string.find(text, ':', 1, true)
  local second = string.find(text, ':', first + 1, true)
  return tonumber(string.sub(text, 1, first - 1)), tonumber(string.sub(text, first + 1, second - 1)),
    string.sub(text, second + 1)
end
