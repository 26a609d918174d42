-- serve_load.lua: wrk script posting one 28x28 classification request, again and again.
--   wrk -t2 -c8 -d30s --latency -s serve_load.lua http://127.0.0.1:8080/api/classify
-- BODY_FILE is replaced by the path of a JSON body ({"pixels": [784 numbers]}).
local f = assert(io.open("BODY_FILE", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
wrk.headers["Content-Type"] = "application/json"
f:close()
