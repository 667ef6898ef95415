-- wrk script of the soak run (bench/soak.sh): a mix of Zambda calls, each
-- tagged with its own request id, and a trace of every request sent and
-- every answer received, so that bench/soak/check.py can judge each one.
--
--   wrk ... -s mix.lua URL -- WORK_DIR TAG
--
-- Kinds (the first letter of the request id):
--   A  the allowed actor calling soak-a  (its permission is flipped by
--      rewriting a policy file)
--   B  the allowed actor calling soak-b  (flipped by a ConfigMap swap)
--   D  the other actor calling soak-a    (never allowed)
--   P  soak-public on execute-public, no token
--   X  a bad token calling soak-a        (bad signature, expired, unknown
--      kid, garbage: always 401)
-- Tokens are read from WORK_DIR/tokens.txt ("kind token" lines) and read
-- again every two seconds, so that a key rotation reaches the load.
-- One request in twenty says `Connection: close`, so connections are both
-- kept alive and opened fresh all the time.
--
-- Each thread writes WORK_DIR/load-TAG-N.log:
--   S <id> <ms>           a request was handed to the socket
--   R <id> <ms> <status>  its answer arrived (<id> from x-oystehr-request-id)
-- A request id that has an S line and no R line was lost. Times are wall
-- clock milliseconds, like the driver's event times.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_usec; } soak_timeval;
  int gettimeofday(soak_timeval *tv, void *tz);
]]
local tv = ffi.new("soak_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + math.floor(tonumber(tv.tv_usec) / 1000)
end

local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
end

local BODY = '{"input":{"patient":"p-1","items":[1,2,3]}}'
local KINDS = { "A", "A", "A", "B", "B", "D", "P", "P", "X", "X" }
local BAD = { "badsig", "expired", "unknownkid", "garbage" }

local dir, tag, trace
local tokens = {}
local tokens_read_at = 0
local seq = 0
local first = true

local function read_tokens()
  local f = io.open(dir .. "/tokens.txt", "r")
  if not f then return end
  local fresh = {}
  for line in f:lines() do
    local kind, token = line:match("^(%S+) (%S+)$")
    if kind then fresh[kind] = token end
  end
  f:close()
  if fresh.allowed and fresh.denied then tokens = fresh end
end

function init(args)
  dir = args[1] or "."
  tag = args[2] or "main"
  trace = io.open(string.format("%s/load-%s-%d.log", dir, tag, tid), "w")
  trace:setvbuf("full", 65536)
  math.randomseed(tid * 7919 + now_ms() % 100000)
  read_tokens()
  tokens_read_at = now_ms()
end

function request()
  local now = now_ms()
  if now - tokens_read_at >= 2000 then
    read_tokens()
    tokens_read_at = now
  end
  seq = seq + 1
  local kind = KINDS[math.random(#KINDS)]
  local id = string.format("%s%d-%s%d", tag, tid, kind, seq)
  local headers = {
    ["Content-Type"] = "application/json",
    ["x-oystehr-request-id"] = id,
  }
  local path
  if kind == "A" then
    path = "/v1/zambda/soak-a/execute"
    headers["Authorization"] = "Bearer " .. (tokens.allowed or "")
  elseif kind == "B" then
    path = "/v1/zambda/soak-b/execute"
    headers["Authorization"] = "Bearer " .. (tokens.allowed or "")
  elseif kind == "D" then
    path = "/v1/zambda/soak-a/execute"
    headers["Authorization"] = "Bearer " .. (tokens.denied or "")
  elseif kind == "P" then
    path = "/v1/zambda/soak-public/execute-public"
  else
    path = "/v1/zambda/soak-a/execute"
    headers["Authorization"] = "Bearer " .. (tokens[BAD[math.random(#BAD)]] or "x")
  end
  if math.random(20) == 1 then
    headers["Connection"] = "close"
  end
  -- wrk builds one request of thread 1 to check the script before the
  -- load starts; that one is never sent, so it leaves no trace.
  if first and tid == 1 then
    first = false
  else
    trace:write("S ", id, " ", now, "\n")
  end
  return wrk.format("POST", path, headers, BODY)
end

function response(status, headers, body)
  local id = headers["x-oystehr-request-id"] or headers["X-Oystehr-Request-Id"] or "?"
  trace:write("R ", id, " ", now_ms(), " ", status, "\n")
end

function done(summary, latency, requests)
  local out = os.getenv("SOAK_WRK_SUMMARY")
  if not out then return end
  local f = io.open(out, "w")
  local e = summary.errors
  f:write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"latency_p50_us":%d,"latency_p99_us":%d,"latency_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
  f:close()
end
