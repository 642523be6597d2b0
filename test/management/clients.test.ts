// /management/clients: every route's success and error cases, each response checked against
// the served OpenAPI document.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TestDatabase } from '../support/database.ts';
import type { TestServer } from '../support/server.ts';
import { expectReply, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { ensureScopes } from '../support/fixtures.ts';
import { hashClientSecret } from '../../src/store/clients.ts';


describe('management API: clients', () => {
  let database: TestDatabase;
  let server: TestServer;
  let call: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let auditor: string;

  before(async () => {
    ({ database, server, call, conformance, admin, auditor } = await startManagementApi({}));
    await ensureScopes(database.db, ['read', 'write']);
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  /** A call whose answer must be the expected status and conform to the document. */
  const expect = expectReply(() => ({ call, conformance, admin }));

  let created: { client_id: string; client_secret: string };

  it('creates a client: 201, the secret once, stored only as a digest', async () => {
    const res = await expect(201, 'POST', '/management/clients', { body: { name: 'orders', scope: 'read write', grant_types: ['client_credentials'] } });
    created = res.json;
    assert.equal(res.headers.location, `/management/clients/${created.client_id}`);
    assert.equal(res.json.scope, 'read write');
    assert.deepEqual(res.json.grant_types, ['client_credentials']);
    assert.equal(typeof created.client_secret, 'string');
    const row = await database.db.selectFrom('clients').select('secret_sha256').where('client_id', '=', created.client_id).executeTakeFirstOrThrow();
    assert.equal(row.secret_sha256, hashClientSecret(created.client_secret));
    const shown = await expect(200, 'GET', `/management/clients/${created.client_id}`);
    assert.equal('client_secret' in shown.json, false, 'never shown again');
  });

  it('refuses bad bodies with the field at fault: 400, 415, 413', async () => {
    const bad = await expect(400, 'POST', '/management/clients', { body: { name: 'x', grant_types: ['implicit'] } });
    assert.match(bad.json.error_description, /^grant_types\.0: /);
    const unknownField = await expect(400, 'POST', '/management/clients', { body: { name: 'x', client_secret: 'mine' } });
    assert.match(unknownField.json.error_description, /client_secret/);
    const unregistered = await expect(400, 'POST', '/management/clients', { body: { name: 'x', scope: 'nope' } });
    assert.match(unregistered.json.error_description, /scope not registered: nope/);
    const notJson = await call('POST', '/management/clients', { authorization: admin });
    assert.equal(notJson.status, 415);
    conformance.check('POST', '/management/clients', 415, notJson.json);
    // Nested past any body of this API (an outside review: 30,000 levels exhausted the stack of
    // the NUL check, 500 on every write route).
    for (const depth of [33, 30_000]) {
      const deep = await expect(400, 'POST', '/management/clients', { body: '['.repeat(depth) + ']'.repeat(depth) });
      assert.deepEqual(deep.json, { error: 'invalid_request', error_description: 'body: nested more than 32 levels deep' });
    }
    const nested = await expect(400, 'POST', '/management/clients', { body: `{"name": "x", "scope": ${'['.repeat(31)}${']'.repeat(31)}}` });
    assert.match(nested.json.error_description, /^scope: /, 'within the limit: judged by the schema');
    const huge = await expect(413, 'POST', '/management/clients', { body: { name: 'x'.repeat(70 * 1024) } });
    assert.equal(huge.json.error, 'invalid_request');
  });

  it('lists with a cursor and a total', async () => {
    for (let i = 0; i < 4; i++) await expect(201, 'POST', '/management/clients', { body: { name: `paged-${i}` } });
    const first = await expect(200, 'GET', '/management/clients?limit=2');
    assert.equal(first.json.total, 5);
    assert.equal(first.json.items.length, 2);
    const ids = first.json.items.map((c: { client_id: string }) => c.client_id);
    let cursor = first.json.next_cursor as string | null;
    while (cursor) {
      const next = await expect(200, 'GET', `/management/clients?limit=2&cursor=${cursor}`);
      ids.push(...next.json.items.map((c: { client_id: string }) => c.client_id));
      cursor = next.json.next_cursor;
    }
    assert.equal(ids.length, 5);
    assert.deepEqual(ids, [...ids].sort(), 'in client_id order');
    await expect(400, 'GET', '/management/clients?limit=0');
    // A cursor no list made: decodes to a NUL the database cannot compare.
    const forged = await expect(400, 'GET', `/management/clients?cursor=${Buffer.from('\0').toString('base64url')}`);
    assert.deepEqual(forged.json, { error: 'invalid_request', error_description: 'cursor: not a cursor of this list' });
  });

  it('updates a client; an empty change or an unknown client is refused', async () => {
    const res = await expect(200, 'PATCH', `/management/clients/${created.client_id}`, { body: { name: 'orders v2', scope: 'read', access_token_format: 'jwt' } });
    assert.equal(res.json.name, 'orders v2');
    assert.equal(res.json.scope, 'read');
    assert.equal(res.json.access_token_format, 'jwt');
    await expect(400, 'PATCH', `/management/clients/${created.client_id}`, { body: {} });
    await expect(400, 'PATCH', `/management/clients/${created.client_id}`, { body: { token_endpoint_auth_method: 'none' } });
    await expect(404, 'PATCH', '/management/clients/no-such-client', { body: { name: 'x' } });
  });

  it('rotates the secret (shown once); a public client has none to rotate (409)', async () => {
    const res = await expect(200, 'POST', `/management/clients/${created.client_id}/rotate-secret`);
    assert.notEqual(res.json.client_secret, created.client_secret);
    const pub = await expect(201, 'POST', '/management/clients', {
      body: { name: 'spa', grant_types: ['authorization_code'], redirect_uris: ['https://spa.example/cb'], token_endpoint_auth_method: 'none' },
    });
    assert.equal('client_secret' in pub.json, false);
    await expect(409, 'POST', `/management/clients/${pub.json.client_id}/rotate-secret`);
    await expect(404, 'POST', '/management/clients/no-such-client/rotate-secret');
  });

  it('disables and enables; deletes; unknown ids are 404', async () => {
    assert.deepEqual((await expect(200, 'POST', `/management/clients/${created.client_id}/disable`)).json, { client_id: created.client_id, disabled: true });
    assert.deepEqual((await expect(200, 'POST', `/management/clients/${created.client_id}/enable`)).json, { client_id: created.client_id, disabled: false });
    await expect(404, 'POST', '/management/clients/no-such-client/disable');
    await expect(404, 'POST', '/management/clients/no-such-client/enable');
    assert.deepEqual((await expect(200, 'DELETE', `/management/clients/${created.client_id}`)).json, { client_id: created.client_id, deleted: true });
    await expect(404, 'GET', `/management/clients/${created.client_id}`);
    await expect(404, 'DELETE', `/management/clients/${created.client_id}`);
  });

  it('an auditor reads, never writes, and never sees a secret', async () => {
    await expect(200, 'GET', '/management/clients', { authorization: auditor });
    const refused = await expect(403, 'POST', '/management/clients', { authorization: auditor, body: { name: 'x' } });
    assert.deepEqual(refused.json, { error: 'forbidden', error_description: 'the auditor role may only read' });
    await expect(401, 'GET', '/management/clients', { authorization: 'Bearer nope' });
  });

  it('refuses a redirect URI the protocol engine would refuse on every request, naming it (400)', async () => {
    const cases: [string, 'web' | 'native', string][] = [
      ['javascript:alert(1)', 'web', 'redirect URI "javascript:alert(1)" must be an http or https URI for a web application (--native for an app with its own scheme)'],
      ['data:text/html,hi', 'web', 'redirect URI "data:text/html,hi" must be an http or https URI for a web application (--native for an app with its own scheme)'],
      ['ftp://files.example/cb', 'web', 'redirect URI "ftp://files.example/cb" must be an http or https URI for a web application (--native for an app with its own scheme)'],
      ['https://user:pass@app.example/cb', 'web', 'redirect URI "https://user:pass@app.example/cb" must not contain a user name or password'],
      ['http://app.example/cb', 'native', 'redirect URI "http://app.example/cb" over http must name a loopback address (127.0.0.1, [::1] or localhost) for a native application'],
      ['https://127.0.0.1/cb', 'native', 'redirect URI "https://127.0.0.1/cb" must not name a loopback address over https for a native application (use http://127.0.0.1)'],
      ['javascript:alert(1)', 'native', 'redirect URI "javascript:alert(1)" must not use the javascript scheme'],
    ];
    for (const [uri, applicationType, description] of cases) {
      const res = await expect(400, 'POST', '/management/clients', {
        body: { name: 'cb', grant_types: ['authorization_code'], redirect_uris: [uri], application_type: applicationType },
      });
      assert.equal(res.json.error_description, description, `${applicationType} ${uri}`);
    }
    // What each kind of application does redirect to is taken.
    await expect(201, 'POST', '/management/clients', { body: { name: 'web', grant_types: ['authorization_code'], redirect_uris: ['http://127.0.0.1:8080/callback', 'https://app.example/cb'] } });
    await expect(201, 'POST', '/management/clients', {
      body: { name: 'app', grant_types: ['authorization_code'], redirect_uris: ['http://127.0.0.1/cb', 'com.example.app:/cb', 'https://app.example/cb'], application_type: 'native', token_endpoint_auth_method: 'none' },
    });
  });

  it('every documented operation was exercised above', () => {
    // Routes of clients.ts; revoke-tokens belongs to the tokens resource.
    assert.deepEqual(conformance.unexercised((op) => / \/management\/clients/.test(op) && !op.endsWith('/revoke-tokens')), []);
  });
});
