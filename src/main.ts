// Composition root: config → database → keys → provider → apps → listeners. Nothing here is
// a module-level singleton, so tests can start several isolated instances in one process.
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { mtlsFeature, splitPemBundle } from './oauth/mtls.ts';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { ConfigError, issuerFollowsListener, loadConfig, SETTINGS, workerCount, type Config } from './config/index.ts';
import { PortInUseError, StartupError } from './config/startup-errors.ts';
import cluster from 'node:cluster';
import { flushCompileCache } from 'node:module';
import { connectDatabase, type DatabaseHandle } from './db/connect.ts';
import { prepareSigningKeys } from './store/signing-key-changes.ts';
import { loadOrCreateTlsMaterial } from './keys/tls.ts';
import { loadOrCreateCookieKeys } from './keys/cookie-keys.ts';
import { buildProvider } from './oauth/provider.ts';
import { createEngine, type Engine } from './oauth/engine.ts';
import { createRevocationFeed, type RevocationFeed } from './gateway/revocation-feed.ts';
import { purgeExpiredRevocationEvents } from './store/revocation-events.ts';
import { purgeOldAuditEvents } from './store/audit.ts';
import { buildPublicApp } from './http/public-app.ts';
import { buildManagementApp } from './http/management-app.ts';
import { forBoundAddress, managementHostPolicy } from './http/management-hosts.ts';
import { createLogger } from './http/logger.ts';
import { createRefreshTokenReader, createTokenWriter, purgeExpiredTokens } from './store/tokens.ts';
import { purgeOldLoginFailures } from './store/login-failures.ts';
import { purgeExpiredAssertionIds } from './store/idps.ts';
import { listenForChanges, type ChangeListener } from './db/notifications.ts';
import { abandonWorkInFlight, presumeConnectionsLost } from './db/database.ts';
import type { Readiness } from './http/health.ts';
import { drainable, ownedRequests } from './http/listener-drain.ts';
import { limitListener, listenerServerOptions } from './http/listener-limits.ts';
import { createScopeRegistry } from './oauth/scope-registry.ts';
import { createClientDirectory } from './oauth/client-directory.ts';
import { createTokenCache } from './gateway/token-cache.ts';
import { loadOrCreateManagementKey } from './keys/management-key.ts';
import { loadManagementUsers } from './management/user-store.ts';
import { revokeTokensOfChangedUsers } from './management/auth.ts';
import { createSignInLimiters, DEFAULT_SIGN_IN_LIMITS } from './management/sign-in-limit.ts';
import { refusalAudit } from './management/refusal-audit.ts';
import { purgeManagementTokens } from './store/management-tokens.ts';
import { addStateGauges, createMetrics } from './http/metrics.ts';
import { observeEngine } from './http/engine-metrics.ts';
import { aggregateWorkerMetrics, metricsExposition, type MetricsExposition } from './http/cluster-metrics.ts';

export interface RunningServer {
  config: Config;
  publicUrl: string;
  managementUrl: string;
  stop(): Promise<void>;
}

export async function startServer(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  const metrics = createMetrics();
  // First, so that a worker answers the primary's requests for metrics as early as it can.
  const exposition: MetricsExposition = metricsExposition(metrics.registry);
  const database: DatabaseHandle = await connectDatabase(config, {
    applicationName: 'keymanager',
    requestTimeoutMs: config.databaseRequestTimeout * 1000,
    log: (m) => logger.debug({ component: 'embedded-postgres' }, m),
    warn: (m) => logger.warn({ component: 'embedded-postgres' }, m),
    // pg attaches the whole client to its errors: log what an operator needs, not the object.
    onPoolError: (err) => logger.warn({ error: err.message, code: (err as { code?: string }).code }, 'database connection lost'),
    onQuery: (seconds) => metrics.dbQueryDuration.observe(seconds),
    keepEmbeddedRunning: logger,
  }).catch((err: unknown) => {
    exposition.close();
    throw err;
  });
  let changes: ChangeListener | undefined;
  let engine: Engine | undefined;
  let feed: RevocationFeed | undefined;
  try {
    const applied = await database.migrate();
    for (const m of applied) logger.info({ migration: `${m.version}_${m.name}` }, 'migration applied');

    const { keys, created, replaced } = await prepareSigningKeys(database.db, config);
    if (created) logger.info({ keys_dir: config.keysDir, alg: config.signingAlgorithm }, 'generated a signing key');
    if (replaced) {
      logger.info({ kid: keys[0]?.kid, alg: config.signingAlgorithm, replaced_kid: replaced.kid, replaced_alg: replaced.alg, replaced_retire_at: replaced.retire_at },
        'the signing key was not of signing_algorithm: a new key signs now; the old one stays published until what it signed has expired');
    }

    const cookieKeys = loadOrCreateCookieKeys(config.keysDir);
    changes = listenForChanges(database.url, (message, err) => logger.warn({ error: err instanceof Error ? err.message : undefined }, message),
      () => presumeConnectionsLost(database.db));
    const scopes = createScopeRegistry(database.db, changes);
    const clientCaFile = config.clientCaFile ?? join(config.keysDir, 'client-ca.pem');
    const clientCaPem = existsSync(clientCaFile) ? readFileSync(clientCaFile, 'utf8') : undefined;
    if (config.clientCaFile && !clientCaPem) throw new Error(`KM_CLIENT_CA: ${clientCaFile} does not exist`);
    const clientCaCertificates = clientCaPem ? splitPemBundle(clientCaPem) : [];
    const certificates = mtlsFeature({ config, logger, anchors: clientCaCertificates });
    const clients = createClientDirectory(database.db, changes);
    // One writer per instance, shared by every provider the engine builds: its batches span them.
    const writer = createTokenWriter(database.db);
    const readRefreshToken = createRefreshTokenReader(database.db);
    const listener = changes;
    const syncInstances = () => listener.sync();
    engine = createEngine({
      keysDir: config.keysDir, initialKeys: keys, changes, logger,
      build: (signingKeys) => observeEngine(buildProvider({ config, db: database.db, signingKeys, cookieKeys, scopes, certificates, clients, writer, readRefreshToken, syncInstances, metrics, logger }), metrics),
    });
    const running = engine;
    addStateGauges(metrics, { db: database.db, keysDir: config.keysDir, signingKid: () => running.signingKey.kid, logger });
    feed = createRevocationFeed({ db: database.db, changes, logger, heartbeatSeconds: config.revocationFeedHeartbeat });
    const tokens = createTokenCache(database.db, changes);
    const readiness: Readiness = { stopping: false };
    const publicApp = buildPublicApp({ config, db: database.db, engine, scopes, cookieKeys, certificates, feed, clients, tokens, syncInstances, metrics, logger, readiness });
    const { key: managementKey, created: managementKeyCreated } = await loadOrCreateManagementKey(config.keysDir, config.managementTokenKeySize);
    if (managementKeyCreated) logger.info({ keys_dir: config.keysDir, bits: managementKey.bits }, 'generated the management token signing key');
    else if (managementKey.bits !== config.managementTokenKeySize) {
      logger.warn({ bits: managementKey.bits, configured: config.managementTokenKeySize }, 'the management token key was made with another size; delete keys/management-token-key.json to make a new one');
    }
    const managementUsers = await loadManagementUsers(config, logger);
    // The user store speaks for the operators when it is configured, and in production also
    // when it is empty (then nobody may manage: every token goes). A development instance with
    // none makes its own admin, and must not revoke the tokens of users configured elsewhere.
    if (config.managementUsers.length > 0 || config.env === 'production') await revokeTokensOfChangedUsers(database.db, managementUsers, logger);
    const managementHosts = managementHostPolicy(config.managementHostnames);
    const managementApp = buildManagementApp({
      db: database.db, logger, metrics, exposition, readiness, hosts: managementHosts, management: {
        config, db: database.db, logger, users: managementUsers, key: managementKey,
        auditRefusal: refusalAudit(database.db, logger), reloadSigningKeys: engine.reload, syncInstances,
        signIns: createSignInLimiters(DEFAULT_SIGN_IN_LIMITS, metrics),
      },
    });

    const limits = { requestTimeout: config.requestTimeout, keepAliveTimeout: config.keepAliveTimeout, maxConnections: config.maxConnections };
    const serverOptions = listenerServerOptions(limits);
    let publicServer: Server;
    let managementServer: Server;
    if (config.tls) {
      const tls = await loadOrCreateTlsMaterial(
        config.tlsCertFile ?? join(config.keysDir, 'tls', 'server.crt'),
        config.tlsKeyFile ?? join(config.keysDir, 'tls', 'server.key'),
        config.env !== 'production',
      );
      if (tls.generated) logger.info('generated a development TLS certificate for localhost');
      publicServer = createHttpsServer({
        ...serverOptions,
        cert: tls.cert,
        key: tls.key,
        // Ask for a client certificate without requiring one: secret-based clients use the
        // same port. Whether a certificate counts is decided per client (src/oauth/mtls.ts).
        requestCert: true,
        rejectUnauthorized: false,
        ...(clientCaPem ? { ca: clientCaPem } : {}),
      }, ownedRequests(publicApp.callback()));
      // The management API over HTTPS with the same certificate, as operators of WSO2 expect
      // (`curl -k https://localhost:9164/management/login`).
      managementServer = createHttpsServer({ ...serverOptions, cert: tls.cert, key: tls.key }, ownedRequests(managementApp.callback()));
    } else {
      publicServer = createHttpServer(serverOptions, ownedRequests(publicApp.callback()));
      managementServer = createHttpServer(serverOptions, ownedRequests(managementApp.callback()));
    }
    limitListener(publicServer, 'public', limits, { logger, dropped: metrics.connectionsDropped });
    limitListener(managementServer, 'management', limits, { logger, dropped: metrics.connectionsDropped });
    const drains = [drainable(publicServer), drainable(managementServer)];
    await listen(publicServer, config.port, config.host, SETTINGS.port.env);
    await listen(managementServer, config.managementPort, config.managementHost, SETTINGS.managementPort.env);
    forBoundAddress(managementHosts, (managementServer.address() as AddressInfo).address, config.managementHostnames);

    const purge = setInterval(() => {
      Promise.all([
        purgeExpiredTokens(database.db), purgeOldLoginFailures(database.db, config.lockoutWindow), purgeExpiredAssertionIds(database.db),
        purgeExpiredRevocationEvents(database.db), purgeOldAuditEvents(database.db, config.auditRetentionDays),
      ])
        .then(([tokens, failures, assertions, revocations, audit]) => (tokens || failures || assertions || revocations || audit)
          && logger.info({ tokens, login_failures: failures, saml_assertion_ids: assertions, revocation_events: revocations, audit_events: audit }, 'purged expired rows'))
        .catch((err) => logger.warn({ err }, 'purge failed'));
    }, config.purgeInterval * 1000);
    purge.unref();
    const managementCleanup = setInterval(() => {
      purgeManagementTokens(database.db)
        .then((n) => n && logger.info({ management_tokens: n }, 'removed expired and revoked management tokens'))
        .catch((err) => logger.warn({ error: err instanceof Error ? err.message : String(err) }, 'management token cleanup failed'));
    }, config.managementTokenStoreCleanupInterval * 1000);
    managementCleanup.unref();

    const publicUrl = urlOf(publicServer, config.tls ? 'https' : 'http');
    const managementUrl = urlOf(managementServer, config.tls ? 'https' : 'http');
    logger.info({ public: publicUrl, management: managementUrl, issuer: config.issuer, embedded_postgres: database.embedded }, 'keymanager listening');

    return {
      config,
      publicUrl,
      managementUrl,
      // In the order a load balancer needs (README "Database outages and stopping").
      async stop() {
        readiness.stopping = true;
        for (const drain of drains) drain.begin();
        if (config.shutdownDelay > 0) {
          logger.info({ seconds: config.shutdownDelay }, 'not ready (/readyz 503); still accepting requests for shutdown_delay');
          await new Promise((r) => setTimeout(r, config.shutdownDelay * 1000));
        }
        clearInterval(purge);
        clearInterval(managementCleanup);
        // Revocation streams never end on their own: they would hold their listener open.
        feed?.close();
        logger.info('listeners closed to new connections; waiting for the requests in flight');
        const cut = (await Promise.all(drains.map((drain) => drain.close(config.shutdownTimeout * 1000)))).flat();
        if (cut.length) {
          // Their clients were told nothing: nothing they asked for may be left half done either.
          const ended = await abandonWorkInFlight(database.db).catch((err: unknown) => {
            logger.error({ error: err instanceof Error ? err.message : String(err) },
              'could not end the database work of the requests cut off: what they had not committed yet may still commit');
            return undefined;
          });
          logger.warn({ seconds: config.shutdownTimeout, requests: cut, database_connections_ended: ended ?? 0 }, ended === undefined
            ? 'requests still running after shutdown_timeout: their connections were closed'
            : 'requests still running after shutdown_timeout: their connections were closed, and what they had not committed was rolled back');
        }
        engine?.close();
        exposition.close();
        await changes?.close();
        await database.close();
      },
    };
  } catch (err) {
    engine?.close();
    feed?.close();
    exposition.close();
    await changes?.close();
    await database.close().catch(() => {});
    throw err;
  }
}

/** `setting` names the variable that moves the port, for the message when it is taken. */
function listen(server: Server, port: number, host: string, setting: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new PortInUseError(port, setting) : err);
    server.once('error', fail);
    server.listen(port, host, () => {
      server.off('error', fail);
      resolve();
    });
  });
}

async function assertPortsFree(config: Config): Promise<void> {
  for (const [port, host, setting] of [[config.port, config.host, SETTINGS.port.env], [config.managementPort, config.managementHost, SETTINGS.managementPort.env]] as const) {
    const probe = createHttpServer();
    await listen(probe, port, host, setting);
    await close(probe);
  }
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function urlOf(server: Server, scheme: string): string {
  const { address, port } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address === '0.0.0.0' ? 'localhost' : address;
  return `${scheme}://${host}:${port}`;
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  if (config.env === 'production' && issuerFollowsListener(config) && cluster.isPrimary) {
    logger.warn({ issuer: config.issuer }, 'KM_ISSUER is not set: metadata and tokens name this machine\'s own address, which clients elsewhere may not reach; set KM_ISSUER to the public URL');
  }
  // Before the database work, and once: workers would each find out, and be replaced by others.
  if (cluster.isPrimary) await assertPortsFree(config).catch((err: unknown) => exitAfterStartupFailure(logger, err));
  const workers = workerCount(config);
  if (workers > 1 && cluster.isPrimary) {
    await runPrimary(config, logger, workers);
    return;
  }
  let server: RunningServer;
  try {
    server = await startServer(config, logger);
  } catch (err) {
    exitAfterStartupFailure(logger, err);
  }
  // Node writes its compile cache (NODE_COMPILE_CACHE, set by `npm start`) only at exit; a
  // server that is killed, not stopped, would leave the next start without it.
  flushCompileCache();
  exitAfterStopOnSignal(logger, async (signal) => {
    logger.info({ signal }, 'stopping');
    await server.stop();
    logger.info('stopped');
  });
}

/**
 * A failure the operator can fix (a port taken, the database unreachable) is one line on
 * stderr and exit code 2, like a wrong setting; anything else is a bug, exit code 1. The JSON
 * log has the whole error either way.
 */
function exitAfterStartupFailure(logger: Logger, err: unknown): never {
  logger.fatal({ err }, 'keymanager did not start');
  if (!(err instanceof StartupError)) process.exit(1);
  process.stderr.write(`keymanager: ${err.message}\n`);
  process.exit(2);
}

/**
 * SIGINT and SIGTERM run `stop` once, then end the process (1 if stopping failed).
 * embedded-postgres installs its own handlers, which stop the cluster at once and exit; ours
 * replace them, so that the listeners stop first and the cluster stays up while a CLI uses it.
 */
function exitAfterStopOnSignal(logger: Logger, stop: (signal: string) => Promise<void>): void {
  let stopping = false;
  const handle = (signal: string) => {
    if (stopping) return;
    stopping = true;
    stop(signal).then(() => process.exit(0), (err: unknown) => {
      logger.error({ err }, 'unclean stop');
      process.exit(1);
    });
  };
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  process.on('SIGINT', () => handle('SIGINT'));
  process.on('SIGTERM', () => handle('SIGTERM'));
}

/** What a worker may take, beyond shutdown_delay and shutdown_timeout, to close its pool. */
const WORKER_STOP_MARGIN_SECONDS = 10;

/**
 * With several workers, this process only supervises: it brings the database (the embedded
 * one too), its schema and the keys up once, so that the workers do not race to, then forks
 * them onto the same ports (node:cluster shares the listening sockets), replaces one that dies,
 * and on SIGTERM stops them all — each finishing its requests — before the database.
 */
async function runPrimary(config: Config, logger: Logger, workers: number): Promise<void> {
  let database: DatabaseHandle;
  try {
    database = await connectDatabase(config, {
      applicationName: 'keymanager-primary',
      log: (m) => logger.debug({ component: 'embedded-postgres' }, m),
      warn: (m) => logger.warn({ component: 'embedded-postgres' }, m),
      keepEmbeddedRunning: logger,
    });
    for (const m of await database.migrate()) logger.info({ migration: `${m.version}_${m.name}` }, 'migration applied');
    await prepareSigningKeys(database.db, config);
    loadOrCreateCookieKeys(config.keysDir);
    await loadOrCreateManagementKey(config.keysDir, config.managementTokenKeySize);
    // Creates the development admin's password file, if needed, before the workers read it.
    await loadManagementUsers(config, logger);
    if (config.tls) {
      await loadOrCreateTlsMaterial(
        config.tlsCertFile ?? join(config.keysDir, 'tls', 'server.crt'), config.tlsKeyFile ?? join(config.keysDir, 'tls', 'server.key'), config.env !== 'production');
    }
  } catch (err) {
    exitAfterStartupFailure(logger, err);
  }
  // The workers use the database this process made sure of (the embedded one's URL included).
  const env = { ...process.env, DATABASE_URL: database.url };
  let stopping = false;
  const fork = () => cluster.fork(env);
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    if (code === 2) {
      // It said why on stderr (a port taken since the check above); another would fail alike.
      stopping = true;
      logger.fatal({ worker: worker.process.pid }, 'a worker could not start; stopping');
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
      void database.close().finally(() => process.exit(2));
      return;
    }
    logger.error({ worker: worker.process.pid, code, signal }, 'worker died; starting another');
    fork();
  });
  aggregateWorkerMetrics();
  // The workers load the modules this process has loaded: from the compile cache, once written.
  flushCompileCache();
  for (let i = 0; i < workers; i++) fork();
  logger.info({ workers }, 'keymanager started its workers');

  exitAfterStopOnSignal(logger, async (signal) => {
    stopping = true;
    logger.info({ signal }, 'stopping the workers');
    const alive = Object.values(cluster.workers ?? {}).filter((w) => w !== undefined);
    const exited = alive.map((w) => new Promise<void>((resolve) => {
      if (w.isDead()) return resolve();
      w.once('exit', () => resolve());
      w.process.kill('SIGTERM');
    }));
    // Each worker waits shutdown_delay, then up to shutdown_timeout for its requests.
    const grace = config.shutdownDelay + config.shutdownTimeout + WORKER_STOP_MARGIN_SECONDS;
    const deadline = setTimeout(() => {
      logger.warn({ seconds: grace }, 'workers did not stop in time; killing them');
      for (const w of alive) w.process.kill('SIGKILL');
    }, grace * 1000);
    await Promise.all(exited);
    clearTimeout(deadline);
    await database.close();
    logger.info('stopped');
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main();
}
