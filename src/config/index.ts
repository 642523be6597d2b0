// The one typed, frozen Config: defaults ← keymanager.toml (KM_CONFIG) ← KM_* environment.
// Every setting is declared once in SETTINGS below; a wrong value stops the process with a
// single line naming the key and where the value came from.
import { readFileSync, existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { findProjectRoot } from './project-root.ts';
import { describeIssue } from './zod-messages.ts';
import { listenerOrigin, noteDerivedIssuer, resolvePaths } from './derived.ts';

export { issuerFollowsListener } from './derived.ts';

const seconds = z.coerce.number().int().min(1).max(10 * 365 * 86400);
const port = z.coerce.number().int().min(0).max(65535);
// A list: a TOML array, or a comma-separated string (environment variables).
const commaList = z.union([z.array(z.string()), z.string()]).transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean));
const onOff = z.union([z.boolean(), z.enum(['on', 'off', 'true', 'false', '1', '0', 'yes', 'no'])])
  .transform((v) => v === true || v === 'on' || v === 'true' || v === '1' || v === 'yes');
const absoluteHttpUrl = z.string().refine((v) => {
  try {
    const u = new URL(v);
    return (u.protocol === 'https:' || u.protocol === 'http:') && !u.search && !u.hash;
  } catch {
    return false;
  }
}, 'an absolute http(s) URL without query or fragment');
// The endpoints are served at the root of the issuer's origin.
const issuerUrl = absoluteHttpUrl.refine((v) => URL.parse(v)?.pathname === '/', 'an http(s) origin with no path (endpoints are served at its root)');
const postgresUrl = z.string().refine((v) => /^postgres(ql)?:\/\//.test(v), 'a postgres:// URL');
// A management user: exactly one source of the password — an argon2id hash (keymgr management
// hash-password), a file or an environment variable holding it, or (development only) plain.
const managementUser = z.object({
  username: z.string().min(1).max(255).regex(/^[^\s:\p{Cc}\p{Cf}]+$/u, 'no spaces, colons or control characters'),
  password_hash: z.string().startsWith('$argon2id$', 'an argon2id PHC string (keymgr management hash-password)').optional(),
  password_file: z.string().min(1).optional(),
  password_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
  password: z.string().min(1).optional(),
  roles: z.array(z.enum(['admin', 'auditor'])).min(1),
}).strict().refine((u) => [u.password_hash, u.password_file, u.password_env, u.password].filter((v) => v !== undefined).length === 1,
  'exactly one of password_hash, password_file, password_env or password');
export type ManagementUserEntry = z.output<typeof managementUser>;

/**
 * The algorithms the signing keys may use: asymmetric only, since /jwks must let anyone verify
 * without being able to sign. RS256 first: the default, and what every verifier accepts.
 */
export const SIGNING_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];
export const signingAlgorithmSchema = z.enum(SIGNING_ALGORITHMS, { error: `one of ${SIGNING_ALGORITHMS.join(', ')}` });

interface Setting {
  /** The key in keymanager.toml; a dotted key is a key of a table (`management.auth` is `auth` in `[management]`). */
  toml: string;
  /** The environment variable, for scalar settings. */
  env?: string;
  schema: z.ZodType;
  default?: unknown;
  describe: string;
}

// Keep in sync with the configuration table in README.md.
export const SETTINGS = {
  env: { toml: 'env', env: 'KM_ENV', schema: z.enum(['development', 'production']), default: 'development', describe: 'development or production; production refuses unsafe settings' },
  issuer: { toml: 'issuer', env: 'KM_ISSUER', schema: issuerUrl, default: 'https://localhost:9443', describe: 'issuer identifier and base URL of the public endpoints' },
  host: { toml: 'host', env: 'KM_HOST', schema: z.string().min(1), default: '0.0.0.0', describe: 'address the public listener binds' },
  port: { toml: 'port', env: 'KM_PORT', schema: port, default: 9443, describe: 'public listener port (0 picks a free port)' },
  managementHost: { toml: 'management_host', env: 'KM_MANAGEMENT_HOST', schema: z.string().min(1), default: '127.0.0.1', describe: 'address the management listener binds' },
  managementHostnames: { toml: 'management_hostnames', env: 'KM_MANAGEMENT_HOSTNAMES', schema: commaList.pipe(z.array(z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/, 'a DNS name, without port'))), default: [], describe: 'DNS names the management listener answers for, besides IP addresses and localhost (comma-separated); unset: only those when it binds to loopback, any name otherwise' },
  managementPort: { toml: 'management_port', env: 'KM_MANAGEMENT_PORT', schema: port, default: 9164, describe: 'management listener port' },
  tls: { toml: 'tls', env: 'KM_TLS', schema: onOff, default: true, describe: 'serve HTTPS (off: plain HTTP behind a TLS-terminating proxy)' },
  tlsCertFile: { toml: 'tls_cert', env: 'KM_TLS_CERT', schema: z.string().min(1), describe: 'PEM certificate of the public listener; unset: <keys_dir>/tls/server.crt, generated for development when absent' },
  tlsKeyFile: { toml: 'tls_key', env: 'KM_TLS_KEY', schema: z.string().min(1), describe: 'PEM private key of the public listener; unset: <keys_dir>/tls/server.key' },
  clientCaFile: { toml: 'client_ca', env: 'KM_CLIENT_CA', schema: z.string().min(1), describe: 'PEM bundle of CAs trusted for tls_client_auth client certificates; unset: <keys_dir>/client-ca.pem when it exists' },
  clientCertHeader: { toml: 'client_cert_header', env: 'KM_CLIENT_CERT_HEADER', schema: z.string().regex(/^[A-Za-z0-9-]+$/).transform((v) => v.toLowerCase()), describe: 'header in which a TLS-terminating proxy passes the client certificate (URL-encoded PEM); unset: none' },
  trustedProxies: { toml: 'trusted_proxies', env: 'KM_TRUSTED_PROXIES', schema: commaList.pipe(z.array(z.ipv4().or(z.ipv6()))), default: [], describe: 'addresses of your own proxies: their client-certificate header and X-Forwarded-For are believed (comma-separated)' },
  trustProxy: { toml: 'trust_proxy', env: 'KM_TRUST_PROXY', schema: onOff, default: false, describe: 'take the client address from X-Forwarded-For: the right-most entry that is not one of trusted_proxies, when the peer is one of them' },
  keysDir: { toml: 'keys_dir', env: 'KM_KEYS_DIR', schema: z.string().min(1), default: 'keys', describe: 'directory of signing keys and TLS material' },
  signingAlgorithm: { toml: 'signing_algorithm', env: 'KM_SIGNING_ALGORITHM', schema: signingAlgorithmSchema, default: 'RS256', describe: 'algorithm of new signing keys (JWT access tokens, ID tokens, JWT introspection answers): RS256, PS256, ES256 or EdDSA; at start, a signing key of another algorithm is replaced by one of this' },
  dataDir: { toml: 'data_dir', env: 'KM_DATA_DIR', schema: z.string().min(1), default: '.data', describe: 'directory of the embedded PostgreSQL' },
  databaseUrl: { toml: 'database_url', env: 'DATABASE_URL', schema: postgresUrl, describe: 'external PostgreSQL; unset: embedded PostgreSQL under data_dir' },
  embeddedPostgresPort: { toml: 'embedded_postgres_port', env: 'KM_EMBEDDED_POSTGRES_PORT', schema: port.min(1), default: 54329, describe: 'loopback port of the embedded PostgreSQL' },
  databasePoolSize: { toml: 'database_pool_size', env: 'KM_DATABASE_POOL_SIZE', schema: z.coerce.number().int().min(1).max(200), default: 10, describe: 'PostgreSQL connections per instance' },
  databaseRequestTimeout: { toml: 'database_request_timeout', env: 'KM_DATABASE_REQUEST_TIMEOUT', schema: z.coerce.number().int().min(1).max(600), default: 5, describe: 'longest wait for a database connection and longest statement while serving, seconds; past it the request answers 503' },
  defaultAudience: { toml: 'default_audience', env: 'KM_DEFAULT_AUDIENCE', schema: absoluteHttpUrl, describe: 'audience (aud) of access tokens requested without a resource parameter; unset: the issuer' },
  accessTokenTtl: { toml: 'access_token_ttl', env: 'KM_ACCESS_TOKEN_TTL', schema: seconds, default: 3600, describe: 'access-token lifetime, seconds' },
  refreshTokenTtl: { toml: 'refresh_token_ttl', env: 'KM_REFRESH_TOKEN_TTL', schema: seconds, default: 86400, describe: 'refresh-token lifetime (absolute), seconds' },
  refreshTokenIdleTtl: { toml: 'refresh_token_idle_ttl', env: 'KM_REFRESH_TOKEN_IDLE_TTL', schema: seconds, describe: 'a refresh token unused for this long expires, seconds; unset: only the absolute lifetime applies' },
  authorizationCodeTtl: { toml: 'authorization_code_ttl', env: 'KM_AUTHORIZATION_CODE_TTL', schema: seconds.max(600), default: 60, describe: 'authorization-code lifetime, seconds' },
  clockSkew: { toml: 'clock_skew', env: 'KM_CLOCK_SKEW', schema: z.coerce.number().int().min(0).max(600), default: 30, describe: 'tolerated clock difference for timestamps presented to the server (assertions, DPoP), seconds' },
  samlMaxAssertionLifetime: { toml: 'saml_max_assertion_lifetime', env: 'KM_SAML_MAX_ASSERTION_LIFETIME', schema: seconds.max(86400), default: 600, describe: 'longest validity window accepted for a SAML bearer assertion, seconds' },
  introspectionCacheMaxAge: { toml: 'introspection_cache_max_age', env: 'KM_INTROSPECTION_CACHE_MAX_AGE', schema: z.coerce.number().int().min(0).max(86400), default: 60, describe: 'longest time a gateway may cache an active introspection answer (Cache-Control max-age, never past the token\'s expiry), seconds; 0 = no-store' },
  revocationFeedHeartbeat: { toml: 'revocation_feed_heartbeat', env: 'KM_REVOCATION_FEED_HEARTBEAT', schema: z.coerce.number().int().min(1).max(300), default: 15, describe: 'seconds between keep-alive comments on idle /revocations streams' },
  auditRetentionDays: { toml: 'audit_retention_days', env: 'KM_AUDIT_RETENTION_DAYS', schema: z.coerce.number().int().min(0).max(36500), default: 365, describe: 'audit events older than this are deleted by the purge job and keymgr purge, days; 0 keeps them forever' },
  maxBodyBytes: { toml: 'max_body_bytes', env: 'KM_MAX_BODY_BYTES', schema: z.coerce.number().int().min(1024).max(56 * 1024), default: 56 * 1024, describe: 'largest accepted request body, bytes (at most 57344, the protocol engine\'s own limit)' },
  requestTimeout: { toml: 'request_timeout', env: 'KM_REQUEST_TIMEOUT', schema: z.coerce.number().int().min(1).max(300), default: 30, describe: 'longest time a client may take to send a whole request (headers and body), seconds; a slower one gets 408 and its connection closed' },
  keepAliveTimeout: { toml: 'keep_alive_timeout', env: 'KM_KEEP_ALIVE_TIMEOUT', schema: z.coerce.number().int().min(1).max(3600), default: 5, describe: 'how long an idle keep-alive connection stays open, seconds; behind a load balancer, longer than its idle timeout' },
  maxConnections: { toml: 'max_connections', env: 'KM_MAX_CONNECTIONS', schema: z.coerce.number().int().min(16).max(1_000_000), default: 8192, describe: 'connections open at once on each listener; further ones are closed as they arrive' },
  purgeInterval: { toml: 'purge_interval', env: 'KM_PURGE_INTERVAL', schema: seconds, default: 3600, describe: 'how often expired rows are deleted, seconds' },
  passwordHashMemoryKib: { toml: 'password_hash_memory_kib', env: 'KM_PASSWORD_HASH_MEMORY_KIB', schema: z.coerce.number().int().min(8192).max(4 * 1024 * 1024), default: 19456, describe: 'argon2id memory cost for user passwords, KiB (OWASP: 19456)' },
  passwordHashIterations: { toml: 'password_hash_iterations', env: 'KM_PASSWORD_HASH_ITERATIONS', schema: z.coerce.number().int().min(1).max(100), default: 2, describe: 'argon2id time cost (OWASP: 2)' },
  passwordHashParallelism: { toml: 'password_hash_parallelism', env: 'KM_PASSWORD_HASH_PARALLELISM', schema: z.coerce.number().int().min(1).max(16), default: 1, describe: 'argon2id parallelism (OWASP: 1)' },
  lockoutMaxFailures: { toml: 'lockout_max_failures', env: 'KM_LOCKOUT_MAX_FAILURES', schema: z.coerce.number().int().min(1).max(1000), default: 5, describe: 'failed password attempts on one account within the window before it is locked' },
  lockoutMaxFailuresPerAddress: { toml: 'lockout_max_failures_per_address', env: 'KM_LOCKOUT_MAX_FAILURES_PER_ADDRESS', schema: z.coerce.number().int().min(1).max(100000), default: 20, describe: 'failed password attempts from one source address within the window before it is refused' },
  lockoutWindow: { toml: 'lockout_window', env: 'KM_LOCKOUT_WINDOW', schema: seconds.max(86400), default: 900, describe: 'window over which failed attempts count, and how long a lock lasts, seconds' },
  managementAuth: { toml: 'management.auth', env: 'KM_MANAGEMENT_AUTH', schema: z.enum(['jwt', 'basic']), default: 'jwt', describe: 'management API authentication: jwt (GET /management/login gives a bearer token) or basic (credentials on every request)' },
  managementTokenExpiry: { toml: 'management.token.expiry', env: 'KM_MANAGEMENT_TOKEN_EXPIRY', schema: seconds.max(86400), default: 3600, describe: 'lifetime of a management token, seconds' },
  managementTokenKeySize: { toml: 'management.token.key_size', env: 'KM_MANAGEMENT_TOKEN_KEY_SIZE', schema: z.coerce.number().int().min(2048).max(8192).refine((n) => n % 1024 === 0, 'a multiple of 1024'), default: 2048, describe: 'RSA key size of the management token signing key, bits (at least 2048)' },
  managementTokenStoreMaxSize: { toml: 'management.token_store.max_size', env: 'KM_MANAGEMENT_TOKEN_STORE_MAX_SIZE', schema: z.coerce.number().int().min(1).max(100000), default: 200, describe: 'management tokens live at once, across all instances' },
  managementTokenStoreCleanupInterval: { toml: 'management.token_store.cleanup_interval', env: 'KM_MANAGEMENT_TOKEN_STORE_CLEANUP_INTERVAL', schema: seconds, default: 600, describe: 'how often expired and revoked management tokens are deleted, seconds' },
  managementTokenStoreRemoveOldest: { toml: 'management.token_store.remove_oldest_on_overflow', env: 'KM_MANAGEMENT_TOKEN_STORE_REMOVE_OLDEST_ON_OVERFLOW', schema: onOff, default: true, describe: 'a login into a full store evicts the least recently used token (off: the login is refused)' },
  managementMetricsAuth: { toml: 'management.metrics_auth', env: 'KM_MANAGEMENT_METRICS_AUTH', schema: onOff, default: false, describe: 'GET /metrics on the management listener asks for the management API credentials (any role); off: open to whoever reaches the listener' },
  managementUsers: { toml: 'management.users', schema: z.array(managementUser), default: [], describe: 'the management user store: [[management.users]] entries' },
  shutdownDelay: { toml: 'shutdown_delay', env: 'KM_SHUTDOWN_DELAY', schema: z.coerce.number().int().min(0).max(300), default: 0, describe: 'on SIGTERM, seconds during which /readyz answers 503 while requests are still accepted, so that a load balancer stops sending them' },
  shutdownTimeout: { toml: 'shutdown_timeout', env: 'KM_SHUTDOWN_TIMEOUT', schema: z.coerce.number().int().min(1).max(3600), default: 30, describe: 'on SIGTERM, longest wait for the requests in flight to finish, seconds; their connections are closed after it' },
  workers: { toml: 'workers', env: 'KM_WORKERS', schema: z.coerce.number().int().min(1).max(64), describe: 'processes serving requests on the same ports (node:cluster); unset: 1 in development, the number of available cores in production' },
  logLevel: { toml: 'log_level', env: 'KM_LOG_LEVEL', schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), default: 'info', describe: 'log level' },
} satisfies Record<string, Setting>;

type Settings = typeof SETTINGS;
type ValueOf<K extends keyof Settings> = Settings[K] extends { default: unknown }
  ? z.output<Settings[K]['schema']>
  : z.output<Settings[K]['schema']> | undefined;

export type Config = Readonly<{ [K in keyof Settings]: ValueOf<K> }>;

export class ConfigError extends Error {}

interface Sources {
  env?: NodeJS.ProcessEnv;
  /** Overrides applied last; used by tests that start several instances in one process. */
  overrides?: Partial<{ [K in keyof Settings]: unknown }>;
  /** What relative paths (KM_CONFIG included) are relative to; unset: the project root, or else the working directory. */
  root?: string;
}

export function loadConfig({ env = process.env, overrides = {}, root = findProjectRoot(process.cwd()) ?? process.cwd() }: Sources = {}): Config {
  // keymanager.toml is looked for only when reading the real environment: a caller that
  // passes its own (tests, the bench) gets exactly what it passed.
  const tomlPath = env.KM_CONFIG ?? (env === process.env && existsSync(resolve(root, 'keymanager.toml')) ? 'keymanager.toml' : undefined);
  const fromFile = tomlPath ? readTomlFile(root, tomlPath) : {};
  const knownTomlKeys = new Set(Object.values(SETTINGS).map((s) => s.toml));
  for (const key of Object.keys(fromFile)) {
    if (!knownTomlKeys.has(key)) throw new ConfigError(`config: unknown key "${key}" in ${tomlPath}`);
  }

  const out: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  for (const [name, setting] of Object.entries(SETTINGS) as [keyof Settings, Setting][]) {
    let raw: unknown = setting.default;
    let source = 'default';
    if (fromFile[setting.toml] !== undefined) {
      raw = fromFile[setting.toml];
      source = `${tomlPath}: ${setting.toml}`;
    }
    const fromEnv = setting.env ? env[setting.env] : undefined;
    if (fromEnv !== undefined && fromEnv !== '') {
      raw = fromEnv;
      source = setting.env!;
    }
    if (overrides[name] !== undefined) {
      raw = overrides[name];
      source = `override ${name}`;
    }
    sources[name] = source;
    if (raw === undefined) continue;
    const parsed = setting.schema.safeParse(raw);
    if (!parsed.success) {
      const why = parsed.error.issues[0] ? describeIssue(parsed.error.issues[0]) : 'invalid value';
      // Not the management users: their entries may hold passwords.
      const got = name === 'managementUsers' ? '' : ` (got ${JSON.stringify(raw)})`;
      throw new ConfigError(`config: ${source}: ${why}${got}`);
    }
    out[name] = parsed.data;
  }
  resolvePaths(out, root);
  if (sources.issuer === 'default') {
    out.issuer = listenerOrigin(out as Config);
    noteDerivedIssuer(out);
  }
  const config = out as Config;
  checkSafety(config);
  return Object.freeze(config);
}

function readTomlFile(root: string, path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(resolve(root, path), 'utf8');
  } catch {
    throw new ConfigError(`config: KM_CONFIG: cannot read ${path}`);
  }
  try {
    return flattenTables(parseToml(text) as Record<string, unknown>);
  } catch (err) {
    throw new ConfigError(`config: ${path}: not valid TOML (${(err as Error).message.split('\n')[0]})`);
  }
}

/** Tables become dotted keys (`[management.token] expiry` is `management.token.expiry`); arrays of tables stay whole. */
function flattenTables(table: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(table)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date)) Object.assign(out, flattenTables(value as Record<string, unknown>, path));
    else out[path] = value;
  }
  return out;
}

// Production mode refuses settings that are only acceptable on a developer's machine.
function checkSafety(config: Config): void {
  if (config.trustProxy && config.trustedProxies.length === 0) {
    // Believing X-Forwarded-For from anyone would let every caller choose its own address.
    throw new ConfigError('config: KM_TRUST_PROXY: trust_proxy needs trusted_proxies (KM_TRUSTED_PROXIES), the addresses of your proxies');
  }
  if (config.env !== 'production') return;
  if (new URL(config.issuer).protocol !== 'https:') {
    throw new ConfigError('config: KM_ISSUER: production requires an https issuer');
  }
  if (!config.databaseUrl) {
    throw new ConfigError('config: DATABASE_URL: production requires an external PostgreSQL (the embedded one is for development)');
  }
  const plain = config.managementUsers.find((u) => u.password !== undefined);
  if (plain) {
    throw new ConfigError(`config: management.users: "${plain.username}" has a plain password; production needs password_hash, password_file or password_env`);
  }
}

/** The audience (aud) of access tokens requested without a resource parameter. */
export function tokenAudience(config: Pick<Config, 'defaultAudience' | 'issuer'>): string {
  return config.defaultAudience ?? config.issuer;
}

/** How many worker processes serve requests: the setting, or 1 in development and every core in production. */
export function workerCount(config: Pick<Config, 'workers' | 'env'>): number {
  return config.workers ?? (config.env === 'production' ? availableParallelism() : 1);
}
