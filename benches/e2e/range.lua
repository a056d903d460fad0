-- wrk script: COUNT random Range requests over one file. Usage:
--   wrk -t1 -c4 -d60s -s range.lua URL -- SIZE COUNT SEED [LEN] [ORDER]
-- Each request asks for LEN bytes (default 65536) at a random offset drawn
-- from a generator seeded with SEED, so two servers get the same offsets.
-- With ORDER "sequential" the offsets are 0, LEN, 2*LEN, ... instead
-- (wrapping before the end of the file): a player or a downloader reading
-- a file in pieces.
-- A response that is not 206 with exactly LEN bytes counts as bad.
-- Headers given to wrk with -H (say, `Authorization: Bearer …` for a
-- server in token mode) go with every request.
--
-- wrk itself runs for the whole -d duration; this script times the COUNT
-- responses itself (monotonic clock, from the first request to the
-- COUNT-th response) and then ends the run early by sending SIGINT to
-- wrk's main thread (-d stays as an upper bound). Use one thread (-t1).
-- Prints one JSON line last:
--   {"requests":N,"seconds":S,"rps":R,"p50_us":..,"p99_us":..,"bad":B,"errors":E}

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } range_timespec;
  int clock_gettime(int clk, range_timespec *tp);
  int getpid(void);
  int kill(int pid, int sig);
  int tgkill(int tgid, int tid, int sig);
]]

local CLOCK_MONOTONIC, SIGINT = 1, 2

local function now()
  local t = ffi.new("range_timespec")
  ffi.C.clock_gettime(CLOCK_MONOTONIC, t)
  return tonumber(t.tv_sec) + tonumber(t.tv_nsec) / 1e9
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  size = tonumber(args[1])
  count = tonumber(args[2])
  len = tonumber(args[4] or 65536)
  sequential = args[5] == "sequential"
  nth = 0
  math.randomseed(tonumber(args[3]))
  responses, bad, t0, t1 = 0, 0, 0, 0
end

function request()
  if t0 == 0 then
    t0 = now()
  end
  local off
  if sequential then
    off = (nth * len) % (size - len + 1)
    nth = nth + 1
  else
    off = math.floor(math.random() * (size - len + 1))
  end
  -- Set on wrk's own header table, which wrk.format uses (the -H headers
  -- are in it): no table built per request on the cores the server uses.
  wrk.headers["Range"] = string.format("bytes=%d-%d", off, off + len - 1)
  return wrk.format("GET")
end

function response(status, headers, body)
  responses = responses + 1
  if status ~= 206 or #body ~= len then
    bad = bad + 1
  end
  if responses == count then
    t1 = now()
    wrk.thread:stop()
    -- The main thread sleeps out -d; its SIGINT handler ends the sleep.
    local pid = ffi.C.getpid()
    if not pcall(function() return ffi.C.tgkill(pid, pid, SIGINT) end) then
      ffi.C.kill(pid, SIGINT)
    end
  end
end

function done(summary, latency, requests)
  local b, n, c, secs = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    b = b + t:get("bad")
    n = n + t:get("responses")
    c = c + t:get("count")
    local a, z = t:get("t0"), t:get("t1")
    if z > 0 then
      secs = math.max(secs, z - a)
    end
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.6f,"rps":%.1f,"p50_us":%d,"p99_us":%d,"bad":%d,"errors":%d}\n',
    n, secs, secs > 0 and c / secs or 0, latency:percentile(50), latency:percentile(99), b,
    e.connect + e.read + e.write + e.status + e.timeout))
end
