// Clients and tokens for tests, made through the same store functions the CLI uses.
import assert from 'node:assert/strict';
import type { Db } from '../../src/db/database.ts';
import { createClient, type NewClient } from '../../src/store/clients.ts';
import { postForm } from './http.ts';

export interface TestClient {
  id: string;
  secret: string;
  basic: [string, string];
}

/** Registers the scopes (without role bindings) unless they exist. */
export async function ensureScopes(db: Db, names: string[]): Promise<void> {
  if (names.length === 0) return;
  await db.insertInto('scopes').values(names.map((name) => ({ name })))
    .onConflict((oc) => oc.column('name').doNothing()).execute();
}

export async function makeClient(db: Db, input: Partial<NewClient> = {}): Promise<TestClient> {
  await ensureScopes(db, input.scope ?? ['read', 'write']);
  const { client, clientSecret } = await createClient(db, {
    name: 'test client',
    grantTypes: ['client_credentials'],
    scope: ['read', 'write'],
    ...input,
  });
  return { id: client.client_id, secret: clientSecret ?? '', basic: [client.client_id, clientSecret ?? ''] };
}

export async function issueToken(baseUrl: string, client: TestClient, scope = 'read'): Promise<string> {
  const res = await postForm(`${baseUrl}/token`, { grant_type: 'client_credentials', scope }, { basic: client.basic });
  assert.equal(res.status, 200, res.text);
  return res.json.access_token as string;
}
