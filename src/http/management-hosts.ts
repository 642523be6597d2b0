// Which Host names the management listener answers for. A web page can make an operator's
// browser send requests to the management listener under the page's own name, by resolving that
// name to 127.0.0.1 after the page has loaded (DNS rebinding). The browser then treats the
// answers as the page's own: over plain HTTP (tls = off), whatever the listener gives without
// credentials — /metrics above all — could be read by that page. An attacker's name is the one
// thing such a request cannot hide, so the listener answers only names it was told about: IP
// literals and `localhost` (which no attacker's DNS decides), and `management_hostnames`.
import { isIP } from 'node:net';
import { ManagementError } from '../management/errors.ts';
import { isLoopbackHost } from './client-address.ts';

export interface ManagementHostPolicy {
  /** The names allowed besides IP literals and localhost, lower case; undefined: any name. Set once bound (forBoundAddress). */
  names: ReadonlySet<string> | undefined;
}

/**
 * The policy for `management_hostnames` = `configured`: strict until the listener is bound
 * (see forBoundAddress), so that nothing is answered for any name before that is known.
 */
export function managementHostPolicy(configured: readonly string[]): ManagementHostPolicy {
  return { names: new Set(configured.map((name) => name.toLowerCase())) };
}

/**
 * Once the listener is bound, by the address it got (`127.1`, `2130706433` or a name from
 * /etc/hosts all bind to 127.0.0.1): on loopback (the default) the check stays on, since that
 * is where an operator's own browser can be turned against it. Bound elsewhere with no names
 * configured, any name passes, so that scrapers and probes that reach it by a DNS name keep
 * working; configuring names keeps the check on there too.
 */
export function forBoundAddress(policy: ManagementHostPolicy, boundAddress: string, configured: readonly string[]): void {
  if (configured.length === 0 && !isLoopbackHost(boundAddress)) policy.names = undefined;
}

/**
 * The host part of a Host header, in lower case, without its port or a final dot: an IPv6
 * literal only in brackets, and never with a zone (`%…`, which no browser sends); anything else
 * in brackets is no host (undefined).
 */
function hostName(header: string): string | undefined {
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(header);
  if (bracketed) return isIP(bracketed[1]!) === 6 && !bracketed[1]!.includes('%') ? bracketed[1]!.toLowerCase() : undefined;
  const name = header.replace(/:\d*$/, '').replace(/\.$/, '').toLowerCase();
  return isIP(name) === 6 ? undefined : name;
}

export function isAllowedHost(policy: ManagementHostPolicy, header: string | undefined): boolean {
  // HTTP/1.0 may send none; a browser always sends one.
  if (header === undefined || policy.names === undefined) return true;
  const name = hostName(header);
  if (name === undefined) return false;
  return isIP(name) !== 0 || name === 'localhost' || policy.names.has(name);
}

export const misdirected = () =>
  new ManagementError(421, 'misdirected_request', 'this listener does not answer for that host name (see management_hostnames)');
