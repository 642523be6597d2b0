// Recently introspected access tokens, held while this instance listens for changes, so that
// a gateway asking again about a token costs no statement. Only rows that were active when
// read are kept, by the digest of the token (never the value), until the token expires or a
// minute passes. Whatever could end a token early drops the whole cache at once: a revocation
// (the revocation_events trigger announces every revoked or deleted access token, including
// those of a user or client disabled or deleted), any change to clients (0011), an access
// token's row changed or the table truncated, and a user disabled or deleted (0012). While
// the listener is down the cache is not used at all.
import type { Db } from '../db/database.ts';
import { noticeDroppedCache, type ChangeListener } from '../db/notifications.ts';
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
  const find = noticeDroppedCache<IssuedTokenRow>(changes, {
    topics: TOPICS,
    max: MAX_ENTRIES,
    read: (value) => findIssuedTokenByValue(db, value),
    keepFor: (row) => (CACHED_KINDS.has(row.kind) && isTokenActive(row) ? Math.min(MAX_AGE_MS, row.expires_at!.getTime() - Date.now()) : undefined),
  });
  // Keyed by the digest: the cache never holds a token value.
  return { find: (value) => find(value, tokenDigest(value)) };
}
