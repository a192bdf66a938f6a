# mailproxy service image: multi-stage build on Node 24 LTS, runs as a non-root user.
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

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY config/example.yaml ./config/example.yaml
USER node
# Unprivileged ports by default; map 143/993/110/995/587/465/25 to these, or grant CAP_NET_BIND_SERVICE.
EXPOSE 10143 10993 10110 10995 10587 10465 10025 8025
HEALTHCHECK --interval=10s --timeout=3s CMD node -e "fetch('http://127.0.0.1:8025/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/src/main.js"]
CMD ["start", "-c", "/etc/mailproxy/mailproxy.yaml"]
