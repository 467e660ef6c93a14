# Tributary runs TypeScript directly on Node 24 (type stripping): no build step,
# only the production dependencies are installed.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
# Files stay owned by root: the service only reads them.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY drizzle ./drizzle
COPY src ./src
# The workers' disk checkpoint: mount a persistent volume here. Workers sharing it each
# take their own worker-N directory, and replay the directories of workers that are gone.
ENV CHECKPOINT_DIR=/var/lib/tributary/checkpoint
RUN mkdir -p /var/lib/tributary/checkpoint && chown -R node:node /var/lib/tributary
VOLUME ["/var/lib/tributary/checkpoint"]
USER node
EXPOSE 8080
# Only meaningful for roles with an HTTP server (serve, all); disable it for `work`.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health/live').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
# main.ts handles SIGTERM itself: stop accepting, drain the worker, close clients.
STOPSIGNAL SIGTERM
# A 16 MiB young generation instead of V8's size-based default (64 MiB on big hosts) keeps
# each process well under 300 MB at full rate, for a few per cent of throughput (README, Performance).
ENTRYPOINT ["node", "--max-semi-space-size=16", "src/main.ts"]
CMD ["all"]
