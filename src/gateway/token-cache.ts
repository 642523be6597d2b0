// Recently introspected access tokens, held while this instance listens for changes, so that
// a gateway asking again about a token costs no statement. Only rows that were active when
// read are kept, by the digest of the token (never the value), until the token expires or a
// minute passes. Whatever could end a token early drops the whole cache at once: a revocation
// (the revocation_events trigger announces every revoked or deleted access token, including
// those of a user or client disabled or deleted), any change to clients (0011), an access
// token's row changed or the table truncated, and a user disabled or deleted (0012). While
// the listener is down the cache is not used at all.
import { LRUCache } from 'lru-cache';
import type { Db } from '../db/database.ts';
import { dropOnNotices, type ChangeListener } from '../db/notifications.ts';
import { findIssuedTokenByValue, tokenDigest, type IssuedTokenRow } from '../store/tokens.ts';
import { isTokenActive } from './introspection.ts';

export interface TokenLookup {
  find(value: string): Promise<IssuedTokenRow | undefined>;
}

const MAX_ENTRIES = 100_000;
const MAX_AGE_MS = 60_000;
const CACHED_KINDS = new Set(['AccessToken', 'ClientCredentials']);
const TOPICS = new Set(['revocation_events', 'clients', 'tokens', 'users']);

export function createTokenCache(db: Db, changes: ChangeListener | undefined): TokenLookup {
  const cache = new LRUCache<string, IssuedTokenRow>({ max: MAX_ENTRIES, ttl: MAX_AGE_MS, ttlAutopurge: false });
  let generation = 0;
  dropOnNotices(changes, TOPICS, () => {
    generation++;
    cache.clear();
  });
  return {
    async find(value) {
      if (!changes?.listening) return findIssuedTokenByValue(db, value);
      const digest = tokenDigest(value);
      const hit = cache.get(digest);
      if (hit) return hit;
      const startedAt = generation;
      const row = await findIssuedTokenByValue(db, value);
      if (row && CACHED_KINDS.has(row.kind) && isTokenActive(row) && changes.listening && startedAt === generation) {
        cache.set(digest, row, { ttl: Math.max(1, Math.min(MAX_AGE_MS, row.expires_at!.getTime() - Date.now())) });
      }
      return row;
    },
  };
}
