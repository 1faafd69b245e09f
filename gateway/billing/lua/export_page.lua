-- One page of request records for the usage export: only the exported fields, as one flat array of
-- WIDTH values per record (id, then the fields below, '' when absent). Read-only.
-- KEYS: 1 request log stream
-- ARGV: 1 first id (inclusive; "(id" for exclusive), 2 last id (inclusive), 3 most records
local wanted = {'request_id', 'key_id', 'model', 'prompt_tokens', 'completion_tokens', 'credits_micros', 'status',
  'latency_ms'}
local out = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])) do
  local fields, values = entry[2], {}
  for i = 1, #fields, 2 do
    values[fields[i]] = fields[i + 1]
  end
  out[#out + 1] = entry[1]
  for _, name in ipairs(wanted) do
    out[#out + 1] = values[name] or ''
  end
end
return out
