-- wrk script: POST one chat completion per request and print the latency distribution as JSON.
--
--   wrk -t1 -c64 -d10s -s benchmarks/chat.lua http://127.0.0.1:8080/v1/chat/completions -- plain|stream [KEY]
--
-- "stream" asks for SSE with stream_options.include_usage, as metered clients do. done() prints one line,
-- "BENCH_JSON {...}", that benchmarks/wrk.py reads: counts, errors and latency percentiles in microseconds.

local PLAIN = '{"model":"mock-model","messages":[{"role":"user","content":"Hello!"}]}'
local STREAM = '{"model":"mock-model","messages":[{"role":"user","content":"Hello!"}],'
    .. '"stream":true,"stream_options":{"include_usage":true}}'

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[2] ~= nil and args[2] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
  if args[1] == "stream" then
    wrk.body = STREAM
  else
    wrk.body = PLAIN
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"bytes":%d', summary.bytes),
    string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
      e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"latency_us":{"p50":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f,"max":%.1f,"mean":%.1f}',
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean),
  }
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
