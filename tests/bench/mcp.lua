-- wrk script for `make bench`: MCP POSTs with varied ids and tool names, so no layer can
-- serve one cached body. MCP_WORKLOAD picks the request: call300, list, call64k, denied
-- (the jwt-* workloads send call300 bodies). MCP_TOKENS_FILE (one JWT a line), if set, adds
-- "authorization: Bearer <token>", cycling through the tokens from line MCP_TOKEN_OFFSET + 1.
local workload = os.getenv("MCP_WORKLOAD") or "call300"
local path = os.getenv("MCP_PATH") or "/mcp"
local allowed = { "echo", "add", "search", "db_query", "db_read" }
local headers = {
  ["content-type"] = "application/json",
  ["accept"] = "application/json, text/event-stream",
}
if workload == "list" then
  -- the bench upstream then answers with its tools/list result (through every gateway)
  headers["x-bench-answer"] = "tools/list"
end
local pad = ({ call300 = 170, call64k = 65400 })[workload] or 0
local text = string.rep("a", pad)
local counter = 0

local bearers = {}
local tokens_file = os.getenv("MCP_TOKENS_FILE")
if tokens_file and tokens_file ~= "" then
  local f = assert(io.open(tokens_file, "r"))
  for line in f:lines() do
    if line ~= "" then
      bearers[#bearers + 1] = "Bearer " .. line
    end
  end
  f:close()
  assert(#bearers > 0, "no tokens in " .. tokens_file)
end
local token_offset = tonumber(os.getenv("MCP_TOKEN_OFFSET") or "0")

function request()
  counter = counter + 1
  if #bearers > 0 then
    headers["authorization"] = bearers[((token_offset + counter - 1) % #bearers) + 1]
  end
  local body
  if workload == "list" then
    -- id 1, the id of the upstream's fixed answer: an answer with another id is not this
    -- request's list, and mcp-guard would pass it unfiltered
    body = '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}'
  else
    local tool = allowed[(counter % #allowed) + 1]
    if workload == "denied" then
      tool = "delete_file"
    end
    body = string.format(
      '{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"%s","arguments":{"text":"%s","n":%d}}}',
      counter, tool, text, counter % 97)
  end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
