-- Posts pre-signed, distinct Stripe events, each thread its own share of the file.
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local lines = {}
  local n = 0
  for line in io.lines(args[1]) do
    if n % 2 == id then
      local sig, body = line:match("^([^\t]+)\t(.*)$")
      table.insert(lines, wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Stripe-Signature"] = sig}, body))
    end
    n = n + 1
  end
  requests = lines
  i = 0
end

function request()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end
