// /management/idps: trusted SAML identity providers — add (certificates only), list with a
// cursor, show, enable/disable, remove; every response checked against the served OpenAPI document.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TestDatabase } from '../support/database.ts';
import type { TestServer } from '../support/server.ts';
import { expectReply, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { makeClient } from '../support/fixtures.ts';
import { makeEcKeyPair, makeKeyPair, removeTempDirs, type KeyPair } from '../saml/support.ts';

const ENTITY = 'https://idp.example.com/saml2/metadata';
const path = (entityId: string, suffix = '') => `/management/idps/${encodeURIComponent(entityId)}${suffix}`;

describe('management API: SAML identity providers', () => {
  let database: TestDatabase;
  let server: TestServer;
  let call: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let auditor: string;
  let rsa: KeyPair;
  let ec: KeyPair;
  let clientId: string;

  before(async () => {
    ({ database, server, call, conformance, admin, auditor } = await startManagementApi({}));
    rsa = makeKeyPair('idp-rsa');
    ec = makeEcKeyPair('idp-ec');
    clientId = (await makeClient(database.db)).id;
    await database.db.insertInto('roles').values({ name: 'employee' }).execute();
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
    removeTempDirs();
  });

  const expect = expectReply(() => ({ call, conformance, admin }));

  it('adds an identity provider: 201 with the `keymgr idp --json` fields and a Location', async () => {
    const res = await expect(201, 'POST', '/management/idps', {
      body: { entity_id: ENTITY, certificates: [rsa.cert, ec.cert], jit: true, default_roles: ['employee'], allowed_clients: [clientId] },
    });
    assert.equal(res.headers.location, path(ENTITY));
    assert.deepEqual({ ...res.json, created_at: undefined, updated_at: undefined }, {
      entity_id: ENTITY, enabled: true, certificates: 2, jit_provisioning: true, jit_default_roles: ['employee'],
      allowed_clients: [clientId], allow_transient: false, created_at: undefined, updated_at: undefined,
    });
    const minimal = await expect(201, 'POST', '/management/idps', { body: { entity_id: 'urn:idp:second', certificates: [ec.cert], allow_transient: true } });
    assert.equal(minimal.json.jit_provisioning, false);
    assert.equal(minimal.json.allowed_clients, null);
    assert.equal(minimal.json.allow_transient, true);
  });

  it('refuses bad input with the reason (400), a duplicate (409)', async () => {
    const key = await expect(400, 'POST', '/management/idps', { body: { entity_id: 'urn:x', certificates: [rsa.key] } });
    assert.match(key.json.error_description, /^certificates\.0: .*private key/);
    const chain = await expect(400, 'POST', '/management/idps', { body: { entity_id: 'urn:x', certificates: [ec.cert, rsa.cert + ec.cert] } });
    assert.match(chain.json.error_description, /^certificates\.1: .*not a chain/);
    assert.match((await expect(400, 'POST', '/management/idps', { body: { entity_id: 'urn:x', certificates: [] } })).json.error_description, /^certificates: /);
    assert.match((await expect(400, 'POST', '/management/idps', { body: { entity_id: 'urn:x', certificates: [rsa.cert], default_roles: ['nope'] } })).json.error_description, /no role "nope"/);
    await expect(400, 'POST', '/management/idps', { body: { entity_id: '', certificates: [rsa.cert] } });
    await expect(400, 'POST', '/management/idps', { body: { entity_id: 'urn:\u0000', certificates: [rsa.cert] } });
    await expect(400, 'POST', '/management/idps', { body: { entity_id: 'urn:x', certificates: [rsa.cert], signing_key: 'x' } });
    const dup = await expect(409, 'POST', '/management/idps', { body: { entity_id: ENTITY, certificates: [rsa.cert] } });
    assert.match(dup.json.error_description, /already registered/);
  });

  it('lists with a cursor and a total; shows one with its certificates; unknown is 404', async () => {
    const first = await expect(200, 'GET', '/management/idps?limit=1');
    assert.equal(first.json.total, 2);
    assert.equal(first.json.items[0].entity_id, ENTITY);
    const second = await expect(200, 'GET', `/management/idps?limit=1&cursor=${first.json.next_cursor}`);
    assert.equal(second.json.items[0].entity_id, 'urn:idp:second');
    assert.equal(second.json.next_cursor, null);
    const shown = await expect(200, 'GET', path(ENTITY));
    assert.equal(shown.json.certificates.length, 2);
    assert.equal(shown.json.certificates[0].trim(), rsa.cert.trim());
    await expect(404, 'GET', path('urn:idp:none'));
    await expect(404, 'GET', '/management/idps/a%00b');
  });

  it('disables and enables; unknown is 404', async () => {
    assert.deepEqual((await expect(200, 'POST', path(ENTITY, '/disable'))).json, { entity_id: ENTITY, enabled: false });
    assert.equal((await expect(200, 'GET', path(ENTITY))).json.enabled, false);
    assert.deepEqual((await expect(200, 'POST', path(ENTITY, '/enable'))).json, { entity_id: ENTITY, enabled: true });
    await expect(404, 'POST', path('urn:idp:none', '/disable'));
    await expect(404, 'POST', path('urn:idp:none', '/enable'));
  });

  it('an auditor reads, never writes', async () => {
    await expect(200, 'GET', '/management/idps', { authorization: auditor });
    await expect(200, 'GET', path(ENTITY), { authorization: auditor });
    const refused = await expect(403, 'POST', '/management/idps', { authorization: auditor, body: { entity_id: 'urn:y', certificates: [rsa.cert] } });
    assert.deepEqual(refused.json, { error: 'forbidden', error_description: 'the auditor role may only read' });
    await expect(403, 'POST', path(ENTITY, '/disable'), { authorization: auditor });
    await expect(403, 'DELETE', path(ENTITY), { authorization: auditor });
    await expect(401, 'GET', '/management/idps', { authorization: 'Bearer nope' });
  });

  it('removes; unknown is 404', async () => {
    assert.deepEqual((await expect(200, 'DELETE', path(ENTITY))).json, { entity_id: ENTITY, removed: true });
    await expect(404, 'GET', path(ENTITY));
    await expect(404, 'DELETE', path(ENTITY));
    assert.equal((await expect(200, 'GET', '/management/idps')).json.total, 1);
  });

  it('every documented operation of /management/idps was exercised above', () => {
    const mine = (op: string) => / \/management\/idps(\/|$)/.test(op);
    assert.deepEqual(conformance.unexercised().filter(mine), []);
  });
});
