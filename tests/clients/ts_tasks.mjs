// The official TypeScript SDK client driving the tasks extension (2025-11-25) through
// mcp-guard, its requests spread over several gateways (Envoy processes) in turn: the owner
// creates a task with a tool call, polls it, reads its result; then another identity tries
// the owner's task id. Prints one JSON line per step: {"step", ...}.
//
//   node tests/clients/ts_tasks.mjs --ports P1,P2 --owner KEY --other KEY
//
// Errors are printed, not thrown: the test judges them.

import { createRequire } from "node:module";

const require = createRequire(new URL("../node/package.json", import.meta.url));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { CallToolResultSchema, CreateTaskResultSchema } = require("@modelcontextprotocol/sdk/types.js");

const arg = (name) => process.argv[process.argv.indexOf(`--${name}`) + 1];
const ports = arg("ports").split(",");
const print = (line) => console.log(JSON.stringify(line));

/** A connected client with `key`, each request to the next gateway in turn. */
async function connect(key) {
  let next = 0;
  const spread = (url, init) => {
    const target = new URL(url);
    target.port = ports[next++ % ports.length];
    return fetch(target, init);
  };
  const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${ports[0]}/mcp`), {
    requestInit: { headers: { "x-api-key": key } },
    fetch: spread,
  });
  const client = new Client({ name: "ts-tasks", version: "1.0.0" });
  await client.connect(transport);
  return client;
}

/** Runs `step`, printing its outcome or its error. */
async function attempt(step, run) {
  try {
    print({ step, ...(await run()) });
  } catch (e) {
    print({ step, error: String(e.message ?? e), code: e.code ?? null });
  }
}

const owner = await connect(arg("owner"));
let taskId;
await attempt("created", async () => {
  const created = await owner.request(
    { method: "tools/call", params: { name: "delay", arguments: { ms: 100 }, task: { ttl: 60000 } } },
    CreateTaskResultSchema,
  );
  taskId = created.task.taskId;
  return { taskId, status: created.task.status };
});
await attempt("polled", async () => {
  let task;
  for (let i = 0; i < 50; i++) {
    task = await owner.experimental.tasks.getTask(taskId);
    if (task.status === "completed") break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return { taskId: task.taskId, status: task.status };
});
await attempt("result", async () => {
  const result = await owner.experimental.tasks.getTaskResult(taskId, CallToolResultSchema);
  return { text: result.content[0].text };
});
const other = await connect(arg("other"));
await attempt("other-get", async () => ({ task: await other.experimental.tasks.getTask(taskId) }));
await attempt("other-result", async () => ({ result: await other.experimental.tasks.getTaskResult(taskId, CallToolResultSchema) }));
await attempt("other-cancel", async () => ({ task: await other.experimental.tasks.cancelTask(taskId) }));
// A server whose list is not scoped lists the owner's task to the other identity too: the
// id it shows must give no access.
let listed = [];
await attempt("other-list", async () => {
  listed = (await other.experimental.tasks.listTasks()).tasks.map((t) => t.taskId);
  return { listed };
});
await attempt("other-get-listed", async () => ({ task: await other.experimental.tasks.getTask(listed[0]) }));
await owner.close();
await other.close();
