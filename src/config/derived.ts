// Settings whose value depends on where the project is, or on other settings.
import { resolve } from 'node:path';
import { ConfigError, type Config, type ManagementUserEntry } from './index.ts';

/**
 * Relative paths mean the same whichever directory of the project the server or keymgr is
 * started from (src/config/project-root.ts).
 */
export function resolvePaths(out: Record<string, unknown>, root: string): void {
  for (const name of ['dataDir', 'keysDir', 'tlsCertFile', 'tlsKeyFile', 'clientCaFile'] as const) {
    if (typeof out[name] === 'string') out[name] = resolve(root, out[name]);
  }
  out.managementUsers = (out.managementUsers as ManagementUserEntry[])
    .map((u) => (u.password_file ? { ...u, password_file: resolve(root, u.password_file) } : u));
}

const derivedIssuers = new WeakSet<object>();

export function noteDerivedIssuer(config: object): void {
  derivedIssuers.add(config);
}

/** Whether the issuer was left unset and so follows the public listener (tls, host, port). */
export function issuerFollowsListener(config: Config): boolean {
  return derivedIssuers.has(config);
}

/** Where this machine reaches the public listener: KM_PORT=8443 alone moves the metadata with it. */
export function listenerOrigin({ tls, host, port }: Pick<Config, 'tls' | 'host' | 'port'>): string {
  if (port === 0) throw new ConfigError('config: KM_ISSUER: with port 0 (any free port) the issuer cannot follow the port; set KM_ISSUER');
  // A wildcard address is reached as localhost, the name of the development certificate.
  const name = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  const origin = URL.parse(`${tls ? 'https' : 'http'}://${name}:${port}`)?.origin;
  if (!origin || origin === 'null') throw new ConfigError(`config: KM_HOST: "${host}" does not make an issuer URL; set KM_ISSUER`);
  return origin;
}
