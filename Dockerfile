# syntax=docker/dockerfile:1
#
# Kong Gateway 3.9 OSS with the AI gateway plugin suite inside: Kong's worker 0 starts the
# suite server (Node) through the ai-router plugin server's start_cmd, as on any host.
#
#   docker build -t kong-ai-gateway .        (docker compose up --build does it for you)
#
# Not built in this project's CI (no Docker there): checked by reading docker-kong's
# ubuntu/Dockerfile and docker-entrypoint.sh for kong:3.9.3.

# Node.js for the suite server: the kong image has none. Node 20, as package.json's engines.
FROM node:20-bookworm-slim AS node

# Compile the TypeScript, then keep the production dependencies only.
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY lib lib
COPY plugins plugins
COPY schemas schemas
COPY scripts scripts
COPY spec spec
# dist/spec/support/providers holds the OpenAI mock that compose's `mock` profile runs.
RUN npm run build && npm prune --omit=dev

# The newest Kong OSS release, 3.9.3 (docker-kong's last CE build; OSS stops at 3.9.x).
FROM kong:3.9.3

USER root
# The node binary alone: Ubuntu noble's glibc and libstdc++ are newer than bookworm's.
COPY --from=node /usr/local/bin/node /usr/local/bin/node
RUN node --version
COPY --from=build /src/package.json /opt/kong-ai-gateway/package.json
COPY --from=build /src/node_modules /opt/kong-ai-gateway/node_modules
COPY --from=build /src/dist /opt/kong-ai-gateway/dist
# Example declarative configs; compose mounts ./kong over this folder.
COPY kong /opt/kong-ai-gateway/kong
# The sockets live outside $KONG_PREFIX/ (/usr/local/kong) and $KONG_PREFIX/sockets/, whose
# sockets docker-entrypoint.sh deletes at every start. The suite server runs as kong (Kong's
# workers spawn it) and creates them; connecting needs write permission on them.
RUN mkdir -p /var/run/kong-ai-gateway && chown kong:0 /var/run/kong-ai-gateway

# Kong's side, as `npm run kong-conf -- --format env --prefix /var/run/kong-ai-gateway
#   --node /usr/local/bin/node --root /opt/kong-ai-gateway --env AIGW_RELAY_PORT=8900
#   --env AIGW_LOG_FILE=/proc/1/fd/1 --env AIGW_STORE=memory` prints it (a unit test keeps
# them equal). Kong starts the suite server with an emptied environment: its settings travel
# in the start_cmd through /usr/bin/env. To change them, override
# KONG_PLUGINSERVER_AI_ROUTER_START_CMD whole (docker-compose.yml does, for Redis).
#   AIGW_LOG_FILE=/proc/1/fd/1  the suite's JSON lines go to the container's stdout (PID 1 is
#                               nginx, same user); otherwise Kong would log them at INFO only.
#   AIGW_STORE=memory           one node; use redis://... when Kong runs on several.
ENV KONG_PLUGINS="bundled,ai-router,ai-semantic-cache,ai-budget,ai-fallback,ai-metrics" \
    KONG_PLUGINSERVER_NAMES="ai-router,ai-semantic-cache,ai-budget,ai-fallback,ai-metrics" \
    KONG_PLUGINSERVER_AI_ROUTER_SOCKET="/var/run/kong-ai-gateway/ai-router.sock" \
    KONG_PLUGINSERVER_AI_ROUTER_START_CMD="/usr/bin/env AIGW_RELAY_PORT=8900 AIGW_LOG_FILE=/proc/1/fd/1 AIGW_STORE=memory /usr/local/bin/node /opt/kong-ai-gateway/dist/lib/kong/main.js --socket-dir /var/run/kong-ai-gateway --exit-with-parent" \
    KONG_PLUGINSERVER_AI_ROUTER_QUERY_CMD="/usr/local/bin/node /opt/kong-ai-gateway/dist/lib/kong/main.js --dump ai-router" \
    KONG_PLUGINSERVER_AI_SEMANTIC_CACHE_SOCKET="/var/run/kong-ai-gateway/ai-semantic-cache.sock" \
    KONG_PLUGINSERVER_AI_SEMANTIC_CACHE_QUERY_CMD="/usr/local/bin/node /opt/kong-ai-gateway/dist/lib/kong/main.js --dump ai-semantic-cache" \
    KONG_PLUGINSERVER_AI_BUDGET_SOCKET="/var/run/kong-ai-gateway/ai-budget.sock" \
    KONG_PLUGINSERVER_AI_BUDGET_QUERY_CMD="/usr/local/bin/node /opt/kong-ai-gateway/dist/lib/kong/main.js --dump ai-budget" \
    KONG_PLUGINSERVER_AI_FALLBACK_SOCKET="/var/run/kong-ai-gateway/ai-fallback.sock" \
    KONG_PLUGINSERVER_AI_FALLBACK_QUERY_CMD="/usr/local/bin/node /opt/kong-ai-gateway/dist/lib/kong/main.js --dump ai-fallback" \
    KONG_PLUGINSERVER_AI_METRICS_SOCKET="/var/run/kong-ai-gateway/ai-metrics.sock" \
    KONG_PLUGINSERVER_AI_METRICS_QUERY_CMD="/usr/local/bin/node /opt/kong-ai-gateway/dist/lib/kong/main.js --dump ai-metrics"

# Request bodies: up to 1 MiB stays in memory; larger ones go to a temp file, which the suite
# reads with getRawBody(0) (Kong 3.8+). The suite server refuses bodies above AIGW_MAX_BODY_BYTES
# (10 MiB) with a 413 in OpenAI shape; nginx's cap sits a little above it and only stops the
# absurd ones before any plugin runs (its 413 is Kong's own `{"message":"Payload too large"}`).
ENV KONG_NGINX_HTTP_CLIENT_BODY_BUFFER_SIZE=1m \
    KONG_NGINX_HTTP_CLIENT_MAX_BODY_SIZE=11m
# lua_socket_read_timeout is deliberately left at nginx's 60 s. It bounds each Kong→plugin RPC;
# when it expires Kong logs "no data" and proxies WITHOUT the plugin. The suite server ends
# any handler that runs 30 s with a 500 first, and plugins never wait for a provider (the
# relay does, under the service's read_timeout), so 60 s is never reached. The directive
# applies to every Lua cosocket of Kong; if you change it, keep it above 30 s:
# ENV KONG_NGINX_HTTP_LUA_SOCKET_READ_TIMEOUT=60s

USER kong

# Healthy when nginx runs (kong health) and the suite server's relay accepts connections on
# 127.0.0.1:8900 (AIGW_RELAY_PORT in the start_cmd above). The image has no curl; node does it.
HEALTHCHECK --interval=10s --timeout=10s --start-period=30s --retries=5 \
    CMD kong health >/dev/null && node -e "require('net').connect(8900, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))"
