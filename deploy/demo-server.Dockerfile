# The demo's MCP servers (tests/servers/mcp_server.py, official MCP Python SDK) and JWKS
# endpoint, for docker-compose.yml. Build context: the repository root.
FROM python:3.11-slim
WORKDIR /mcp-guard
COPY tests/requirements.txt tests/requirements.txt
RUN pip install --no-cache-dir -r tests/requirements.txt
COPY tests/servers tests/servers
# The JWKS server logs each request next to the key set it serves (mounted at run time).
RUN mkdir -p /srv/jwks && chown nobody /srv/jwks
USER nobody
