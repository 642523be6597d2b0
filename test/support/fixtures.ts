// Clients and tokens for tests, made through the same store functions the CLI uses.
import assert from 'node:assert/strict';
import type { Db } from '../../src/db/database.ts';
import { createClient, type NewClient } from '../../src/store/clients.ts';
import { createUser } from '../../src/store/users.ts';
import { createScope } from '../../src/store/scopes.ts';
import { hashPassword } from '../../src/store/passwords.ts';
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

export interface TestUser {
  id: string;
  username: string;
  password: string;
}

/** A user with the given roles (created if missing), hashed with the given or OWASP parameters. */
export async function makeUser(
  db: Db,
  username: string,
  { password = `pw-${username}-correct horse`, roles = [] as string[], params = { memoryCost: 19456, timeCost: 2, parallelism: 1 } } = {},
): Promise<TestUser> {
  if (roles.length) {
    await db.insertInto('roles').values(roles.map((name) => ({ name }))).onConflict((oc) => oc.column('name').doNothing()).execute();
  }
  const user = await createUser(db, username, await hashPassword(password, params), roles);
  return { id: user.id, username: user.username, password };
}

/** Registers a scope bound to roles (roles created if missing). */
export async function makeScope(db: Db, name: string, roles: string[] = []): Promise<void> {
  if (roles.length) {
    await db.insertInto('roles').values(roles.map((r) => ({ name: r }))).onConflict((oc) => oc.column('name').doNothing()).execute();
  }
  await createScope(db, name, '', roles);
}
