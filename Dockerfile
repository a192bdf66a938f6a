# mailproxy service image: multi-stage build on Node 24 LTS, runs as a non-root user.
# Build: docker build -t mailproxy .      Run and configure: README "Operator's kit" (Docker).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
COPY scripts ./scripts
COPY bench ./bench
RUN npx tsc -p tsconfig.json && npm prune --omit=dev
# A self-signed placeholder certificate so the image's own config starts; mount a real one over /etc/mailproxy.
RUN apt-get update -q && apt-get install -y -q --no-install-recommends openssl && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /tls && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
      -subj /CN=mailproxy.invalid -keyout /tls/privkey.pem -out /tls/fullchain.pem

FROM node:24-bookworm-slim
ENV NODE_ENV=production
# Fewer glibc malloc arenas: less native memory per held session (README "Processes and signals", memory).
ENV MALLOC_ARENA_MAX=2
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json README.md ./
COPY config/example.yaml config/mailproxy.schema.json ./config/
# The image's config: every listener on an unprivileged port below, so the non-root user can bind it.
COPY config/docker.yaml /etc/mailproxy/mailproxy.yaml
COPY config/mailproxy.schema.json /etc/mailproxy/mailproxy.schema.json
COPY --from=build --chown=node:node /tls /etc/mailproxy/tls
# tini as PID 1: forwards SIGHUP/SIGTERM to node and reaps orphans of hook commands (node as PID 1 reaps none).
RUN apt-get update -q && apt-get install -y -q --no-install-recommends tini && rm -rf /var/lib/apt/lists/*
USER node
# Publish on the standard ports (-p 143:10143 ...); 8025 is the admin API (metrics, status), 127.0.0.1 on the host.
EXPOSE 10143 10993 10110 10995 10587 10465 10025 8025
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:8025/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/src/main.js"]
CMD ["start", "-c", "/etc/mailproxy/mailproxy.yaml"]
