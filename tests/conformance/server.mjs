// A small everything-style MCP server for the official conformance suite
// (@modelcontextprotocol/conformance), built on the official TypeScript SDK and Express.
//
// It serves what the suite's server scenarios exercise, on POST/GET/DELETE /mcp:
// - 2025-11-25 (stateful): the SDK's Streamable HTTP transport, one McpServer per session;
// - 2026-07-28 (stateless, per-request `_meta`): the SDK has no stateless server yet, so
//   each request is answered by a fresh McpServer reached through an in-memory client, and
//   the result gets the revision's `resultType` and caching hints.
// The 2026-07-28 multi-round (input-required) tools and subscriptions/listen are not
// implemented: those checks fail directly and so are not compared through the gateway.
//
//   node server.mjs [--port N]      prints "ready <port>" once listening on 127.0.0.1
import { randomUUID } from 'node:crypto';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ElicitResultSchema, ResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const STATELESS = '2026-07-28';
// 1x1 PNG and a tiny WAV header: valid base64 payloads for image/audio content.
const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
const WAV = 'UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQAAAAA=';

const text = (t) => ({ content: [{ type: 'text', text: t }] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Asks the client (sampling or elicitation) and reports its answer as text. */
async function ask(extra, request, schema, label) {
  try {
    const answer = await extra.sendRequest(request, schema);
    return text(`${label}: ${JSON.stringify(answer)}`);
  } catch (e) {
    return text(`${label} failed: ${e.message}`);
  }
}

function buildServer() {
  const server = new McpServer(
    { name: 'mcp-guard-conformance-server', version: '1.0.0' },
    {
      capabilities: {
        logging: {},
        completions: {},
        tools: { listChanged: true },
        prompts: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
      },
    },
  );
  const log = (extra, data) =>
    extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });

  // ---- tools
  server.registerTool('test_simple_text', { description: 'Simple text' }, async () =>
    text('This is a simple text response for testing.'),
  );
  server.registerTool('test_image_content', { description: 'Image content' }, async () => ({
    content: [{ type: 'image', data: PNG, mimeType: 'image/png' }],
  }));
  server.registerTool('test_audio_content', { description: 'Audio content' }, async () => ({
    content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }],
  }));
  server.registerTool('test_embedded_resource', { description: 'Embedded resource' }, async () => ({
    content: [
      {
        type: 'resource',
        resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
      },
    ],
  }));
  server.registerTool('test_multiple_content_types', { description: 'Text, image and resource' }, async () => ({
    content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: PNG, mimeType: 'image/png' },
      {
        type: 'resource',
        resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' },
      },
    ],
  }));
  server.registerTool('test_tool_with_logging', { description: 'Logs while running', inputSchema: {} }, async (_a, extra) => {
    for (const step of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
      await log(extra, step);
      await sleep(20);
    }
    return text('Tool with logging executed successfully');
  });
  server.registerTool('test_tool_with_progress', { description: 'Reports progress', inputSchema: {} }, async (_a, extra) => {
    const progressToken = extra._meta?.progressToken ?? 0;
    for (const progress of [0, 50, 100]) {
      await extra.sendNotification({
        method: 'notifications/progress',
        params: { progressToken, progress, total: 100, message: `step ${progress} of 100` },
      });
      await sleep(20);
    }
    return text(String(progressToken));
  });
  server.registerTool('test_error_handling', { description: 'Always fails' }, async () => {
    throw new Error('This tool intentionally returns an error for testing');
  });
  server.registerTool(
    'test_sampling',
    { description: 'Asks the client for a completion', inputSchema: { prompt: z.string() } },
    async ({ prompt }, extra) =>
      ask(
        extra,
        {
          method: 'sampling/createMessage',
          params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 },
        },
        z.object({}).passthrough(),
        'LLM response',
      ),
  );
  server.registerTool(
    'test_elicitation',
    { description: 'Asks the user', inputSchema: { message: z.string() } },
    async ({ message }, extra) =>
      ask(
        extra,
        {
          method: 'elicitation/create',
          params: {
            message,
            requestedSchema: {
              type: 'object',
              properties: { response: { type: 'string', description: "User's response" } },
              required: ['response'],
            },
          },
        },
        ElicitResultSchema,
        'User response',
      ),
  );
  server.registerTool('test_elicitation_sep1034_defaults', { description: 'Elicitation with defaults', inputSchema: {} }, async (_a, extra) =>
    ask(
      extra,
      {
        method: 'elicitation/create',
        params: {
          message: 'Please review the defaults',
          requestedSchema: {
            type: 'object',
            properties: {
              name: { type: 'string', default: 'John Doe' },
              age: { type: 'integer', default: 30 },
              score: { type: 'number', default: 95.5 },
              status: { type: 'string', enum: ['active', 'inactive', 'pending'], default: 'active' },
              verified: { type: 'boolean', default: true },
            },
            required: [],
          },
        },
      },
      ElicitResultSchema,
      'Elicitation completed',
    ),
  );
  server.registerTool('test_elicitation_sep1330_enums', { description: 'Elicitation with enums', inputSchema: {} }, async (_a, extra) => {
    const options = (prefix, title) => [1, 2, 3].map((i) => ({ const: `${prefix}${i}`, title: `${title} ${i}` }));
    return ask(
      extra,
      {
        method: 'elicitation/create',
        params: {
          message: 'Please select options',
          requestedSchema: {
            type: 'object',
            properties: {
              untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
              titledSingle: { type: 'string', oneOf: options('value', 'Option') },
              legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['One', 'Two', 'Three'] },
              untitledMulti: { type: 'array', minItems: 1, maxItems: 3, items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
              titledMulti: { type: 'array', minItems: 1, maxItems: 3, items: { anyOf: options('value', 'Choice') } },
            },
            required: [],
          },
        },
      },
      ElicitResultSchema,
      'Elicitation completed',
    );
  });

  // ---- resources
  const cached = (result) => ({ ...result, ttlMs: 300000, cacheScope: 'private' });
  const fixed = (uri, mimeType, body) =>
    server.registerResource(uri.slice('test://'.length), uri, { description: uri, mimeType }, async () =>
      cached({ contents: [{ uri, mimeType, ...body }] }),
    );
  fixed('test://static-text', 'text/plain', { text: 'This is the content of the static text resource.' });
  fixed('test://static-binary', 'image/png', { blob: PNG });
  fixed('test://watched-resource', 'text/plain', { text: 'Watched resource content' });
  server.registerResource(
    'template',
    new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { description: 'A template', mimeType: 'application/json' },
    async (uri, { id }) =>
      cached({
        contents: [{ uri: uri.href, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }],
      }),
  );
  const low = server.server;
  low.setRequestHandler(z.object({ method: z.literal('resources/subscribe') }).passthrough(), async () => ({}));
  low.setRequestHandler(z.object({ method: z.literal('resources/unsubscribe') }).passthrough(), async () => ({}));

  // ---- prompts
  const user = (content) => ({ role: 'user', content });
  server.registerPrompt('test_simple_prompt', { description: 'No arguments' }, async () => ({
    messages: [user({ type: 'text', text: 'This is a simple prompt for testing.' })],
  }));
  server.registerPrompt(
    'test_prompt_with_arguments',
    { description: 'Two arguments', argsSchema: { arg1: z.string(), arg2: z.string() } },
    async ({ arg1, arg2 }) => ({ messages: [user({ type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` })] }),
  );
  server.registerPrompt(
    'test_prompt_with_embedded_resource',
    { description: 'Embeds a resource', argsSchema: { resourceUri: z.string() } },
    async ({ resourceUri }) => ({
      messages: [
        user({ type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } }),
        user({ type: 'text', text: 'Please process the embedded resource above.' }),
      ],
    }),
  );
  server.registerPrompt('test_prompt_with_image', { description: 'An image' }, async () => ({
    messages: [user({ type: 'image', data: PNG, mimeType: 'image/png' }), user({ type: 'text', text: 'Please analyze the image above.' })],
  }));

  // ---- logging, completion
  low.setRequestHandler(z.object({ method: z.literal('logging/setLevel') }).passthrough(), async () => ({}));
  low.setRequestHandler(z.object({ method: z.literal('completion/complete') }).passthrough(), async () => ({
    completion: { values: [], total: 0, hasMore: false },
  }));
  return server;
}

// ------------------------------------------------------------------ 2026-07-28 (stateless)

const CACHEABLE = new Set(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read']);
const FORWARDED = new Set([...CACHEABLE, 'tools/call', 'prompts/get', 'completion/complete']);

/** Answers one request with a fresh server through an in-memory client; returns the
 * notifications it sent and the JSON-RPC result or error. */
async function dispatch(method, params) {
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  const server = buildServer();
  await server.connect(serverSide);
  const client = new Client({ name: 'stateless-bridge', version: '1.0.0' }, { capabilities: {} });
  const notes = [];
  client.fallbackNotificationHandler = async (n) => void notes.push({ jsonrpc: '2.0', ...n });
  client.setNotificationHandler(
    z.object({ method: z.literal('notifications/progress') }).passthrough(),
    async (n) => void notes.push({ jsonrpc: '2.0', ...n }),
  );
  await client.connect(clientSide);
  try {
    const { _meta, ...rest } = params;
    const forwarded = _meta?.progressToken !== undefined ? { ...rest, _meta: { progressToken: _meta.progressToken } } : rest;
    return { notes, result: await client.request({ method, params: forwarded }, ResultSchema) };
  } catch (e) {
    const data = e.data ?? (method === 'resources/read' ? { uri: params.uri } : undefined);
    return { notes, error: { code: e.code ?? -32603, message: e.message, ...(data === undefined ? {} : { data }) } };
  } finally {
    await client.close();
    await server.close();
  }
}

// A tool only callable by clients that declare the sampling capability (-32021 otherwise).
const NEEDS_SAMPLING = { name: 'test_missing_capability', description: 'Needs sampling', inputSchema: { type: 'object', properties: {} } };

/** subscriptions/listen: an acknowledgement naming the honoured notifications, then the
 * stream stays open (newline-delimited JSON) until the client leaves. */
function listen(res, id, wanted) {
  const honoured = {};
  for (const kind of ['toolsListChanged', 'promptsListChanged']) if (wanted[kind] === true) honoured[kind] = true;
  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache' });
  const ack = {
    jsonrpc: '2.0',
    method: 'notifications/subscriptions/acknowledged',
    params: { _meta: { 'io.modelcontextprotocol/subscriptionId': String(id) }, notifications: honoured },
  };
  res.write(JSON.stringify(ack) + '\n');
}

function fail(res, status, id, code, message, data) {
  return res.status(status).json({ jsonrpc: '2.0', id, error: { code, message, ...(data ? { data } : {}) } });
}

async function stateless(req, res) {
  const { id = null, method, params = {} } = req.body ?? {};
  const meta = params._meta;
  const header = req.headers['mcp-protocol-version'];
  if (!header) return fail(res, 400, id, -32020, 'Missing MCP-Protocol-Version header');
  const version = meta?.['io.modelcontextprotocol/protocolVersion'];
  if (!version || !meta['io.modelcontextprotocol/clientCapabilities']) {
    return fail(res, 400, id, -32602, 'Invalid params: _meta lacks protocolVersion or clientCapabilities');
  }
  if (header !== version) return fail(res, 400, id, -32020, 'MCP-Protocol-Version header does not match _meta');
  if (version !== STATELESS) {
    return fail(res, 400, id, -32022, 'Unsupported protocol version', { supported: [STATELESS], requested: String(version) });
  }
  const finish = (result) => {
    result.resultType ??= 'complete';
    if (CACHEABLE.has(method) || method === 'server/discover') {
      result.ttlMs ??= 0;
      result.cacheScope ??= 'private';
    }
    return result;
  };
  if (method === 'server/discover') {
    return res.json({
      jsonrpc: '2.0',
      id,
      result: finish({
        supportedVersions: [STATELESS],
        capabilities: { tools: { listChanged: true }, prompts: { listChanged: true }, resources: {}, completions: {} },
        _meta: { 'io.modelcontextprotocol/serverInfo': { name: 'mcp-guard-conformance-server', version: '1.0.0' } },
      }),
    });
  }
  if (method === 'subscriptions/listen') return listen(res, id, params.notifications ?? {});
  if (method === 'tools/call' && params.name === NEEDS_SAMPLING.name) {
    if (!meta['io.modelcontextprotocol/clientCapabilities'].sampling) {
      return fail(res, 400, id, -32021, 'Missing required client capability', { requiredCapabilities: { sampling: {} } });
    }
    return res.json({ jsonrpc: '2.0', id, result: finish(text('Success')) });
  }
  if (!FORWARDED.has(method)) return fail(res, 404, id, -32601, `Method not found: ${method}`);
  const { notes, result, error } = await dispatch(method, params);
  if (method === 'tools/list' && result) result.tools.push(NEEDS_SAMPLING);
  const answer = error ? { jsonrpc: '2.0', id, error } : { jsonrpc: '2.0', id, result: finish(result) };
  if (method === 'tools/call') {
    // Progress and log notifications travel on the request's own stream.
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    for (const m of [...notes, answer]) res.write(`event: message\ndata: ${JSON.stringify(m)}\n\n`);
    return res.end();
  }
  return res.json(answer);
}

// ------------------------------------------------------------------ HTTP

const SESSION_REVISIONS = new Set(['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25']);
const sessions = new Map();
const app = createMcpExpressApp(); // Host/Origin checks for localhost (DNS rebinding protection)

app.post('/mcp', async (req, res) => {
  const sid = req.headers['mcp-session-id'];
  const header = req.headers['mcp-protocol-version'];
  const meta = req.body?.params?._meta;
  const sessionEra = meta === undefined && header !== undefined && SESSION_REVISIONS.has(header);
  if (!sid && (header || meta) && !sessionEra) return stateless(req, res);
  if (sid) {
    const transport = sessions.get(sid);
    if (!transport) return fail(res, 404, null, -32001, 'Session not found');
    return transport.handleRequest(req, res, req.body);
  }
  if (req.body?.method !== 'initialize') return fail(res, 400, null, -32000, 'Missing session id');
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: randomUUID,
    onsessioninitialized: (id) => sessions.set(id, transport),
  });
  transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
  await buildServer().connect(transport);
  return transport.handleRequest(req, res, req.body);
});

const bySession = async (req, res) => {
  const transport = sessions.get(req.headers['mcp-session-id']);
  if (!transport) return fail(res, 400, null, -32000, 'Missing or unknown session id');
  return transport.handleRequest(req, res);
};
app.get('/mcp', bySession);
app.delete('/mcp', bySession);

const portArg = process.argv.indexOf('--port');
const listener = app.listen(portArg > 0 ? Number(process.argv[portArg + 1]) : 0, '127.0.0.1', () => {
  console.log(`ready ${listener.address().port}`);
});
