-- Usage insights (gateway/insights): the waste one settlement shows, counted by settle.lua in the request's first
-- settlement only, so a replayed settlement never counts twice. Prepended to settle.lua, after prelude.lua.
-- Only hashes and counts are kept, never text. The day's insights hash (KEYS[10], keyspace.insights_day) holds,
-- in each scope ('a:<api>:' for the account's requests on that API, 'a:<api>:k:<API key id>:' for the key's), '<type>:<stat>' counters and '<type>:x',
-- the day's first example request ids (space-separated, at most rules.examples). Types: dup, retry, unused, long,
-- mix, and per model 'mix:m:<model>' and 'cache:m:<model>'. Amounts are micro-credits.

-- The rules, ARGV 16-20, checked before any write.
local function insight_rules()
  return {duplicate = whole(ARGV[16], 'duplicate window'), retry = whole(ARGV[17], 'retry window'),
    retry_min = whole(ARGV[18], 'retry loop min'), examples = whole(ARGV[19], 'examples'),
    idle = whole(ARGV[20], 'conversation idle')}
end

-- The record fields from ARGV[first] on, by name; those read as numbers are checked before any write.
local function insight_fields(first)
  local fields = {}
  for i = first, #ARGV - 1, 2 do
    fields[ARGV[i]] = ARGV[i + 1]
  end
  for _, name in ipairs({'status', 'cached_tokens', 'history_tokens', 'history_micros', 'alt_micros'}) do
    if fields[name] then
      fields[name] = whole(fields[name], name)
    end
  end
  return fields
end

-- Add the (stat, amount) pairs of `counts` ('requests' first) to `kind` in every scope, and `ids` (oldest first)
-- to its examples while the day has fewer requests of the kind than examples kept: once full, no more reads.
local function insight_add(ctx, kind, counts, ids)
  for _, scope in ipairs(ctx.scopes) do
    local prefix = scope .. kind .. ':'
    local before = redis.call('HINCRBY', KEYS[10], prefix .. counts[1], counts[2]) - counts[2]
    for i = 3, #counts, 2 do
      if counts[i + 1] ~= 0 then
        redis.call('HINCRBY', KEYS[10], prefix .. counts[i], counts[i + 1])
      end
    end
    if ids and before < ctx.rules.examples then
      local old = redis.call('HGET', KEYS[10], prefix .. 'x')
      local kept = {}
      if old then
        for id in string.gmatch(old, '%S+') do
          kept[#kept + 1] = id
        end
      end
      for _, id in ipairs(ids) do
        kept[#kept + 1] = id
      end
      redis.call('HSET', KEYS[10], prefix .. 'x', table.concat(kept, ' ', 1, math.min(#kept, ctx.rules.examples)))
    end
  end
end

-- An answer worth retrying: the upstream failed or limited the rate, or the balance was short (reserve.lua).
local function retryable(status)
  return status >= 500 or status == 429 or status == 402
end

-- Duplicates and retry loops, from the fingerprint's state (KEYS[11]): t when last seen (ms), s how it ended,
-- ok the last successful answer (ms), w the start of the retry window, n the settled sightings in it, l '1'
-- while a loop is open, and the window's sightings not yet counted as anything: pn of them, pc their credits,
-- p0 the first one's credits and pf its id (a loop that opens takes them in; its first request is no saving).
-- A sighting is in at most one of a loop and the duplicates.
local function insight_repeats(ctx)
  local rules, now, charge, id = ctx.rules, ctx.now, ctx.charge, ctx.request
  local v = redis.call('HMGET', KEYS[11], 't', 's', 'ok', 'w', 'n', 'l', 'pn', 'pc', 'p0', 'pf')
  local t, ok = tonumber(v[1]), tonumber(v[3])
  local recent = t ~= nil and now - t <= rules.retry
  local looping = recent and v[6] == '1'
  local w, n = tonumber(v[4]), tonumber(v[5]) or 0
  local pn, pc, p0, pf = tonumber(v[7]) or 0, tonumber(v[8]) or 0, tonumber(v[9]) or 0, v[10]
  if pf == '' then
    pf = false
  end
  if not looping and (w == nil or now - w > rules.retry) then
    w, n, pn, pc, p0, pf = now, 0, 0, 0, 0, false
  end
  n = n + 1
  if looping then
    insight_add(ctx, 'retry', {'requests', 1, 'credits', charge, 'savings', charge}, {id})
  elseif n >= rules.retry_min or (recent and retryable(tonumber(v[2]) or 0)) then
    looping = true
    insight_add(ctx, 'retry', {'requests', pn + 1, 'loops', 1, 'credits', pc + charge, 'savings', pc - p0 + charge},
      pf and {pf, id} or {id})
    pn, pc, p0, pf = 0, 0, 0, false
  elseif ok ~= nil and now - ok <= rules.duplicate then
    insight_add(ctx, 'dup', {'requests', 1, 'credits', charge, 'savings', charge}, {id})
  else
    if pn == 0 then
      p0, pf = charge, id
    end
    pn, pc = pn + 1, pc + charge
  end
  if ctx.status >= 200 and ctx.status < 300 then
    ok = now
  end
  redis.call('HSET', KEYS[11], 't', now, 's', ctx.status, 'ok', ok or '', 'w', w, 'n', n, 'l', looping and '1' or '0',
    'pn', pn, 'pc', pc, 'p0', p0, 'pf', pf or '')
  redis.call('PEXPIRE', KEYS[11], math.max(rules.duplicate, rules.retry))
end

-- A request of a long conversation (the gateway marked it with the history it resent): a new conversation
-- unless its previous turn was one too (KEYS[13]); its own history is marked for its next turn (KEYS[12]).
local function insight_long(ctx)
  local fields = ctx.fields
  local new = 1
  if (fields.conv_prev or '') ~= '' and redis.call('EXISTS', KEYS[13]) == 1 then
    new = 0
  end
  local saving = math.min(fields.history_micros or 0, ctx.charge)
  insight_add(ctx, 'long', {'requests', 1, 'conversations', new, 'credits', ctx.charge,
    'history_tokens', fields.history_tokens, 'savings', saving}, {ctx.request})
  if (fields.conv_hash or '') ~= '' then
    redis.call('SET', KEYS[12], '1', 'PX', ctx.rules.idle)
  end
end

-- Everything this settlement shows. ctx: rules, fields (insight_fields), now, charge, request, model, prompt,
-- status, scopes.
local function insights_count(ctx)
  local fields, charge = ctx.fields, ctx.charge
  insight_repeats(ctx)
  if ctx.status == 499 then  -- the client left before the answer's end: nobody read what it paid for
    insight_add(ctx, 'unused', {'requests', 1, 'credits', charge, 'savings', charge}, {ctx.request})
  end
  if fields.history_tokens then
    insight_long(ctx)
  end
  if fields.alt_micros and fields.alt_model then
    local alternative = fields.alt_micros
    local counts = {'requests', 1, 'credits', charge, 'alternative', alternative,
      'savings', math.max(charge - alternative, 0)}
    insight_add(ctx, 'mix', counts, {ctx.request})
    insight_add(ctx, 'mix:m:' .. ctx.model, counts)
  end
  if fields.usage_source == 'upstream' then  -- the upstream says how much of the prompt its cache served
    insight_add(ctx, 'cache:m:' .. ctx.model,
      {'requests', 1, 'prompt_tokens', ctx.prompt, 'cached_tokens', fields.cached_tokens or 0})
  end
end
