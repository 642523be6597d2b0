// The address a request comes from, for brute-force counting per address. Behind proxies, each
// proxy appends the address it received the request from to X-Forwarded-For; everything to the
// left of what our own proxies wrote is the caller's to choose. So the client is the right-most
// entry that is not one of our proxies, and the header counts only when the TCP peer itself is
// one of them.
import { BlockList, isIP } from 'node:net';
import { LRUCache } from 'lru-cache';

/**
 * Addresses normalized before (every request normalizes its peer's), bounded in number and,
 * since X-Forwarded-For hops are the caller's text, kept only when as short as an address.
 */
const normalizedBefore = new LRUCache<string, string>({ max: 1024 });
const NORMALIZED_KEPT_MAX_LENGTH = 64;

export function normalizeAddress(address: string | undefined): string {
  const raw = address ?? '';
  let normalized = normalizedBefore.get(raw);
  if (normalized === undefined) {
    normalized = normalizeOnce(raw);
    if (raw.length <= NORMALIZED_KEPT_MAX_LENGTH) normalizedBefore.set(raw, normalized);
  }
  return normalized;
}

function normalizeOnce(address: string): string {
  const bare = address
    // Some proxies write the client's port too: `198.51.100.7:4711`, `[2001:db8::1]:4711`.
    .replace(/^(\d+\.\d+\.\d+\.\d+):\d+$/, '$1')
    .replace(/^\[([0-9A-Fa-f:.]+)\](?::\d+)?$/, '$1');
  return bare.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
}

export function clientAddress(peer: string | undefined, forwardedFor: string | undefined, trustedProxies: ReadonlySet<string>): string {
  let address = normalizeAddress(peer);
  if (!trustedProxies.has(address) || !forwardedFor) return address;
  const hops = forwardedFor.split(',').map((h) => normalizeAddress(h.trim()));
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    // Not an address: not something our proxy wrote. Count the request against the last
    // address we can vouch for rather than a string the caller could vary at will.
    if (isIP(hop) === 0) return address;
    address = hop;
    if (!trustedProxies.has(hop)) return hop;
  }
  return address;
}

/** Loopback in every spelling an address can have (`::1`, `0:0:0:0:0:0:0:1`, `::ffff:127.0.0.1`, 127/8). */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** Whether a host (an address, bracketed or not, or a name) is this machine: `localhost` or a loopback address. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  if (bare.toLowerCase() === 'localhost') return true;
  const family = isIP(bare);
  return family !== 0 && LOOPBACK.check(bare, family === 4 ? 'ipv4' : 'ipv6');
}
