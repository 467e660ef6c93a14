# Tributary runs TypeScript directly on Node 24 (type stripping): the server needs no build
# step and only the production dependencies; the web console is bundled in a build stage.
#
# Keep a glibc base (Debian), not alpine: retention writes Parquet with DuckDB's native binding,
# and npm installs only the build platform's prebuilt package (@duckdb/node-bindings-linux-x64,
# or -linux-arm64; both glibc, no install script). Both stages use the same base, so the binding
# installed in `deps` is the one the final image loads.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

# The web console's static assets (src/console/dist), bundled in a stage of their own. What the
# bundle needs (esbuild, preact, uplot) is in the production dependencies, because `prepare`
# builds the console on every `npm ci`; esbuild's binary comes from its platform package
# (@esbuild/linux-*), so the skipped install scripts do not matter.
FROM deps AS console
COPY src/console ./src/console
RUN npm run build

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
# Files stay owned by root: the service only reads them.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY drizzle ./drizzle
COPY src ./src
COPY --from=console /app/src/console/dist ./src/console/dist
# Fail the build, not the first retention pass, when the native binding is missing or cannot load.
RUN node -e "import('@duckdb/node-api').then(async (d) => (await (await d.DuckDBInstance.create()).connect()).run('SELECT 1'))"
# The workers' disk checkpoint: mount a persistent volume here. Workers sharing it each
# take their own worker-N directory, and replay the directories of workers that are gone.
ENV CHECKPOINT_DIR=/var/lib/tributary/checkpoint
# Retention's scratch space for files being archived, verified or restored: about twice the
# largest month of one service; a volume keeps it off the container's writable layer.
ENV ARCHIVE_WORK_DIR=/var/lib/tributary/archive-work
# The archive itself when no ARCHIVE_S3_BUCKET is set: a persistent volume, shared by every
# process of the deployment (erasure in the API rewrites what the workers archived). Rows are
# deleted from PostgreSQL once archived, so the VOLUME keeps it out of the container's layer.
ENV ARCHIVE_DIR=/var/lib/tributary/archive
RUN mkdir -p /var/lib/tributary/checkpoint /var/lib/tributary/archive-work /var/lib/tributary/archive \
  && chown -R node:node /var/lib/tributary
VOLUME ["/var/lib/tributary/checkpoint", "/var/lib/tributary/archive"]
USER node
EXPOSE 8080
# Only meaningful for roles with an HTTP server (serve, all); disable it for `work`.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health/live').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
# The process handles SIGTERM itself (src/roles/lifecycle.ts): stop accepting, drain the worker, close clients.
STOPSIGNAL SIGTERM
# A 16 MiB young generation instead of V8's size-based default (64 MiB on big hosts) keeps
# each process well under 300 MB at full rate, for a few per cent of throughput (README, Performance).
ENTRYPOINT ["node", "--max-semi-space-size=16", "src/main.ts"]
CMD ["all"]
