-- wrk script: POST the same body on every request and print the latency distribution as JSON.
--
--   wrk -t1 -c64 -d10s -H "Content-Type: application/json" -H "Authorization: Bearer KEY" \
--     -s benchmarks/request.lua http://127.0.0.1:8080/v1/chat/completions -- '{"model": ...}'
--
-- The body is the script's one argument and the headers are wrk's -H options: benchmarks/apis.py writes both,
-- per API and mode. done() prints one line, "BENCH_JSON {...}", that benchmarks/wrk.py reads: counts, errors
-- and latency percentiles in microseconds.

function init(args)
  wrk.method = "POST"
  wrk.body = args[1]
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
