-- GET one of `storages` storages; see patch.lua.
local storages = tonumber(os.getenv("STORAGES") or "1")
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
local n = 0

request = function()
  n = n + 1
  return wrk.format("GET", "/api/storages/bench-" .. (n % storages))
end

if delay_ms > 0 then
  delay = function() return delay_ms end
end
