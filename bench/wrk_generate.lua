-- wrk script for POST /generate: one JSON body per request, the seed counting up so no two
-- requests of a run are alike, and a machine-readable summary on stdout at the end.
-- Configured by environment: BENCH_MODEL, BENCH_LABEL, BENCH_N, BENCH_PATH, BENCH_SEED0.
local model = os.getenv("BENCH_MODEL") or "cdcgan-mnist"
-- An empty BENCH_LABEL sends no label: an unconditional model refuses one.
local label = tonumber(os.getenv("BENCH_LABEL") or "3")
local label_field = label and string.format('"label":%d,', label) or ""
local n = tonumber(os.getenv("BENCH_N") or "1")
local path = os.getenv("BENCH_PATH") or "/generate"
local seed = tonumber(os.getenv("BENCH_SEED0") or "1")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "image/png"

function request()
  seed = seed + 1
  local body = string.format('{"model":"%s",%s"seed":%d,"n":%d}', model, label_field, seed, n)
  return wrk.format("POST", path, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write("BENCH_JSON ")
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"p50":%d,"p90":%d,"p95":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency:percentile(99.9)))
end
