// The scope registry as the token endpoint sees it: cached in memory while this instance
// listens for changes (so a client-credentials token costs no extra query), read straight
// from the database whenever it does not.
import type { Db } from '../db/database.ts';
import type { ChangeListener } from '../db/notifications.ts';
import { findScopes, listScopes, type RegisteredScope } from '../store/scopes.ts';
import { guardStorage } from './errors.ts';

export interface ScopeLookup {
  /**
   * The registered scopes among `names`, by name. The map may hold other scopes too (the
   * cached registry, handed out as it is: no copy per token request): look names up in it,
   * never list it, and never change it.
   */
  find(names: readonly string[]): Promise<ReadonlyMap<string, RegisteredScope>>;
  /**
   * As find, from the cache alone and at once: undefined unless every name is in a cache that
   * is good. A token request that finds its scopes there waits for nothing (find is async).
   */
  cached(names: readonly string[]): ReadonlyMap<string, RegisteredScope> | undefined;
  /** Every registered scope, by name. */
  all(): Promise<string[]>;
}

export function createScopeRegistry(db: Db, changes: ChangeListener | undefined): ScopeLookup {
  let cache: Map<string, RegisteredScope> | undefined;
  let cachedAt = -1;

  /** The cache, if it may be used: kept while this instance hears of every change since. */
  const goodCache = () => (cache && changes?.listening && cachedAt === changes.generation ? cache : undefined);

  /** The whole registry: the cache while it is good, a fresh read otherwise. */
  const registry = async (): Promise<Map<string, RegisteredScope>> => {
    const good = goodCache();
    if (good) return good;
    const generation = changes?.generation;
    const all = new Map((await guardStorage(() => listScopes(db))).map((s) => [s.name, s]));
    // Keep it only if nothing changed while it was being read.
    if (changes?.listening && generation === changes.generation) {
      cache = all;
      cachedAt = generation;
    }
    return all;
  };

  return {
    cached(names) {
      const good = goodCache();
      return good && names.every((n) => good.has(n)) ? good : undefined;
    },
    async find(names) {
      if (names.length === 0) return new Map();
      if (!changes?.listening) return guardStorage(() => findScopes(db, names));
      const cached = await registry();
      if (names.every((n) => cached.has(n))) return cached;
      // A name the cache lacks may have been registered a moment ago by another process (keymgr,
      // an admin script) whose notice is still on its way: the database decides before a refusal.
      return guardStorage(() => findScopes(db, names));
    },
    async all() {
      return [...(await registry()).keys()];
    },
  };
}
