// An MCP server on the official TypeScript SDK, mounted on Express the way the SDK's examples
// do it (`app.post('/mcp', …)`, stateless Streamable HTTP), for mcp-guard's path tests:
// Express routes case-insensitively and ignores a trailing slash, so `/MCP` and `/mcp/` reach
// this handler too.
//
// Run (Node 22 from tests/node, `make node-deps`):
//   tests/node/node_modules/node/bin/node tests/servers/ts_server.mjs [--port P]
//
// Tools: echo (returns `text`) and delete_file (the tests' policies deny `delete_*`). With
// --tasks, also the tasks extension (2025-11-25) with one task tool, delay (completes after
// `ms`), its tasks in one in-memory store shared by every request and never scoped to a
// caller: only the gateway can keep callers apart.
// Every HTTP request is recorded before routing (method, path with query, body as text):
// GET /__seen answers the list, POST /__reset clears it; GET /healthz answers "ok" for
// Envoy's health checks (not recorded). Prints "ready <port>" once listening.

import { createRequire } from "node:module";

// The SDK and Express live in tests/node/node_modules, not next to this file.
const require = createRequire(new URL("../node/package.json", import.meta.url));
const { McpServer } = require("@modelcontextprotocol/sdk/server/mcp.js");
const { StreamableHTTPServerTransport } = require("@modelcontextprotocol/sdk/server/streamableHttp.js");
const { InMemoryTaskStore } = require("@modelcontextprotocol/sdk/experimental/tasks/stores/in-memory.js");
const express = require("express");
const z = require("zod");

const portArg = process.argv.indexOf("--port");
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 0;
let seen = [];
const taskStore = process.argv.includes("--tasks") ? new InMemoryTaskStore() : undefined;

function mcpServer() {
  const options = taskStore && { capabilities: { tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } }, taskStore };
  const server = new McpServer({ name: "ts-test-server", version: "1.0.0" }, options);
  if (taskStore) {
    server.experimental.tasks.registerToolTask(
      "delay",
      { description: "Complete after ms milliseconds.", inputSchema: { ms: z.number() } },
      {
        async createTask({ ms }, { taskStore: requestStore, taskRequestedTtl }) {
          const task = await requestStore.createTask({ ttl: taskRequestedTtl ?? 60000 });
          // The shared store itself: the request's (which notifies) is gone by then.
          const done = { content: [{ type: "text", text: `waited ${ms}` }] };
          setTimeout(() => taskStore.storeTaskResult(task.taskId, "completed", done), ms);
          return { task };
        },
        getTask: async (_args, { taskId, taskStore }) => taskStore.getTask(taskId),
        getTaskResult: async (_args, { taskId, taskStore }) => taskStore.getTaskResult(taskId),
      },
    );
  }
  server.registerTool(
    "echo",
    { description: "Return the text unchanged.", inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: "text", text }] }),
  );
  server.registerTool(
    "delete_file",
    { description: "Delete a file (pretends to).", inputSchema: { path: z.string() } },
    async ({ path }) => ({ content: [{ type: "text", text: `deleted ${path}` }] }),
  );
  return server;
}

const app = express();
app.use(express.text({ type: () => true, limit: "16mb" }));
app.use((req, _res, next) => {
  if (!["/__seen", "/__reset", "/healthz"].includes(req.path)) {
    seen.push({ method: req.method, path: req.originalUrl, body: typeof req.body === "string" ? req.body : "" });
  }
  next();
});
app.get("/__seen", (_req, res) => res.json(seen));
app.get("/healthz", (_req, res) => res.json("ok"));
app.post("/__reset", (_req, res) => {
  seen = [];
  res.json({ ok: true });
});
app.post("/mcp", async (req, res) => {
  let body;
  try {
    body = JSON.parse(req.body);
  } catch {
    body = undefined; // the transport answers the parse error itself
  }
  const server = mcpServer();
  const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  res.on("close", () => {
    transport.close();
    server.close();
  });
  await server.connect(transport);
  await transport.handleRequest(req, res, body);
});

const listener = app.listen(port, "127.0.0.1", () => console.log(`ready ${listener.address().port}`));
