-- wrk script for `make bench` (Benchmarks/drive.py sets the environment):
--   BENCH_KIND    get | charge | replay   (charge: unique Idempotency-Key and description per request)
--   BENCH_PATH    request path, e.g. /stripe/v1/charges
--   BENCH_AUTH    value of the Authorization header (sent to every target so requests are the same size)
--   BENCH_AUTHS   optional, charges only: comma-separated Authorization values used in turn (children of one key)
--   BENCH_RUN_ID  X-Keybrake-Run-Id (recorded in Keybrake's audit rows; ignored by nginx)
--   BENCH_PREFIX  Idempotency-Key prefix (the fake upstream logs it: that is how charges are counted)
--   BENCH_RATE    optional: target requests/s for the whole run (paced, see delay() below)
--   BENCH_THREADS wrk's -t, so each thread paces its share of BENCH_RATE
--   BENCH_OUT     file for the JSON summary written by done()
local kind = os.getenv("BENCH_KIND") or "get"
local path = os.getenv("BENCH_PATH") or "/"
local auth = os.getenv("BENCH_AUTH")
local auths = {}
for a in string.gmatch(os.getenv("BENCH_AUTHS") or "", "[^,]+") do table.insert(auths, a) end
local run_id = os.getenv("BENCH_RUN_ID")
local prefix = os.getenv("BENCH_PREFIX") or "bench"
local rate = tonumber(os.getenv("BENCH_RATE") or "")
local out = os.getenv("BENCH_OUT")

local headers = {}
if auth and auth ~= "" then headers["Authorization"] = auth end
if run_id and run_id ~= "" then headers["X-Keybrake-Run-Id"] = run_id end

wrk.method = (kind == "get") and "GET" or "POST"
wrk.path = path
wrk.headers = headers

local threads = {}
function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

if kind == "charge" then
   -- Dynamic requests: each one a new charge (new Idempotency-Key, new description), so neither Keybrake's
   -- idempotency store nor its duplicate guard replays it.
   headers["Content-Type"] = "application/x-www-form-urlencoded"
   local n = 0
   function request()
      n = n + 1
      local key = prefix .. "-" .. tid .. "-" .. n
      headers["Idempotency-Key"] = key
      if #auths > 0 then headers["Authorization"] = auths[(n + tid) % #auths + 1] end
      return wrk.format("POST", path, headers, "amount=100&currency=usd&description=" .. key)
   end
elseif kind == "replay" then
   -- The same request every time: after the first, Keybrake answers from its idempotency store.
   headers["Content-Type"] = "application/x-www-form-urlencoded"
   headers["Idempotency-Key"] = prefix .. "-replay"
   wrk.body = "amount=100&currency=usd&description=" .. prefix .. "-replay"
end

if rate and rate > 0 then
   -- Fixed-rate pacing (wrk has no -R; wrk2 is not in Debian). Each thread owns rate/threads of the
   -- schedule; every delay() call (one per request, on whichever connection is free) claims the next slot
   -- and sleeps until it. A thread that falls behind does not burst to catch up more than 50 ms. Latency
   -- is measured from the actual send (no coordinated-omission correction as wrk2 does), which is sound
   -- while the target keeps up — the achieved rate is reported next to the target.
   local ffi = require("ffi")
   ffi.cdef [[
      typedef struct { long tv_sec; long tv_nsec; } kb_timespec;
      int clock_gettime(int clk_id, kb_timespec *tp);
   ]]
   local ts = ffi.new("kb_timespec")
   local function now_ms()
      ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
      return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
   end
   local interval, next_slot
   function delay()
      local now = now_ms()
      if not interval then
         interval = 1000 * (tonumber(os.getenv("BENCH_THREADS")) or 1) / rate
         next_slot = now
      end
      next_slot = math.max(next_slot + interval, now - 50)
      local wait = next_slot - now
      if wait < 0 then return 0 end
      return math.floor(wait + 0.5)
   end
end

function done(summary, latency, requests)
   local p = {}
   for _, q in ipairs({ 50, 75, 90, 99, 99.9, 99.99 }) do
      p[#p + 1] = string.format('"%s": %d', tostring(q), latency:percentile(q))
   end
   local e = summary.errors
   local json = string.format(
      '{"requests": %d, "duration_us": %d, "bytes": %d, "latency_us": {"min": %d, "mean": %.1f, "max": %d, "stdev": %.1f, ' ..
      '"percentiles": {%s}}, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}',
      summary.requests, summary.duration, summary.bytes, latency.min, latency.mean, latency.max, latency.stdev,
      table.concat(p, ", "), e.connect, e.read, e.write, e.status, e.timeout)
   if out and out ~= "" then
      local f = assert(io.open(out, "w"))
      f:write(json, "\n")
      f:close()
   else
      print(json)
   end
end
