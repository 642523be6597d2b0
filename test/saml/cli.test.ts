// keymgr idp …: trusted SAML identity providers, run as an operator would (a child process)
// against a real PostgreSQL, with --json throughout; and the effect of enable/disable/remove on
// a running server's SAML2 bearer grant.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, makeUser, type TestClient } from '../support/fixtures.ts';
import { runKeymgr, type KeymgrResult } from '../support/cli.ts';
import { SAML2_BEARER, assertionXml, encode, makeKeyPair, removeTempDirs, signWithSamlify, tempDir, type KeyPair } from './support.ts';

const ENTITY = 'https://idp.example.org/metadata';

function ok(r: KeymgrResult): void {
  assert.equal(r.code, 0, `keymgr exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

function refused(r: KeymgrResult, message: RegExp): void {
  assert.notEqual(r.code, 0, `expected a refusal\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.equal(r.stdout, '', 'a refused command prints nothing on stdout');
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'a stack trace on stderr');
}

describe('keymgr idp (--json)', () => {
  let database: TestDatabase;
  let server: TestServer;
  let env: Record<string, string>;
  let first: KeyPair;
  let second: KeyPair;
  let client: TestClient;
  let dir: string;

  const keymgr = (args: string[]) => runKeymgr([...args, '--json'], env);
  const exchange = async () => postForm(`${server.url}/token`, {
    grant_type: SAML2_BEARER,
    assertion: encode(signWithSamlify(assertionXml({ issuer: server.config.issuer, tokenEndpoint: `${server.config.issuer}/token` }, { issuer: ENTITY, nameId: 'frank' }), second)),
  }, { basic: client.basic });

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
    first = makeKeyPair('first');
    second = makeKeyPair('second');
    client = await makeClient(database.db, { grantTypes: [SAML2_BEARER], scope: ['read'] });
    await makeUser(database.db, 'someone', { roles: ['staff', 'viewer'] });
    dir = tempDir();
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
    removeTempDirs();
  });

  it('refuses a private key, a non-certificate, a missing file, for --cert', async () => {
    const notCert = join(dir, 'not-a-cert.pem');
    writeFileSync(notCert, 'hello, I am not a certificate\n');
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    const both = join(dir, 'both.pem');
    writeFileSync(both, first.cert + first.key);
    refused(await keymgr(['idp', 'add', '--entity-id', ENTITY, '--cert', first.keyPath]), /private key/i);
    refused(await keymgr(['idp', 'add', '--entity-id', ENTITY, '--cert', both]), /private key/i);
    refused(await keymgr(['idp', 'add', '--entity-id', ENTITY, '--cert', notCert]), /certificate/i);
    refused(await keymgr(['idp', 'add', '--entity-id', ENTITY, '--cert', garbage]), /certificate/i);
    refused(await keymgr(['idp', 'add', '--entity-id', ENTITY, '--cert', join(dir, 'missing.pem')]), /cannot read|missing/i);
    const list = await keymgr(['idp', 'list']);
    ok(list);
    assert.deepEqual(list.json, []);
  });

  it('add (two certificates, JIT, default roles, allowed clients), list, show', async () => {
    const add = await keymgr(['idp', 'add', '--entity-id', ENTITY, '--cert', first.certPath, '--cert', second.certPath,
      '--jit', '--default-roles', 'staff,viewer', '--allowed-clients', `${client.id},other-client`]);
    ok(add);
    assert.equal(add.json.entity_id, ENTITY);
    assert.equal(add.json.enabled, true);
    assert.equal(add.json.certificates, 2);
    assert.equal(add.json.jit_provisioning, true);
    assert.deepEqual(add.json.jit_default_roles, ['staff', 'viewer']);
    assert.deepEqual(add.json.allowed_clients, [client.id, 'other-client']);
    assert.doesNotMatch(add.stdout, /PRIVATE KEY/);

    refused(await keymgr(['idp', 'add', '--entity-id', ENTITY, '--cert', first.certPath]), /already/i);
    refused(await keymgr(['idp', 'add', '--entity-id', 'https://x.example', '--cert', first.certPath, '--jit', '--default-roles', 'no-such-role']), /role/i);

    const list = await keymgr(['idp', 'list']);
    ok(list);
    assert.equal(list.json.length, 1);
    assert.equal(list.json[0].entity_id, ENTITY);

    const show = await keymgr(['idp', 'show', ENTITY]);
    ok(show);
    assert.equal(show.json.entity_id, ENTITY);
    assert.equal(show.json.certificates.length, 2);
    for (const c of show.json.certificates) assert.match(c, /-----BEGIN CERTIFICATE-----/);
    refused(await keymgr(['idp', 'show', 'https://nobody.example']), /no identity provider/i);
  });

  it('the registered IdP works on the server; disable, enable and remove take effect', async () => {
    const accepted = await exchange();
    assert.equal(accepted.status, 200, accepted.text);

    const disable = await keymgr(['idp', 'disable', ENTITY]);
    ok(disable);
    assert.deepEqual(disable.json, { entity_id: ENTITY, enabled: false });
    assert.equal((await keymgr(['idp', 'show', ENTITY])).json.enabled, false);
    const whileDisabled = await exchange();
    assert.equal(whileDisabled.status, 400, whileDisabled.text);
    assert.equal(whileDisabled.json.error, 'invalid_grant');

    const enable = await keymgr(['idp', 'enable', ENTITY]);
    ok(enable);
    assert.deepEqual(enable.json, { entity_id: ENTITY, enabled: true });
    assert.equal((await exchange()).status, 200);

    const remove = await keymgr(['idp', 'remove', ENTITY]);
    ok(remove);
    assert.deepEqual(remove.json, { entity_id: ENTITY, removed: true });
    assert.deepEqual((await keymgr(['idp', 'list'])).json, []);
    const afterRemoval = await exchange();
    assert.equal(afterRemoval.status, 400, afterRemoval.text);
    assert.equal(afterRemoval.json.error, 'invalid_grant');

    refused(await keymgr(['idp', 'disable', ENTITY]), /no identity provider/i);
    refused(await keymgr(['idp', 'enable', ENTITY]), /no identity provider/i);
    refused(await keymgr(['idp', 'remove', ENTITY]), /no identity provider/i);
  });
});
