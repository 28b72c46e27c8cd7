-- wrk script for `make soak`: a steady mix of MCP requests from one API-key caller, paced by
-- MCP_DELAY_MS (ms between requests on each connection), with every status counted.
-- The mix, by request number modulo 20: 2 tools/list (id 1, the id the bench upstream's list
-- answer carries, so the filter rewrites it), 1 denied call (delete_file), 1 call of the
-- rate-limited tool (search), 16 allowed calls (echo, add, db_query).
local headers = {
  ["content-type"] = "application/json",
  ["accept"] = "application/json, text/event-stream",
  ["x-api-key"] = os.getenv("MCP_API_KEY") or "",
}
local allowed = { "echo", "add", "db_query" }
local pause = tonumber(os.getenv("MCP_DELAY_MS") or "0")
local counter = 0
statuses = {}

function request()
  counter = counter + 1
  local slot = counter % 20
  local body
  if slot < 2 then
    body = '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
  else
    local tool = allowed[(counter % #allowed) + 1]
    if slot == 2 then
      tool = "delete_file"
    elseif slot == 3 then
      tool = "search"
    end
    body = string.format(
      '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":{"text":"soak %d"}}}',
      counter, tool, counter)
  end
  return wrk.format("POST", "/mcp", headers, body)
end

function delay()
  return pause
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"statuses":{%s}}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, table.concat(parts, ",")))
end
