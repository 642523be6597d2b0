// /management/signing-keys: the keys that sign JWT access tokens and ID tokens, as /jwks
// publishes them (never their private parts), and rotation. A rotation makes this instance
// sign with the new key before it answers; every other instance follows the notice it sends
// (src/store/signing-key-changes.ts) within moments, without a restart. The previous key stays
// published until everything it signed has expired. A rotation may name an algorithm
// (?algorithm=ES256) for a one-off switch; otherwise the new key has the configured
// signing_algorithm. Either way the new key's algorithm is what every instance signs with.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { signingAlgorithmSchema } from '../config/index.ts';
import { readSigningKeys, retirementDelaySeconds, rotateSigningKeys, type PublishedKey } from '../keys/signing-keys.ts';
import { changeSigningKeys } from '../store/signing-key-changes.ts';
import type { ManagementApi } from './api.ts';
import type { ManagementAuthDeps } from './auth.ts';
import { badRequest, notFound } from './errors.ts';
import { cursorAfter, pageOf, pageQuery, pageStart } from './paging.ts';

export const signingKeySchema = z.object({
  kid: z.string(),
  alg: z.string(),
  created_at: z.string(),
  retire_at: z.string().nullable(),
  signing: z.boolean(),
}).meta({ id: 'SigningKey' });

const rotated = z.object({ kid: z.string(), published: z.array(signingKeySchema) }).meta({ id: 'SigningKeyRotation' });

// A query parameter, not a JSON body: a declared body is required of every request
// (src/management/api.ts), and a bare POST, as rotations have always been sent, must keep working.
const rotateQuery = z.object({
  algorithm: signingAlgorithmSchema.optional().describe('algorithm of the new key; unset: the configured signing_algorithm'),
});

/** Newest first; a cursor is the position after the last key of the page (created_at, kid). */
const sortKey = (k: PublishedKey) => `${k.created_at} ${k.kid}`;

export function addSigningKeyRoutes(api: ManagementApi, router: Router, deps: ManagementAuthDeps): void {
  const { config, db } = deps;
  const published = () => readSigningKeys(config.keysDir).published.sort((a, b) => sortKey(b).localeCompare(sortKey(a)));

  api.add(router, {
    method: 'get', path: '/signing-keys', summary: 'List the published signing keys: the one that signs, and those kept until what they signed expires',
    query: pageQuery, responses: { 200: pageOf(signingKeySchema) },
    handler: async (_ctx, { query }) => {
      const after = pageStart(query.cursor);
      if (after !== undefined && !/^\S+ \S+$/.test(after)) throw badRequest('cursor: not a cursor of this list');
      const all = published();
      const rest = after === undefined ? all : all.filter((k) => sortKey(k) < after);
      const items = rest.slice(0, query.limit);
      return { items, next_cursor: rest.length > items.length ? cursorAfter(sortKey(items.at(-1)!)) : null, total: all.length };
    },
  });
  api.add(router, {
    method: 'get', path: '/signing-keys/:kid', summary: 'Show a published signing key', responses: { 200: signingKeySchema },
    handler: async (ctx: Context & { params: Record<string, string> }) => {
      const key = published().find((k) => k.kid === ctx.params.kid);
      if (!key) throw notFound(`no published signing key ${String(ctx.params.kid).replace(/[\0-\x1f]/g, '?').slice(0, 300)}`);
      return key;
    },
  });
  api.add(router, {
    method: 'post', path: '/signing-keys/rotate',
    summary: 'Add a new signing key (of the configured algorithm, or of ?algorithm=): it signs from now on, on every instance; the previous one stays published until what it signed has expired',
    query: rotateQuery, responses: { 201: rotated },
    handler: async (ctx, { query }) => {
      const retireAfter = retirementDelaySeconds(config.accessTokenTtl, config.clockSkew);
      const algorithm = query.algorithm ?? config.signingAlgorithm;
      const result = await changeSigningKeys(db, () => rotateSigningKeys(config.keysDir, retireAfter, algorithm));
      await deps.reloadSigningKeys();
      ctx.status = 201;
      ctx.set('Location', `/management/signing-keys/${result.kid}`);
      return result;
    },
  });
}
