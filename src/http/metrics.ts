// The Prometheus metrics of one server instance (README "Metrics"). A registry per instance,
// never prom-client's global one: tests start several servers in one process. Counters are
// moved by the places that know each outcome (the protocol engine's events, our endpoints,
// sign-in); the state gauges are read from their source on each scrape. Every label value comes
// from a fixed set or from a registered client, never from what a caller sent.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Db } from '../db/database.ts';
import { poolConnections } from '../db/database.ts';
import { readSigningKeys } from '../keys/signing-keys.ts';
import { listCertificateExpiries } from '../store/certificates.ts';
import type { ClientAuthMethodTried } from '../oauth/client-auth.ts';

export interface Metrics {
  registry: Registry;
  tokensIssued: Counter<'grant_type' | 'client_id' | 'format'>;
  tokenRequestsFailed: Counter<'grant_type' | 'error'>;
  introspections: Counter<'result'>;
  /** The kind revoked at /revoke, or `unknown` when no live token had the value. */
  revocations: Counter<'kind'>;
  tokenReuse: Counter;
  logins: Counter<'result'>;
  /** argon2 verifications of a presented user password, the stand-in hash of an unknown user included. */
  passwordVerifications: Counter;
  lockouts: Counter<'reason'>;
  clientAuthFailures: Counter<'method'>;
  httpDuration: Histogram<'route' | 'status'>;
  dbQueryDuration: Histogram;
  /** Connections closed on arrival because the listener had max_connections open. */
  connectionsDropped: Counter<'listener'>;
  /** Management sign-ins checking a password now, and waiting for their turn (src/management/sign-in-limit.ts). */
  managementSignIns: Gauge<'state' | 'names'>;
  /** Management sign-ins refused before any check because too many were under way. */
  managementSignInsRefused: Counter<'names'>;
}

const INTROSPECTION_RESULTS = ['active', 'inactive', 'refused', 'error'] as const;
const REVOCATION_KINDS = ['access_token', 'refresh_token', 'unknown'] as const;
const LOGIN_RESULTS = ['success', 'failure', 'locked', 'overdue'] as const;
const CLIENT_AUTH_METHODS_TRIED: ClientAuthMethodTried[] = ['client_secret_basic', 'client_secret_post', 'tls_client_auth', 'self_signed_tls_client_auth', 'none'];

// From a local cache hit (well under a millisecond) to an argon2 sign-in and a slow database.
const SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  // Each worker process counts 1; with several workers the scrape sums them (cluster-metrics.ts).
  new Gauge({ name: 'km_workers', help: 'Processes whose metrics this scrape includes', registers }).set(1);
  const metrics: Metrics = {
    registry,
    tokensIssued: new Counter({ name: 'km_tokens_issued_total', help: 'Access tokens issued by the token endpoint', labelNames: ['grant_type', 'client_id', 'format'], registers }),
    tokenRequestsFailed: new Counter({ name: 'km_token_requests_failed_total', help: 'Token requests the token endpoint refused or failed', labelNames: ['grant_type', 'error'], registers }),
    introspections: new Counter({ name: 'km_introspections_total', help: 'Introspection requests by answer', labelNames: ['result'], registers }),
    revocations: new Counter({ name: 'km_revocations_total', help: 'Tokens revoked at the revocation endpoint, by kind', labelNames: ['kind'], registers }),
    tokenReuse: new Counter({ name: 'km_token_reuse_detected_total', help: 'Used refresh tokens or authorization codes presented again (their grant was revoked)', registers }),
    logins: new Counter({ name: 'km_logins_total', help: 'User password sign-ins (password grant and sign-in page) by outcome', labelNames: ['result'], registers }),
    passwordVerifications: new Counter({ name: 'km_password_verifications_total', help: 'argon2 verifications of user passwords (password grant and sign-in page), unknown users included', registers }),
    lockouts: new Counter({ name: 'km_lockouts_total', help: 'Accounts or addresses locked after repeated failed sign-ins', labelNames: ['reason'], registers }),
    clientAuthFailures: new Counter({ name: 'km_client_auth_failures_total', help: 'Failed client authentications, by the method tried', labelNames: ['method'], registers }),
    httpDuration: new Histogram({
      name: 'km_http_request_duration_seconds', help: 'HTTP requests by matched route and status', labelNames: ['route', 'status'], buckets: SECONDS_BUCKETS, registers,
    }),
    dbQueryDuration: new Histogram({ name: 'km_db_query_duration_seconds', help: 'PostgreSQL statements, failed ones included', buckets: SECONDS_BUCKETS, registers }),
    connectionsDropped: new Counter({ name: 'km_connections_dropped_total', help: 'Connections closed on arrival because the listener had max_connections open', labelNames: ['listener'], registers }),
    managementSignIns: new Gauge({ name: 'km_management_sign_ins', help: 'Management API sign-ins checking a password now (running) or waiting for their turn (waiting), for names of configured operators or others', labelNames: ['state', 'names'], registers }),
    managementSignInsRefused: new Counter({ name: 'km_management_sign_ins_refused_total', help: 'Management API sign-ins refused (503) because as many as allowed were running and waiting', labelNames: ['names'], registers }),
  };
  for (const names of ['operators', 'unknown']) {
    for (const state of ['running', 'waiting']) metrics.managementSignIns.set({ state, names }, 0);
    metrics.managementSignInsRefused.inc({ names }, 0);
  }
  // Labels of a fixed set are shown at 0 from the start: a series that appears only with its
  // first event hides that event from rate() and increase().
  const zero = <L extends string>(counter: Counter<L>, label: L, values: readonly string[]) => {
    for (const value of values) counter.inc({ [label]: value } as Partial<Record<L, string>>, 0);
  };
  zero(metrics.introspections, 'result', INTROSPECTION_RESULTS);
  zero(metrics.revocations, 'kind', REVOCATION_KINDS);
  zero(metrics.logins, 'result', LOGIN_RESULTS);
  zero(metrics.lockouts, 'reason', ['account', 'address']);
  zero(metrics.clientAuthFailures, 'method', CLIENT_AUTH_METHODS_TRIED);
  zero(metrics.connectionsDropped, 'listener', ['public', 'management']);
  return metrics;
}

export interface StateSources {
  db: Db;
  keysDir: string;
  /** The key id this instance signs with now. */
  signingKid: () => string | undefined;
  logger: Logger;
}

/** The gauges read on each scrape: the pool, the client certificates, the signing key. */
export function addStateGauges({ registry }: Metrics, { db, keysDir, signingKid, logger }: StateSources): void {
  const registers = [registry];
  new Gauge({
    name: 'km_db_pool_connections', help: 'PostgreSQL pool connections: total open, idle, and requests waiting for one', labelNames: ['state'], registers,
    collect() {
      const pool = poolConnections(db);
      if (!pool) return;
      for (const state of ['total', 'idle', 'waiting'] as const) this.set({ state }, pool[state]);
    },
  });
  new Gauge({
    name: 'km_client_certificate_expiry_seconds', help: 'Seconds until each registered client certificate expires (negative: expired)', labelNames: ['client_id', 'thumbprint'], registers,
    // Every worker reads the same rows: one copy, not their sum.
    aggregator: 'first',
    async collect() {
      // A certificate removed since the last scrape must disappear, not keep its last value.
      this.reset();
      try {
        const now = Date.now();
        for (const c of await listCertificateExpiries(db)) this.set({ client_id: c.client_id, thumbprint: c.thumbprint_sha256 }, Math.round((c.not_after.getTime() - now) / 1000));
      } catch (err) {
        // The other metrics still matter most while the database is down.
        logger.warn({ error: err instanceof Error ? err.message : String(err) }, 'metrics: client certificates not read');
      }
    },
  });
  new Gauge({
    name: 'km_signing_key_age_seconds', help: 'Age of the key that signs tokens now', registers,
    // Workers pick up a rotation within seconds of each other; the oldest in use is the one to watch.
    aggregator: 'max',
    collect() {
      try {
        const { published } = readSigningKeys(keysDir);
        const kid = signingKid();
        const key = published.find((k) => k.kid === kid) ?? published.find((k) => k.signing);
        if (key) this.set(Math.round((Date.now() - Date.parse(key.created_at)) / 1000));
      } catch (err) {
        logger.warn({ error: err instanceof Error ? err.message : String(err) }, 'metrics: signing keys not read');
      }
    },
  });
}
