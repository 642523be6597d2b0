// The audit trail: management API writes (refused ones too), keymgr writes, and the security
// events of the server, read back through GET /management/audit-events; never a secret value.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { userInfo } from 'node:os';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, type TestServer } from '../support/server.ts';
import { basicAuth, managementClient, startManagementApi } from '../support/management.ts';
import { conformanceChecker } from '../support/openapi.ts';
import { runKeymgr } from '../support/cli.ts';
import { basicHeader } from '../support/http.ts';
import { post } from '../mtls/support.ts';
import { makeClient, makeScope, makeUser } from '../support/fixtures.ts';
import { hashPassword } from '../../src/store/passwords.ts';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const FAST = { memoryCost: 8192, timeCost: 1, parallelism: 1 };

describe('audit events', () => {
  let database: TestDatabase;
  let server: TestServer;
  let call: ReturnType<typeof managementClient>;
  let conformance: ReturnType<typeof conformanceChecker>;
  let admin: string;
  let auditor: string;
  let ca: string;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url, {
      tls: true, port: await freePort(), issuer: 'https://localhost:9443', lockoutMaxFailures: 2,
      managementUsers: [
        { username: 'ops', password_hash: await hashPassword('ops-password-1', FAST), roles: ['admin'] },
        { username: 'watcher', password_hash: await hashPassword('watcher-password-1', FAST), roles: ['auditor'] },
      ],
    });
    call = managementClient(server);
    ca = readFileSync(join(server.keysDir, 'tls', 'server.crt'), 'utf8');
    conformance = conformanceChecker((await call('GET', '/management/openapi.json')).json);
    admin = `Bearer ${(await call('GET', '/management/login', { authorization: basicAuth('ops', 'ops-password-1') })).json.AccessToken}`;
    auditor = `Bearer ${(await call('GET', '/management/login', { authorization: basicAuth('watcher', 'watcher-password-1') })).json.AccessToken}`;
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const events = async (action?: string) => {
    const res = await call('GET', `/management/audit-events?limit=100${action ? `&action=${encodeURIComponent(action)}` : ''}`, { authorization: auditor });
    assert.equal(res.status, 200, res.text);
    conformance.check('GET', '/management/audit-events', 200, res.json);
    return res.json.items as Record<string, unknown>[];
  };

  it('records an API write with who, what, where and the field names; a refused write as a failure', async () => {
    const created = await call('POST', '/management/clients', { authorization: admin, body: { name: 'audited', introspect_any: true } });
    assert.equal(created.status, 201);
    const [event] = await events('POST /clients');
    assert.equal(event!.actor_type, 'management_user');
    assert.equal(event!.actor, 'ops');
    assert.equal(event!.outcome, 'success');
    assert.equal(event!.resource_type, 'clients');
    assert.deepEqual(event!.changed_fields, ['name', 'introspect_any']);
    assert.equal(event!.source, '127.0.0.1');
    const refused = await call('POST', `/management/clients/${created.json.client_id}/disable`, { authorization: auditor });
    assert.equal(refused.status, 403);
    const [denied] = await events('POST /clients/:clientId/disable');
    assert.deepEqual([denied!.actor, denied!.outcome, denied!.resource_id], ['watcher', 'failure', created.json.client_id]);
    const dump = await database.dumpAllTables();
    assert.ok(!dump.includes(created.json.client_secret), 'no secret in any table');
  });

  it('records failed management sign-ins and the lockout that follows', async () => {
    for (let i = 0; i < 3; i++) await call('GET', '/management/login', { authorization: basicAuth('ops', `wrong-${i}`) });
    const failed = await events('management.login.failed');
    assert.equal(failed.length, 2);
    assert.equal(failed[0]!.actor, 'ops');
    assert.equal((await events('management.login.locked')).length, 1);
  });

  it('records keymgr writes with the OS user and the option names, never a token value', async () => {
    const env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir };
    await makeScope(database.db, 'read');
    const created = await runKeymgr(['client', 'create', '--name', 'from-cli', '--scope', 'read', '--json'], env);
    assert.equal(created.code, 0, created.stderr);
    const [event] = await events('keymgr client create');
    assert.equal(event!.actor_type, 'cli');
    assert.equal(event!.actor, userInfo().username);
    assert.ok((event!.changed_fields as string[]).includes('name') && (event!.changed_fields as string[]).includes('scope'), String(event!.changed_fields));
    assert.equal(event!.resource_id, null, 'client create has no argument');
    const revoked = await runKeymgr(['token', 'revoke', '--json', '--', 'not-a-real-token-value-0123456789'], env);
    assert.equal(revoked.code, 1);
    const [revokeEvent] = await events('keymgr token revoke');
    assert.deepEqual([revokeEvent!.outcome, revokeEvent!.resource_id], ['failure', null], 'no token value recorded');
    assert.ok(!(await database.dumpAllTables()).includes('not-a-real-token-value-0123456789'));
    const listed = await runKeymgr(['client', 'list', '--json'], env);
    assert.equal(listed.code, 0);
    assert.equal((await events('keymgr client list')).length, 0, 'reads are not recorded');
  });

  it('records security events: a password lockout, a revocation, a refresh token reused', async () => {
    await makeScope(database.db, 'profile');
    const app = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['profile'] });
    const user = await makeUser(database.db, 'rita');
    const auth = { ca, headers: { authorization: basicHeader(...app.basic) } };
    for (let i = 0; i < 2; i++) await post(`${server.publicUrl}/token`, { grant_type: 'password', username: 'rita', password: `wrong-${i}` }, auth);
    const [lockout] = await events('login.lockout');
    assert.deepEqual([lockout!.actor_type, lockout!.resource_type, lockout!.resource_id], ['system', 'account', 'rita']);
    await database.db.deleteFrom('login_failures').execute();
    const tokens = await post(`${server.publicUrl}/token`, { grant_type: 'password', username: 'rita', password: user.password, scope: 'profile' }, auth);
    assert.equal(tokens.status, 200, tokens.text);
    await post(`${server.publicUrl}/token`, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token }, auth);
    await post(`${server.publicUrl}/token`, { grant_type: 'refresh_token', refresh_token: tokens.json.refresh_token }, auth);
    // Recorded from the engine's error event, which may finish just after the response.
    let reuse: Record<string, unknown> | undefined;
    for (const until = Date.now() + 20_000; !reuse && Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
      [reuse] = await events('token.reuse_detected');
    }
    assert.deepEqual([reuse!.actor_type, reuse!.actor, reuse!.resource_type], ['client', app.id, 'refresh_token']);
    const fresh = await post(`${server.publicUrl}/token`, { grant_type: 'password', username: 'rita', password: user.password, scope: 'profile' }, auth);
    assert.equal((await post(`${server.publicUrl}/revoke`, { token: fresh.json.access_token }, auth)).status, 200);
    const [revoked] = await events('token.revoke');
    assert.deepEqual([revoked!.actor_type, revoked!.actor], ['client', app.id]);
    const dump = await database.dumpAllTables();
    for (const secret of [user.password, tokens.json.refresh_token, fresh.json.access_token]) assert.ok(!dump.includes(secret));
  });

  it('names what a create made, and every path parameter of what a write acted on', async () => {
    const created = await call('POST', '/management/clients', { authorization: admin, body: { name: 'named' } });
    const [event] = await events('POST /clients');
    assert.equal(event!.resource_id, created.json.client_id);
  });

  it('records writes whatever bytes they carry; an oversized chunked body is 413 and recorded', async () => {
    const nul = await call('POST', '/management/clients/%00/disable', { authorization: auditor });
    assert.equal(nul.status, 403);
    const [denied] = await events('POST /clients/:clientId/disable');
    assert.deepEqual([denied!.actor, denied!.outcome, denied!.resource_id], ['watcher', 'failure', '\uFFFD']);
    // Nothing that would make the trail, printed as text, say something else (an outside
    // review: a newline and an escape sequence were stored as sent, then marks and zero-width
    // characters, then what shows as nothing or as a blank): a newline, ESC, NEL, U+2028, RLO,
    // RLM, ZWSP, BOM, a tag character, the Hangul fillers, the braille blank, the combining
    // grapheme joiner, variation selectors, Khmer and Mongolian invisibles, an unassigned
    // default-ignorable, the null notehead, and spaces other than ASCII's.
    const misleading = ['\n', '\x1b', '\x85', '\u2028', '\u202e', '\u200f', '\u200b', '\ufeff', '\u{e0041}', '\u115f', '\u1160', '\u3164', '\uffa0', '\u2800',
      '\u034f', '\ufe0f', '\u{e0100}', '\u17b4', '\u180b', '\u2065', '\u{1d159}', '\u00a0', '\u1680', '\u2007', '\u202f', '\u205f', '\u3000',
      // What has nothing of its own to show: unassigned, noncharacters, private use, the
      // object replacement character, enclosing marks.
      '\u0378', '\u{1d127}', '\uffff', '\ufdd0', '\ue000', '\u{f0000}', '\ufffc', '\u20dd', '\u0489'];
    await call('POST', `/management/clients/${encodeURIComponent(`a${misleading.join('b')}c`)}/disable`, { authorization: auditor });
    const [forging] = await events('POST /clients/:clientId/disable');
    assert.equal(forging!.resource_id, `a${misleading.map(() => '\uFFFD').join('b')}c`);
    // Two resources whose names differ only past the column's 255 characters stay apart.
    const long = 'r'.repeat(300);
    for (const last of ['1', '2']) await call('POST', `/management/clients/${long}${last}/disable`, { authorization: auditor });
    const cut = (await events('POST /clients/:clientId/disable')).slice(0, 2).map((e) => e.resource_id);
    const digestOf = (v: string) => createHash('sha256').update(v).digest('hex').slice(0, 12);
    assert.deepEqual(cut, [`${'r'.repeat(241)}…#${digestOf(`${long}2`)}`, `${'r'.repeat(241)}…#${digestOf(`${long}1`)}`]);
    // A name sent in the form of a cut is marked as one itself: it cannot pass for the cut of another.
    const posing = `${'r'.repeat(241)}…#${digestOf(`${long}1`)}`;
    await call('POST', `/management/clients/${encodeURIComponent(posing)}/disable`, { authorization: auditor });
    const [posed] = await events('POST /clients/:clientId/disable');
    assert.equal(posed!.resource_id, `${'r'.repeat(241)}…#${digestOf(posing)}`);
    // Counted in characters, as the column counts them: 300 emoji keep 241 of them.
    await call('POST', `/management/clients/${encodeURIComponent('😀'.repeat(300))}/disable`, { authorization: auditor });
    const [emoji] = await events('POST /clients/:clientId/disable');
    assert.equal(emoji!.resource_id, `${'😀'.repeat(241)}…#${digestOf('😀'.repeat(300))}`);
    const keyed = await call('POST', '/management/clients', { authorization: admin, body: '{"\\u0000": 1, "name": "x"}' });
    assert.equal(keyed.status, 400);
    assert.deepEqual(keyed.json, { error: 'invalid_request', error_description: '(a key): must not contain NUL or invalid Unicode' });
    const lone = await call('POST', '/management/clients', { authorization: admin, body: '{"name": "\\ud800"}' });
    assert.deepEqual(lone.json, { error: 'invalid_request', error_description: 'name: must not contain NUL or invalid Unicode' });
    const before = (await events('POST /clients')).length;
    assert.equal(before >= 3, true);
    const huge = await call('POST', '/management/clients', { authorization: admin, body: { name: 'a'.repeat(70_000) }, chunked: true });
    assert.equal(huge.status, 413, huge.text);
    assert.deepEqual(huge.json, { error: 'invalid_request', error_description: 'request body is too large' });
    const after = await events('POST /clients');
    assert.equal(after.length, before + 1);
    assert.equal(after[0]!.outcome, 'failure');
    const forged = await call('GET', `/management/audit-events?cursor=${Buffer.from('99999999999999999999999').toString('base64url')}`, { authorization: auditor });
    assert.equal(forged.status, 400);
    assert.deepEqual(forged.json, { error: 'invalid_request', error_description: 'cursor: not a cursor of this list' });
  });

  it('pages newest first with a cursor', async () => {
    const first = await call('GET', '/management/audit-events?limit=2', { authorization: admin });
    conformance.check('GET', '/management/audit-events', 200, first.json);
    assert.equal(first.json.items.length, 2);
    assert.ok(Number(first.json.items[0].id) > Number(first.json.items[1].id));
    const next = await call('GET', `/management/audit-events?limit=2&cursor=${first.json.next_cursor}`, { authorization: admin });
    assert.ok(Number(next.json.items[0].id) < Number(first.json.items[1].id));
    assert.equal(next.json.total, first.json.total);
  });
});

describe('audit events: refused attempts without credentials', () => {
  let database: TestDatabase;
  let server: TestServer;
  let call: ReturnType<typeof managementClient>;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url, {
      tls: true, port: await freePort(), issuer: 'https://localhost:9443',
      managementUsers: [{ username: 'ops', password_hash: await hashPassword('ops-password-1', FAST), roles: ['admin'] }],
    });
    call = managementClient(server);
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const rows = async () => (await database.db.selectFrom('audit_events')
    .select(['actor_type', 'actor', 'action', 'resource_type', 'resource_id', 'source', 'outcome']).orderBy('id').execute());

  it('records a write with no or a forged token as (unauthenticated); past 10 a minute from one address, one audit.suppressed row', async () => {
    // The limit counts per minute (README): start well inside one, so that all 15 fall in it.
    const second = new Date().getUTCSeconds();
    if (second >= 40) await new Promise((r) => setTimeout(r, (61 - second) * 1000));
    for (let i = 0; i < 15; i++) {
      const authorization = i % 2 ? 'Bearer forged.token.value' : undefined;
      const res = await call('POST', '/management/clients/c1/disable', { authorization });
      assert.equal(res.status, 401);
    }
    const written = await rows();
    const attempt = { actor_type: 'management_user', actor: '(unauthenticated)', action: 'POST /clients/:clientId/disable', resource_type: 'clients', resource_id: 'c1', source: '127.0.0.1', outcome: 'failure' };
    assert.deepEqual(written, [
      ...Array.from({ length: 10 }, () => attempt),
      { actor_type: 'system', actor: 'keymanager', action: 'audit.suppressed', resource_type: 'POST /clients/:clientId/disable', resource_id: null, source: '127.0.0.1', outcome: 'failure' },
    ]);
    const logged = server.logs.filter((l) => l.includes('"event":"audit.suppressed"'));
    assert.equal(logged.length, 5, 'every attempt past the limit is still logged');
  });
});

describe('audit events of refused attempts under a flood', () => {
  it('refused writes from many addresses, past the 300 rows a minute of all sources, cannot keep an operator\'s failed sign-ins and lockout out of the trail', async () => {
    // An outside review: 10 writes from each of 30 loopback addresses, then 5 wrong passwords
    // for admin: locked, and not one row of it in the trail.
    const { database, server, call } = await startManagementApi({ lockoutMaxFailures: 2 });
    try {
      // The limits count per minute (README): start well inside one, so that all falls in it.
      const second = new Date().getUTCSeconds();
      if (second >= 40) await new Promise((r) => setTimeout(r, (61 - second) * 1000));
      for (let n = 1; n <= 31; n++) {
        const refused = await Promise.all(Array.from({ length: 10 }, () => call('POST', '/management/clients/c1/disable', { localAddress: `127.0.1.${n}` })));
        assert.deepEqual(refused.map((r) => r.status), Array(10).fill(401));
      }
      const gap = await database.db.selectFrom('audit_events').select(['action', 'source']).where('action', '=', 'audit.suppressed').where('source', 'is', null).execute();
      assert.equal(gap.length, 1, 'the flood went past what all sources may write');
      for (const password of ['wrong-1', 'wrong-2', 'wrong-3']) {
        assert.equal((await call('GET', '/management/login', { authorization: basicAuth('watcher', password) })).status, 401);
      }
      const trail = await database.db.selectFrom('audit_events').select(['action', 'actor', 'source', 'outcome']).where('actor', '=', 'watcher').where('outcome', '=', 'failure').orderBy('id').execute();
      const refusal = (action: string) => ({ action, actor: 'watcher', source: '127.0.0.1', outcome: 'failure' });
      assert.deepEqual(trail, [refusal('management.login.failed'), refusal('management.login.failed'), refusal('management.login.locked')]);
    } finally {
      await server.stop();
      await database.drop();
    }
  });
});
