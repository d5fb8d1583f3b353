-- The warm-up pass before the measured runs over many sessions: each of wrk's T threads sends
-- every T-th cookie of the first K lines of a cookie file, in order, and stops once each has been
-- answered, so the pass visits every session once (random picks over K requests would leave
-- about e^-(requests/K) of them unvisited):
--   wrk -tT ... -s bench/sessions_once.lua URL -- COOKIE_FILE K T DONE
-- Each thread creates the file DONE.<thread> when its share is answered: wrk sleeps out its whole
-- -d even when every thread has stopped, so bench/run interrupts it (SIGINT, after which wrk
-- reports as usual) once both files are there.
-- A script of its own: defining `response` makes wrk read every response's headers, which the
-- measured runs (bench/sessions.lua) should not pay for.
-- wrk's own req/s divides by the time until it is interrupted, a little after the pass; so each
-- thread times its pass (a monotonic clock, through LuaJIT's FFI) and done()
-- prints "Pass requests/sec:", which bench/parse_wrk.py prefers.
local ffi = require("ffi")
ffi.cdef [[
  struct timespec { long tv_sec; long tv_nsec; };
  int clock_gettime(int clock, struct timespec *tp);
]]
local function now()
  local t = ffi.new("struct timespec")
  ffi.C.clock_gettime(1, t) -- CLOCK_MONOTONIC
  return tonumber(t.tv_sec) + tonumber(t.tv_nsec) / 1e9
end

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local k = assert(tonumber(args[2]), "usage: -- COOKIE_FILE K THREADS")
  local threads = assert(tonumber(args[3]), "usage: -- COOKIE_FILE K THREADS")
  local all = {}
  for line in io.lines(args[1]) do
    if #all >= k then break end
    table.insert(all, line)
  end
  assert(#all == k, "the cookie file has fewer than " .. k .. " lines")
  mine = {}
  for i = (id or 0) + 1, k, threads do
    table.insert(mine, wrk.format(nil, nil, {["Cookie"] = all[i]}))
  end
  sent, answered, took = 0, 0, 0
  done_file = assert(args[4], "usage: -- COOKIE_FILE K THREADS DONE") .. "." .. (id or 0)
end

function request()
  if sent == 0 then started = now() end
  sent = sent % #mine + 1
  return mine[sent]
end

function response(status, headers, body)
  answered = answered + 1
  if answered == #mine then
    took = now() - started
    wrk.thread:stop()
    io.open(done_file, "w"):close()
  end
end

function done(summary, latency, requests)
  local answered, longest = 0, 0
  for _, thread in ipairs(threads) do
    answered = answered + thread:get("answered")
    longest = math.max(longest, thread:get("took"))
  end
  if longest > 0 then
    io.write(string.format("Pass requests/sec: %.2f (%d answers in %.2f s)\n", answered / longest, answered, longest))
  end
end
