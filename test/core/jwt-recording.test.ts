// JWT access tokens are recorded as part of being created, whatever led there: every access
// token the server hands out introspects active and can be revoked, its row is in the tokens
// table before the response arrives, and when the row cannot be written no token is handed
// out (README "Security notes"), on every grant. The engine is reached only through the
// documented paths, spelled exactly: a case or trailing-slash variant of an endpoint is a 404
// and issues nothing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader, getJson, postForm, rawRequest, type Reply, UNAVAILABLE } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient } from '../support/fixtures.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { GRANTS, setUpEveryGrant, type EveryGrant, type TokenRequest } from '../support/every-grant.ts';
import { removeTempDirs } from '../saml/support.ts';
import { waitFor } from '../support/wait.ts';


/** README "Security notes": a token row is found by the hex SHA-256 of the whole token string. */
const digest = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

/** A part of a JWT, read without the server's help. */
const partOf = (jwt: string, part: 0 | 1) => JSON.parse(Buffer.from(jwt.split('.')[part]!, 'base64url').toString('utf8'));
const claimsOf = (jwt: string) => partOf(jwt, 1) as { exp: number; client_id: string; sub: string; scope?: string };

describe('JWT access tokens are recorded wherever they are issued', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let server: TestServer;
  let jwtClient: TestClient;
  let userClient: TestClient;
  let every: EveryGrant;

  before(async () => {
    database = await createTestDatabase();
    const target = new URL(database.url);
    proxy = await startTcpProxy(target.hostname, Number(target.port));
    server = await startTestServer(viaProxy(database.url, proxy));
    every = await setUpEveryGrant(server, database.db, 'jwt-recording', 'jwt');
    jwtClient = await makeClient(database.db, { scope: ['read'], tokenFormat: 'jwt' });
    await makeScope(database.db, 'profile');
    userClient = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['profile'], tokenFormat: 'jwt' });
  });
  after(async () => {
    await server?.stop();
    await proxy?.close();
    await database?.drop();
    removeTempDirs();
  });

  const jwtRows = async () => Number((await sql<{ n: string }>`select count(*) as n from tokens where format = 'jwt'`.execute(database.db)).rows[0]!.n);

  for (const grant of GRANTS) {
    it(`${grant}: the JWT handed out is in the tokens table, by its digest, when the response arrives`, async () => {
      const res = await every.send(await every.prepare(grant));
      assert.equal(res.status, 200, res.text);
      const token = res.json.access_token as string;
      // README "JWT access tokens": typ at+jwt, for the user on a user's grant.
      assert.equal(partOf(token, 0).typ, 'at+jwt');
      assert.equal(claimsOf(token).sub, grant === 'client_credentials' ? every.client.id : every.user.id);
      assert.equal(claimsOf(token).scope, 'read');
      // Read at once, with no wait: the row is committed before the response leaves.
      const row = await database.db.selectFrom('tokens').select(['kind', 'format', 'client_id', 'expires_at', 'revoked_at'])
        .where('id_sha256', '=', digest(token)).executeTakeFirst();
      assert.ok(row, 'the JWT is recorded');
      assert.deepEqual(row, {
        kind: grant === 'client_credentials' ? 'ClientCredentials' : 'AccessToken',
        format: 'jwt', client_id: every.client.id, expires_at: new Date(claimsOf(token).exp * 1000), revoked_at: null,
      });
    });
  }

  describe('a record that cannot be written', () => {
    // The database ends the session of the very statement that writes a JWT row: the server
    // loses its connection at that step, and at no other.
    before(async () => {
      await sql`create function end_session_at_jwt_row() returns trigger language plpgsql as $$
        begin perform pg_terminate_backend(pg_backend_pid()); return new; end $$`.execute(database.db);
    });
    after(async () => {
      await sql`drop function end_session_at_jwt_row cascade`.execute(database.db);
    });

    /** Sends the request while every JWT row the server writes ends its database session. */
    async function whileJwtRowsFail(request: TokenRequest): Promise<Reply> {
      await sql`create trigger end_session_at_jwt_row before insert on tokens for each row when (new.format = 'jwt')
        execute function end_session_at_jwt_row()`.execute(database.db);
      try {
        return await every.send(request);
      } finally {
        await sql`drop trigger end_session_at_jwt_row on tokens`.execute(database.db);
      }
    }

    for (const grant of GRANTS) {
      it(`${grant}: 503 temporarily_unavailable, and no token is handed out`, async () => {
        const request = await every.prepare(grant);
        const before = await jwtRows();
        const res = await whileJwtRowsFail(request);
        assert.equal(res.status, 503, res.text);
        assert.deepEqual(res.json, UNAVAILABLE);
        assert.equal(await jwtRows(), before);
        if (grant === 'refresh_token') {
          // The rotation is one statement: it did not happen, so the presented token still works.
          const again = await every.send(request);
          assert.equal(again.status, 200, again.text);
        }
      });
    }
  });

  it('while the database is unreachable: 503 temporarily_unavailable on every grant, and nothing is issued', async () => {
    const requests = [];
    for (const grant of GRANTS) requests.push(await every.prepare(grant));
    const before = await jwtRows();
    await proxy.cut();
    const answers: [string, number, unknown][] = [];
    try {
      for (const request of requests) {
        const res = await every.send(request);
        answers.push([request.grant, res.status, res.json]);
      }
    } finally {
      await proxy.restore();
    }
    assert.deepEqual(answers, requests.map((r) => [r.grant, 503, UNAVAILABLE]));
    await waitFor('/readyz to come back', async () => (await getJson(`${server.url}/readyz`)).status === 200);
    assert.equal(await jwtRows(), before);
  });

  const introspect = (token: string, client: TestClient) => postForm(`${server.url}/introspect`, { token }, { basic: client.basic });
  const form = 'grant_type=client_credentials&scope=read';

  for (const path of ['/TOKEN', '/Token', '/token/', '/token//', '/%74oken', '/./token', '/token;x', '//token']) {
    it(`POST ${path} reaches no endpoint: 404, and no token is issued`, async () => {
      const before = await database.db.selectFrom('tokens').select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
      const res = await rawRequest(server.url, { method: 'POST', target: path, body: form, headers: {
        'content-type': 'application/x-www-form-urlencoded', authorization: basicHeader(...jwtClient.basic),
      } });
      assert.equal(res.status, 404, res.text);
      assert.deepEqual(JSON.parse(res.text), { error: 'invalid_request', error_description: 'no such endpoint' });
      const after = await database.db.selectFrom('tokens').select((e) => e.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
      assert.equal(after.n, before.n);
    });
  }

  for (const [method, path] of [['POST', '/INTROSPECT'], ['POST', '/introspect/'], ['POST', '/Revoke'], ['GET', '/JWKS'], ['GET', '/jwks/'], ['GET', '/Authorize'], ['GET', '/authorize/'], ['GET', '/.well-known/OPENID-configuration']] as const) {
    it(`${method} ${path} is not an endpoint (404)`, async () => {
      const res = await rawRequest(server.url, { method, target: path, body: method === 'POST' ? 'token=x' : undefined,
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicHeader(...jwtClient.basic) } });
      assert.equal(res.status, 404, res.text);
    });
  }

  it('the client-credentials JWT from /token is recorded: active, then revoked', async () => {
    const res = await postForm(`${server.url}/token`, form, { basic: jwtClient.basic });
    assert.equal(res.status, 200);
    assert.equal(res.json.access_token.split('.').length, 3);
    assert.equal((await introspect(res.json.access_token, jwtClient)).json.active, true);
    assert.equal((await postForm(`${server.url}/revoke`, { token: res.json.access_token }, { basic: jwtClient.basic })).status, 200);
    assert.deepEqual((await introspect(res.json.access_token, jwtClient)).json, { active: false });
  });

  it('JWTs of the password grant and of a refresh are recorded too', async () => {
    const user = await makeUser(database.db, 'lena');
    const first = await postForm(`${server.url}/token`, { grant_type: 'password', username: 'lena', password: user.password, scope: 'profile' }, { basic: userClient.basic });
    assert.equal(first.status, 200, first.text);
    const refreshed = await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: first.json.refresh_token }, { basic: userClient.basic });
    assert.equal(refreshed.status, 200, refreshed.text);
    for (const token of [first.json.access_token, refreshed.json.access_token]) {
      assert.equal(token.split('.').length, 3);
      const seen = await introspect(token, userClient);
      assert.equal(seen.json.active, true);
      assert.equal(seen.json.username, 'lena');
    }
  });
});
