# keymanager on Node 24, for docker-compose.yml. The database comes from DATABASE_URL.
FROM node:24-slim
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false
COPY package.json package-lock.json ./
# Runtime dependencies only: the image's Node is already 24, so the `node` devDependency,
# TypeScript and the bench tools are not needed.
RUN npm ci --omit=dev && npm cache clean --force
COPY src ./src
COPY db ./db
# keys/ is a volume (signing keys, cookie keys, development TLS certificate); it must be
# writable by the unprivileged user the server runs as.
RUN mkdir -p keys node_modules/.cache && chown node:node keys node_modules/.cache
# Node's compile cache (README, "Start-up and the compile cache"), filled now by loading the
# server's modules without starting it (the SAML reader too, which the server loads at its
# first assertion), so that every container starts from it. Filled as the user the server runs
# as (Node keeps one cache per user id), then made read-only for it: the server reads it, and
# nothing running as that user can change what the next start runs.
ENV NODE_COMPILE_CACHE=/app/node_modules/.cache/node-compile-cache
USER node
RUN node --input-type=module -e "await import('/app/src/main.ts'); await import('/app/src/saml/assertion.ts')"
USER root
RUN chown -R root:root node_modules/.cache && chmod -R a+rX,go-w node_modules/.cache
USER node
EXPOSE 9443 9164
# What `npm start` runs, started directly: behind npm and `sh -c`, SIGTERM from `docker stop`
# would not reach the server, which stops cleanly on it.
CMD ["node", "src/main.ts"]
