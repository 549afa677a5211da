-- PATCH one of `storages` storages (bench-0 .. bench-N-1) with a changing key; each wrk thread
-- and connection cycles through them. Set by storage_bench.sh via environment STORAGES and,
-- for paced runs, DELAY_MS (milliseconds each connection waits between requests).
local storages = tonumber(os.getenv("STORAGES") or "1")
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
local n = 0
local headers = { ["Content-Type"] = "application/json" }

request = function()
  n = n + 1
  local path = "/api/storages/bench-" .. (n % storages)
  local body = '{"data":{"k' .. (n % 50) .. '":' .. n .. '}}'
  return wrk.format("PATCH", path, headers, body)
end

if delay_ms > 0 then
  delay = function() return delay_ms end
end

response = function(status)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. "\n")
  end
end
