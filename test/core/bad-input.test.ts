// Bad requests at /token (RFC 6749 §5.2): the right error and status, never a 500, and
// nothing stored changes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader, postForm, type Reply } from '../support/http.ts';
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';

describe('bad input at the token endpoint', () => {
  let database: TestDatabase;
  let server: TestServer;
  let client: TestClient;
  let snapshotBefore: string;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    client = await makeClient(database.db, { scope: ['read'] });
    await issueToken(server.url, client);
    snapshotBefore = await database.dumpAllTables();
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const token = (body: Record<string, string> | string, opts: Parameters<typeof postForm>[2] = { basic: client.basic }) =>
    postForm(`${server.url}/token`, body, opts);

  function assertError(res: Reply, status: number, error: string) {
    assert.equal(res.status, status, res.text);
    assert.equal(res.json?.error, error, res.text);
    assert.equal(typeof res.json.error_description === 'string' || res.json.error_description === undefined, true);
    assert.doesNotMatch(res.text, /at .*\.(ts|js):\d+/, 'no stack trace');
  }

  it('missing grant_type → 400 invalid_request', async () => {
    assertError(await token({ scope: 'read' }), 400, 'invalid_request');
  });

  it('unknown grant_type → 400 unsupported_grant_type', async () => {
    assertError(await token({ grant_type: 'urn:example:nope' }), 400, 'unsupported_grant_type');
    assertError(await token({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: 'x' }), 400, 'unsupported_grant_type');
  });

  it('unknown client → 401 invalid_client with WWW-Authenticate', async () => {
    const res = await token({ grant_type: 'client_credentials' }, { basic: ['no-such-client', 'secret'] });
    assertError(res, 401, 'invalid_client');
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
  });

  it('wrong secret → 401 invalid_client with WWW-Authenticate, same answer as unknown client', async () => {
    const res = await token({ grant_type: 'client_credentials' }, { basic: [client.id, `${client.secret}x`] });
    assertError(res, 401, 'invalid_client');
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
    const unknown = await token({ grant_type: 'client_credentials' }, { basic: ['no-such-client', 'secret'] });
    assert.deepEqual(res.json, unknown.json);
  });

  it('wrong secret sent in the body → 401 invalid_client', async () => {
    assertError(await token({ grant_type: 'client_credentials', client_id: client.id, client_secret: 'nope' }, {}), 401, 'invalid_client');
  });

  it('no client authentication at all → invalid_request or invalid_client, never a token', async () => {
    const res = await token({ grant_type: 'client_credentials' }, {});
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_request');
  });

  for (const [name, header] of [
    ['not base64', 'Basic ***'],
    ['no colon', `Basic ${Buffer.from('just-an-id').toString('base64')}`],
    ['empty', 'Basic '],
    ['another scheme', 'Bearer abc'],
    ['bad percent-encoding', `Basic ${Buffer.from('%zz:%zz').toString('base64')}`],
  ] as const) {
    it(`malformed Basic header (${name}) → 401 invalid_client with WWW-Authenticate`, async () => {
      const res = await token({ grant_type: 'client_credentials' }, { headers: { authorization: header } });
      assertError(res, 401, 'invalid_client');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic /);
    });
  }

  it('Basic and client_secret in the body together → 400 invalid_request', async () => {
    const res = await token({ grant_type: 'client_credentials', client_secret: client.secret }, { headers: { authorization: basicHeader(client.id, client.secret) } });
    assertError(res, 400, 'invalid_request');
  });

  it('a body that is not application/x-www-form-urlencoded → 400 invalid_request', async () => {
    const res = await token(JSON.stringify({ grant_type: 'client_credentials' }), { basic: client.basic, headers: { 'content-type': 'application/json' } });
    assertError(res, 400, 'invalid_request');
    const text = await token('grant_type=client_credentials', { basic: client.basic, headers: { 'content-type': 'text/plain' } });
    assertError(text, 400, 'invalid_request');
  });

  it('an oversized body → 413 invalid_request', async () => {
    const big = `grant_type=client_credentials&scope=${'a'.repeat(60 * 1024)}`;
    assertError(await token(big), 413, 'invalid_request');
  });

  it('an oversized body sent chunked (no Content-Length) is refused too', async () => {
    const chunks = async function* () {
      for (let i = 0; i < 80; i++) yield Buffer.alloc(1024, 'a');
    };
    const res = await fetch(`${server.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicHeader(...client.basic) },
      body: Readable.toWeb(Readable.from(chunks())),
      duplex: 'half',
    } as RequestInit);
    assert.equal(res.status >= 400 && res.status < 500, true, `status ${res.status}`);
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
  });

  it('a scope the client may not have → 400 invalid_scope', async () => {
    assertError(await token({ grant_type: 'client_credentials', scope: 'admin' }), 400, 'invalid_scope');
  });

  it('a duplicated parameter → 400 invalid_request', async () => {
    assertError(await token('grant_type=client_credentials&scope=read&scope=read'), 400, 'invalid_request');
    assertError(await token('grant_type=client_credentials&grant_type=client_credentials'), 400, 'invalid_request');
  });

  it('a resource other than this server → 400 invalid_target (RFC 8707)', async () => {
    assertError(await token({ grant_type: 'client_credentials', resource: 'https://elsewhere.example/' }), 400, 'invalid_target');
  });

  it('GET on the token endpoint → 405 with Allow: POST', async () => {
    const res = await fetch(`${server.url}/token?grant_type=client_credentials`);
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'POST');
  });

  it('a disabled client → 401 invalid_client', async () => {
    const disabled = await makeClient(database.db, { scope: ['read'] });
    await database.db.updateTable('clients').set({ disabled: true }).where('client_id', '=', disabled.id).execute();
    assertError(await token({ grant_type: 'client_credentials' }, { basic: disabled.basic }), 401, 'invalid_client');
    await database.db.deleteFrom('clients').where('client_id', '=', disabled.id).execute();
  });

  it('left the database exactly as it was: every request above was refused', async () => {
    assert.equal(await database.dumpAllTables(), snapshotBefore);
  });
});
