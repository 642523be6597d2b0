// The gateway side, as a small library: what an API gateway or resource server written for
// Node.js needs to use keymanager as its key manager. It introspects tokens, caches active
// answers for as long as the server's Cache-Control allows, follows GET /revocations and
// drops a revoked token from its cache the moment the event arrives. While the feed is not
// connected, nothing is cached (a revocation could go unseen), so every token is asked for.
//
//   import { createGatewayClient } from 'keymanager/src/gateway/client.ts';
//   const km = createGatewayClient({ issuer: 'https://km.example', credentials: { clientId, clientSecret } });
//   const answer = await km.introspect(token);   // { active: true, scope, client_id, exp, … } or { active: false }
import { createHash } from 'node:crypto';
import { createParser } from 'eventsource-parser';
import { LRUCache } from 'lru-cache';

export type GatewayCredentials =
  /** A client with introspect_any (client_secret_basic). */
  | { clientId: string; clientSecret: string }
  /** An access token with the introspect scope (client credentials, password grant, or `keymgr token issue`). */
  | { bearer: string };

export interface GatewayClientOptions {
  /** keymanager's base URL (its issuer): /introspect and /revocations are resolved against it. */
  issuer: string;
  credentials: GatewayCredentials;
  /** For custom TLS trust and the like; defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Most answers kept (least recently used go first). */
  maxEntries?: number;
  /** Told about feed disconnections and failed reconnections. */
  onFeedError?: (err: unknown) => void;
}

export type IntrospectionAnswer = { active: false } | ({ active: true; exp?: number } & Record<string, unknown>);

export class IntrospectionFailed extends Error {
  readonly status: number;
  readonly body: string;
  constructor(status: number, body: string) {
    super(`introspection failed with HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export interface GatewayClient {
  introspect(token: string): Promise<IntrospectionAnswer>;
  /** True while the revocation feed is connected (and answers are cached). */
  readonly following: boolean;
  /** Counters: answers fetched from the server, answers served from the cache, revocation events seen. */
  readonly stats: { fetched: number; cached: number; revocations: number };
  close(): void;
}

/** max-age of a Cache-Control value, or 0 when it says not to keep the answer. */
function maxAgeOf(cacheControl: string | null): number {
  if (!cacheControl || /(^|,)\s*(no-store|no-cache)\s*(,|$)/i.test(cacheControl)) return 0;
  const m = /(^|,)\s*max-age=(\d+)\s*(,|$)/i.exec(cacheControl);
  return m ? Number(m[2]) : 0;
}

const sha256 = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

export function createGatewayClient(options: GatewayClientOptions): GatewayClient {
  const doFetch = options.fetch ?? fetch;
  const base = options.issuer.replace(/\/$/, '');
  const authorization = 'bearer' in options.credentials
    ? `Bearer ${options.credentials.bearer}`
    : `Basic ${Buffer.from(`${encodeURIComponent(options.credentials.clientId)}:${encodeURIComponent(options.credentials.clientSecret)}`).toString('base64')}`;
  const cache = new LRUCache<string, { answer: IntrospectionAnswer }>({ max: options.maxEntries ?? 10_000, ttlAutopurge: false });
  const stats = { fetched: 0, cached: 0, revocations: 0 };
  let following = false;
  /** Bumped by every revocation and every disconnection: an answer fetched across one is not kept. */
  let epoch = 0;
  let closed = false;
  let lastEventId: string | undefined;
  let abort: AbortController | undefined;

  const unfollow = () => {
    following = false;
    epoch++;
    cache.clear();
  };

  const follow = async () => {
    let delay = 250;
    while (!closed) {
      abort = new AbortController();
      try {
        const res = await doFetch(`${base}/revocations`, {
          headers: { authorization, accept: 'text/event-stream', ...(lastEventId ? { 'last-event-id': lastEventId } : {}) },
          signal: abort.signal,
        });
        if (res.status !== 200 || !res.body) throw new IntrospectionFailed(res.status, await res.text());
        following = true;
        delay = 250;
        const parser = createParser({
          onEvent(event) {
            if (event.id !== undefined) lastEventId = event.id;
            if (event.event !== 'revocation') return;
            const { sha256: digest } = JSON.parse(event.data) as { sha256: string };
            epoch++;
            stats.revocations++;
            cache.delete(digest);
          },
        });
        const decoder = new TextDecoder();
        const reader = res.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          parser.feed(decoder.decode(value, { stream: true }));
        }
        throw new Error('the revocation feed ended');
      } catch (err) {
        unfollow();
        if (closed) return;
        options.onFeedError?.(err);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10_000);
      }
    }
  };
  void follow();

  return {
    async introspect(token) {
      const key = sha256(token);
      const hit = following ? cache.get(key) : undefined;
      if (hit) {
        stats.cached++;
        return hit.answer;
      }
      const startedAt = epoch;
      const res = await doFetch(`${base}/introspect`, {
        method: 'POST',
        headers: { authorization, accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }).toString(),
      });
      const text = await res.text();
      if (res.status !== 200) throw new IntrospectionFailed(res.status, text);
      stats.fetched++;
      const answer = JSON.parse(text) as IntrospectionAnswer;
      const maxAge = maxAgeOf(res.headers.get('cache-control'));
      // Only while following, and only if no revocation (or outage) came in meanwhile.
      if (answer.active && maxAge > 0 && following && epoch === startedAt) cache.set(key, { answer }, { ttl: maxAge * 1000 });
      return answer;
    },
    get following() {
      return following;
    },
    stats,
    close() {
      closed = true;
      abort?.abort();
      unfollow();
    },
  };
}
