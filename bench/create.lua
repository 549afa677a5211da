-- POST a new storage per request: ids PREFIX-0, PREFIX-1, ... up to COUNT, then idles on
-- /healthz. One wrk thread (-t1) so the counter is shared by all connections.
local prefix = os.getenv("PREFIX") or "many"
local count = tonumber(os.getenv("COUNT") or "100000")
local n = 0
local headers = { ["Content-Type"] = "application/json" }

request = function()
  if n >= count then return wrk.format("GET", "/healthz") end
  local id = prefix .. "-" .. n
  n = n + 1
  return wrk.format("POST", "/api/storages", headers, '{"id":"' .. id .. '","data":{"n":' .. n .. ',"label":"storage number ' .. n .. '"}}')
end

response = function(status)
  if status ~= 201 and status ~= 200 then io.stderr:write("unexpected status " .. status .. "\n") end
end
