-- Logs in with the seeded user's credentials (argon2id with OWASP parameters per request).
function init(args)
  local f = assert(io.open(args[1]))
  wrk.method = "POST"
  wrk.body = f:read("*a")
  wrk.headers["Content-Type"] = "application/json"
  f:close()
end
