-- Sends each request with a cookie picked at random from the first K lines of a cookie file
-- (`name=value` per line), so the load spreads over K distinct sessions:
--   wrk ... -s bench/sessions.lua URL -- COOKIE_FILE K
-- Each thread loads the file in init and pre-formats its K requests.
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local k = assert(tonumber(args[2]), "usage: -- COOKIE_FILE K")
  requests = {}
  for line in io.lines(args[1]) do
    if #requests >= k then break end
    table.insert(requests, wrk.format(nil, nil, {["Cookie"] = line}))
  end
  assert(#requests == k, "the cookie file has fewer than " .. k .. " lines")
  math.randomseed(os.time() * 16 + (id or 0))
end

function request()
  return requests[math.random(#requests)]
end
