-- One page of request records for the usage export: only the wanted fields, as one flat array of
-- 1 + #wanted values per record (the entry id, then the fields in ARGV order, '' when absent). Read-only.
-- Called through usage.export.read_pages, whose ProjectedRecord names the fields:
-- KEYS: 1 request log stream
-- ARGV: 1 first id (inclusive; "(id" for exclusive), 2 last id (inclusive), 3 most records, 4.. field names
local wanted = {}
for i = 4, #ARGV do
  wanted[#wanted + 1] = ARGV[i]
end
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
