// keymgr user, role and scope commands, every one with --json, run as an operator would run
// them (a child process, the password on standard input) against a real PostgreSQL; and,
// where a command must take effect on sign-in, a real server on the same database.
import { spawn } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm, type Reply } from '../support/http.ts';
import { REPO_ROOT, runKeymgr, type KeymgrResult } from '../support/cli.ts';

/** The PHC prefix of an argon2id hash made with the OWASP parameters, in the PHC order m,t,p. */
const OWASP_ARGON2ID = '$argon2id$v=19$m=19456,t=2,p=1$';

/** An argon2id v19 PHC string made with m=19456, t=2, p=1, whatever order the parameters are in. */
function assertOwaspArgon2id(hash: string): void {
  const parts = hash.split('$');
  assert.equal(parts.length, 6, hash);
  const [, id, version, params, salt, digest] = parts;
  assert.equal(id, 'argon2id', hash);
  assert.equal(version, 'v=19', hash);
  const parsed = Object.fromEntries(params!.split(',').map((kv) => kv.split('=')));
  assert.deepEqual(parsed, { m: '19456', t: '2', p: '1' }, hash);
  assert.ok(salt && digest, hash);
}
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function ok(r: KeymgrResult): void {
  assert.equal(r.code, 0, `keymgr exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

/** A clean refusal: exit 1, nothing on stdout, one JSON error on stderr that says why. */
function refused(r: KeymgrResult, message: RegExp): void {
  assert.equal(r.code, 1, `expected a refusal (exit 1), got ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  assert.equal(r.stdout, '', 'a refused command prints nothing on stdout');
  let parsed: unknown;
  assert.doesNotThrow(() => { parsed = JSON.parse(r.stderr); }, `stderr is not JSON: ${r.stderr}`);
  assert.deepEqual(Object.keys(parsed as object), ['error'], r.stderr);
  assert.match((parsed as { error: string }).error, message);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'a stack trace on stderr');
}

function noSecretIn(r: KeymgrResult, ...secrets: string[]): void {
  const printed = r.stdout + r.stderr;
  assert.doesNotMatch(printed, /\$argon2/, 'a password hash is printed');
  assert.doesNotMatch(printed, /password_hash|"hash"/i, 'a hash field is printed');
  for (const s of secrets) assert.ok(!printed.includes(s), `the password ${JSON.stringify(s)} is printed`);
}

describe('keymgr user, role and scope (--json)', () => {
  let database: TestDatabase;
  let server: TestServer;
  let env: Record<string, string>;

  const keymgr = (args: string[], input?: string) => runKeymgr([...args, '--json'], env, input);

  const usersNamed = async (name: string) =>
    database.db.selectFrom('users').selectAll().where(sql<string>`lower(username)`, '=', name.toLowerCase()).execute();
  const userCount = async () =>
    (await database.db.selectFrom('users').select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow()).n;
  const listed = async (username: string) => {
    const r = await keymgr(['user', 'list']);
    ok(r);
    return (r.json as { username: string; roles: string[]; disabled: boolean }[]).find((u) => u.username === username);
  };
  const rolesOf = async (username: string) => (await listed(username))?.roles;
  const scopeList = async () => {
    const r = await keymgr(['scope', 'list']);
    ok(r);
    return r.json as { name: string; description: string; roles: string[] }[];
  };

  before(async () => {
    database = await createTestDatabase();
    // Lockout is tested elsewhere; here the many deliberate failures must not lock anyone out.
    server = await startTestServer(database.url, { lockoutMaxFailures: 1000, lockoutMaxFailuresPerAddress: 100000 });
    env = { DATABASE_URL: database.url, KM_KEYS_DIR: server.keysDir, KM_LOG_LEVEL: 'silent' };
  });

  after(async () => {
    await server?.stop().catch(() => {});
    await database?.drop();
  });

  describe('role create and list', () => {
    it('creates a role and lists it with its description and no members', async () => {
      const r = await keymgr(['role', 'create', 'r1', '--description', 'first role']);
      ok(r);
      assert.deepEqual(r.json, { name: 'r1', description: 'first role' });
      ok(await keymgr(['role', 'create', 'r2']));

      const list = await keymgr(['role', 'list']);
      ok(list);
      assert.ok(Array.isArray(list.json));
      assert.deepEqual(list.json.filter((x: { name: string }) => ['r1', 'r2'].includes(x.name)), [
        { name: 'r1', description: 'first role', users: 0 },
        { name: 'r2', description: '', users: 0 },
      ]);
    });

    it('refuses a duplicate with a clear message and keeps the original', async () => {
      refused(await keymgr(['role', 'create', 'r1', '--description', 'impostor']), /role "r1" already exists/);
      const list = await keymgr(['role', 'list']);
      ok(list);
      assert.deepEqual(list.json.filter((x: { name: string }) => x.name === 'r1'), [{ name: 'r1', description: 'first role', users: 0 }]);
    });

    it('refuses invalid role names and writes nothing', async () => {
      const before = await database.db.selectFrom('roles').select('name').execute();
      const bad = ['bad name', 'semi;colon', 'quote"d', 'x'.repeat(101), 'ünïcode', 'tab\there', ''];
      const results = await Promise.all(bad.map((name) => keymgr(['role', 'create', name])));
      results.forEach((r) => refused(r, /role name .* must be 1-100 of/));
      const afterRows = await database.db.selectFrom('roles').select('name').execute();
      assert.deepEqual(afterRows, before);
    });
  });

  describe('user create', () => {
    const alicePassword = 'alice: correct horse battery staple';

    it('reads the password from stdin, prints the user without any secret, stores only an OWASP argon2id hash', async () => {
      const r = await keymgr(['user', 'create', '--username', 'alice', '--password-stdin', '--roles', 'r1,r2'], `${alicePassword}\n`);
      ok(r);
      assert.match(r.json.id, UUID);
      assert.equal(r.json.username, 'alice');
      assert.deepEqual(r.json.roles, ['r1', 'r2']);
      assert.equal(r.json.disabled, false);
      for (const key of Object.keys(r.json)) assert.doesNotMatch(key, /pass|hash|secret/i, `field ${key} printed`);
      noSecretIn(r, alicePassword);

      const [row, ...others] = await usersNamed('alice');
      assert.ok(row);
      assert.equal(others.length, 0);
      assert.equal(row.id, r.json.id);
      assertOwaspArgon2id(row.password_hash);
      assert.ok(!r.stdout.includes(row.password_hash));
      const memberships = await database.db.selectFrom('user_roles').select('role_name').where('user_id', '=', row.id).orderBy('role_name').execute();
      assert.deepEqual(memberships.map((m) => m.role_name), ['r1', 'r2']);

      const everything = await database.dumpAllTables();
      assert.ok(!everything.includes(alicePassword), 'the clear password is stored somewhere');
      assert.ok(!everything.includes('correct horse'), 'part of the clear password is stored somewhere');
    });

    // PHC string format: "the parameters shall appear in the m,t,p,keyid,data order", and
    // libargon2's decoder (argon2/src/encoding.c) accepts no other, so tools built on it
    // (admin scripts, PHP, argon2-cffi, …) cannot verify a hash written m,p,t.
    it('writes the hash parameters in PHC order: $argon2id$v=19$m=19456,t=2,p=1$', async () => {
      const [row] = await usersNamed('alice');
      assert.ok(row);
      assert.ok(row.password_hash.startsWith(OWASP_ARGON2ID), row.password_hash);
    });

    it('refuses a username that differs only in case', async () => {
      const attempts = await Promise.all(['Alice', 'ALICE', 'aLiCe'].map((username) =>
        keymgr(['user', 'create', '--username', username, '--password-stdin'], 'another good password')));
      attempts.forEach((r) => refused(r, /already exists/));
      const rows = await usersNamed('alice');
      assert.deepEqual(rows.map((u) => u.username), ['alice']);
    });

    it('prints the roles the user was given, once each', async () => {
      const r = await keymgr(['user', 'create', '--username', 'frank', '--password-stdin', '--roles', 'r2, r1,r2,'], 'frank password 1');
      try {
        ok(r);
        assert.deepEqual(await rolesOf('frank'), ['r1', 'r2']);
        assert.deepEqual(r.json.roles, ['r1', 'r2']);
      } finally {
        await keymgr(['user', 'delete', 'frank']);
      }
    });

    it('refuses an unknown role and leaves no user or membership behind', async () => {
      const users = await userCount();
      const memberships = await database.db.selectFrom('user_roles').select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow();
      refused(await keymgr(['user', 'create', '--username', 'carl', '--password-stdin', '--roles', 'r1,ghost'], 'a good password'), /no role "ghost"/);
      assert.deepEqual(await usersNamed('carl'), [], 'a half-made user');
      assert.equal(await userCount(), users);
      const membershipsAfter = await database.db.selectFrom('user_roles').select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow();
      assert.equal(membershipsAfter.n, memberships.n);
    });

    it('refuses to run without --password-stdin', async () => {
      refused(await keymgr(['user', 'create', '--username', 'carl'], 'a good password'), /--password-stdin/);
      refused(await keymgr(['user', 'create', '--username', 'carl']), /--password-stdin/);
      assert.deepEqual(await usersNamed('carl'), []);
    });

    it('refuses empty, short, NUL-bearing and oversized passwords', async () => {
      const users = await userCount();
      const cases: [string, RegExp][] = [
        ['', /no password/],
        ['\n', /no password/],
        ['1234567', /at least 8 characters/],
        ['1234567\n', /at least 8 characters/],
        ['nul\0inside a long password', /NUL/],
        ['\0\0\0\0\0\0\0\0', /NUL/],
        ['p'.repeat(10 * 1024), /at most 1024 bytes/],
      ];
      const results = await Promise.all(cases.map(([password]) =>
        keymgr(['user', 'create', '--username', 'carl', '--password-stdin'], password)));
      results.forEach((r, i) => {
        refused(r, cases[i]![1]);
        assert.ok(!r.stderr.includes('1234567') && !r.stderr.includes('nul\0inside'), 'the refused password is echoed');
      });
      assert.deepEqual(await usersNamed('carl'), []);
      assert.equal(await userCount(), users);
    });

    it('accepts a password of exactly 8 characters', async () => {
      const r = await keymgr(['user', 'create', '--username', 'eight', '--password-stdin'], '12345678');
      ok(r);
      assert.equal(r.json.username, 'eight');
      ok(await keymgr(['user', 'delete', 'eight']));
    });

    it('refuses a username of 10 kB or with control characters or surrounding spaces', async () => {
      const users = await userCount();
      const cases: [string, RegExp][] = [
        ['x'.repeat(10 * 1024), /username must be 1 to 255 characters/],
        ['x'.repeat(256), /username must be 1 to 255 characters/],
        ['', /username must be 1 to 255 characters/],
        ['tab\there', /control or invisible characters/],
        ['new\nline', /control or invisible characters/],
        ['bell\x07', /control or invisible characters/],
        ['esc\x1b[31mred', /control or invisible characters/],
        ['del\x7f', /control or invisible characters/],
        [' padded ', /surrounding spaces/],
        ['alice\u200b', /invisible characters/],
        ['\u202eecila', /invisible characters/],
        ['line\u2028sep', /invisible characters/],
        ['cafe\u0301', /non-NFC/],
        ['\uFF41\uFF4C\uFF49\uFF43\uFF45', /username must be written in its plain form \("alice"\)/],
        ['\uFB01nance', /username must be written in its plain form \("finance"\)/],
      ];
      const results = await Promise.all(cases.map(([username]) =>
        keymgr(['user', 'create', '--username', username, '--password-stdin'], 'a good password')));
      results.forEach((r, i) => refused(r, cases[i]![1]));
      assert.equal(await userCount(), users);
    });

    it('accepts a username of exactly 255 characters', async () => {
      const name = 'y'.repeat(255);
      const r = await keymgr(['user', 'create', '--username', name, '--password-stdin'], 'a good password');
      ok(r);
      assert.equal(r.json.username, name);
      ok(await keymgr(['user', 'delete', name]));
    });

    // The password grant refuses any password with U+FFFD (what invalid UTF-8 decodes to), so a
    // password stored that way could never be used; the CLI should refuse it as the grant does.
    it('refuses a password that is not valid UTF-8', async () => {
      const invalid = Buffer.concat([Buffer.from('pass'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('word-long')]);
      const result = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
        const p = spawn(process.execPath, ['src/cli/keymgr.ts', 'user', 'create', '--username', 'utf8', '--password-stdin', '--json'], {
          cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'],
        });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        p.stdout.on('data', (c: Buffer) => out.push(c));
        p.stderr.on('data', (c: Buffer) => err.push(c));
        p.once('error', reject);
        p.once('close', (code) => resolve({ code: code ?? 128, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }));
        p.stdin.end(invalid);
      });
      const leftover = await usersNamed('utf8');
      if (leftover.length) await database.db.deleteFrom('users').where('id', '=', leftover[0]!.id).execute();
      refused({ ...result, json: undefined }, /password/);
      assert.deepEqual(leftover, []);
    });

    it('counts characters, not UTF-16 code units, for the minimum length', async () => {
      const r = await keymgr(['user', 'create', '--username', 'emoji', '--password-stdin'], '🔑🔑🔑🔑');
      if (r.code === 0) ok(await keymgr(['user', 'delete', 'emoji']));
      refused(r, /at least 8 characters/);
    });
  });

  describe('user list, role grant and role revoke', () => {
    it('lists users with their roles and never a hash', async () => {
      const r = await keymgr(['user', 'list']);
      ok(r);
      assert.ok(Array.isArray(r.json));
      const alice = r.json.find((u: { username: string }) => u.username === 'alice');
      assert.ok(alice, r.stdout);
      assert.deepEqual(alice.roles, ['r1', 'r2']);
      assert.equal(alice.disabled, false);
      assert.match(alice.id, UUID);
      for (const u of r.json as Record<string, unknown>[]) {
        for (const key of Object.keys(u)) assert.doesNotMatch(key, /pass|hash|secret/i, `field ${key} listed`);
      }
      noSecretIn(r);
      for (const row of await database.db.selectFrom('users').select('password_hash').execute()) {
        assert.ok(!r.stdout.includes(row.password_hash.split('$').pop()!), 'a hash is listed');
      }
    });

    it('grant and revoke change membership, as user list and role list show', async () => {
      const members = async () => {
        const r = await keymgr(['role', 'list']);
        ok(r);
        return Object.fromEntries((r.json as { name: string; users: number }[]).map((x) => [x.name, x.users]));
      };
      const membersBefore = await members();
      const created = await keymgr(['user', 'create', '--username', 'dave', '--password-stdin'], 'dave password 1');
      ok(created);
      assert.deepEqual(created.json.roles, []);
      assert.deepEqual(await rolesOf('dave'), []);

      const g1 = await keymgr(['role', 'grant', 'dave', 'r1']);
      ok(g1);
      assert.deepEqual(g1.json, { username: 'dave', role: 'r1', granted: true });
      assert.deepEqual(await rolesOf('dave'), ['r1']);

      ok(await keymgr(['role', 'grant', 'DAVE', 'r2'])); // usernames are case-insensitive
      assert.deepEqual(await rolesOf('dave'), ['r1', 'r2']);
      ok(await keymgr(['role', 'grant', 'dave', 'r2'])); // granting twice is harmless
      assert.deepEqual(await rolesOf('dave'), ['r1', 'r2']);

      const membersAfter = await members();
      assert.equal(membersAfter.r1, membersBefore.r1! + 1);
      assert.equal(membersAfter.r2, membersBefore.r2! + 1);

      const v1 = await keymgr(['role', 'revoke', 'dave', 'r1']);
      ok(v1);
      assert.deepEqual(v1.json, { username: 'dave', role: 'r1', revoked: true });
      assert.deepEqual(await rolesOf('dave'), ['r2']);

      const again = await keymgr(['role', 'revoke', 'dave', 'r1']);
      ok(again);
      assert.equal(again.json.revoked, false);
      assert.deepEqual(await rolesOf('dave'), ['r2']);
      assert.deepEqual(await rolesOf('alice'), ['r1', 'r2'], 'another user is untouched');
    });

    it('grant and revoke fail non-zero for an unknown user or role and change nothing', async () => {
      refused(await keymgr(['role', 'grant', 'nobody', 'r1']), /no user "nobody"/);
      refused(await keymgr(['role', 'grant', 'dave', 'ghost']), /no role "ghost"/);
      refused(await keymgr(['role', 'revoke', 'nobody', 'r1']), /no user "nobody"/);
      assert.deepEqual(await rolesOf('dave'), ['r2']);
      assert.deepEqual(await usersNamed('nobody'), []);
      const ghost = await database.db.selectFrom('roles').select('name').where('name', '=', 'ghost').executeTakeFirst();
      assert.equal(ghost, undefined);
    });
  });

  describe('scope create, list and delete', () => {
    it('creates a scope bound to a role with a description, and lists the binding', async () => {
      const r = await keymgr(['scope', 'create', 'orders:read', '--roles', 'r1', '--description', 'Read orders']);
      ok(r);
      assert.deepEqual(r.json, { name: 'orders:read', description: 'Read orders', roles: ['r1'] });
      const multi = await keymgr(['scope', 'create', 'orders:write', '--roles', 'r1,r2']);
      ok(multi);
      assert.deepEqual(multi.json.roles, ['r1', 'r2']);
      const free = await keymgr(['scope', 'create', 'profile']);
      ok(free);
      assert.deepEqual(free.json, { name: 'profile', description: '', roles: [] });

      const list = await scopeList();
      assert.deepEqual(list.filter((s) => s.name.startsWith('orders:') || s.name === 'profile'), [
        { name: 'orders:read', description: 'Read orders', roles: ['r1'] },
        { name: 'orders:write', description: '', roles: ['r1', 'r2'] },
        { name: 'profile', description: '', roles: [] },
      ]);
    });

    it('refuses an unknown role and registers nothing', async () => {
      refused(await keymgr(['scope', 'create', 'orders:delete', '--roles', 'r1,ghost']), /no role "ghost"/);
      assert.equal((await scopeList()).some((s) => s.name === 'orders:delete'), false, 'a half-made scope');
      const bindings = await database.db.selectFrom('scope_roles').select('role_name').where('scope_name', '=', 'orders:delete').execute();
      assert.deepEqual(bindings, []);
    });

    it('refuses a duplicate and keeps the original bindings', async () => {
      refused(await keymgr(['scope', 'create', 'orders:read', '--roles', 'r2', '--description', 'other']), /scope "orders:read" already exists/);
      const list = await scopeList();
      assert.deepEqual(list.filter((s) => s.name === 'orders:read'), [{ name: 'orders:read', description: 'Read orders', roles: ['r1'] }]);
    });

    it('refuses names that are not RFC 6749 scope tokens', async () => {
      const results = await Promise.all(['has space', 'quote"', 'back\\slash', 'ünï', 'x'.repeat(201)].map((name) => keymgr(['scope', 'create', name])));
      results.forEach((r) => refused(r, /invalid scope name/));
    });

    it('delete removes the scope and its bindings; a second delete fails', async () => {
      ok(await keymgr(['scope', 'create', 'doomed', '--roles', 'r2']));
      assert.ok((await scopeList()).some((s) => s.name === 'doomed'));
      const r = await keymgr(['scope', 'delete', 'doomed']);
      ok(r);
      assert.deepEqual(r.json, { name: 'doomed', deleted: true });
      assert.equal((await scopeList()).some((s) => s.name === 'doomed'), false);
      const bindings = await database.db.selectFrom('scope_roles').select('role_name').where('scope_name', '=', 'doomed').execute();
      assert.deepEqual(bindings, []);
      refused(await keymgr(['scope', 'delete', 'doomed']), /no scope "doomed"/);
    });
  });

  describe('what the CLI changes, the running server applies', () => {
    let client: { id: string; secret: string };
    let userId: string;
    const first = 'erin first password';
    const second = 'erin second password';

    const token = (params: Record<string, string>): Promise<Reply> =>
      postForm(`${server.url}/token`, params, { basic: [client.id, client.secret] });
    const signIn = (username: string, password: string, scope = 's1 s2') => token({ grant_type: 'password', username, password, scope });
    const refresh = (refreshToken: string) => token({ grant_type: 'refresh_token', refresh_token: refreshToken });

    /** The answer a wrong password gets: every other refusal must be indistinguishable from it. */
    let wrongPassword: Reply;
    function invalidGrant(r: Reply, what: string): void {
      assert.equal(r.status, 400, `${what}: ${r.text}`);
      assert.equal(r.json?.error, 'invalid_grant', `${what}: ${r.text}`);
      assert.ok(!('access_token' in r.json), what);
    }
    function sameAsWrongPassword(r: Reply, what: string): void {
      invalidGrant(r, what);
      assert.deepEqual(r.json, wrongPassword.json, `${what} is told apart from a wrong password`);
    }
    function signedIn(r: Reply, scope: string): void {
      assert.equal(r.status, 200, r.text);
      assert.equal(typeof r.json.access_token, 'string');
      assert.equal(r.json.token_type, 'Bearer');
      assert.equal(typeof r.json.refresh_token, 'string', 'the client has refresh_token: a refresh token is issued');
      assert.equal(r.json.scope, scope);
    }

    before(async () => {
      ok(await keymgr(['role', 'create', 'admin']));
      ok(await keymgr(['scope', 'create', 's1']));
      ok(await keymgr(['scope', 'create', 's2', '--roles', 'admin']));
      ok(await keymgr(['scope', 'create', 's3']));
      ok(await keymgr(['role', 'create', 'auditor']));
      ok(await keymgr(['scope', 'create', 's4', '--roles', 'auditor']));
      const c = await keymgr(['client', 'create', '--name', 'password app', '--grant-types', 'password,refresh_token', '--scope', 's1 s2 s3 s4']);
      ok(c);
      assert.ok(c.json.client_id && c.json.client_secret, c.stdout);
      client = { id: c.json.client_id, secret: c.json.client_secret };
      // The password as an operator pipes it: with a trailing newline, which is not part of it.
      const u = await keymgr(['user', 'create', '--username', 'erin', '--password-stdin'], `${first}\n`);
      ok(u);
      userId = u.json.id;
    });

    it('the user made by the CLI signs in with the password grant', async () => {
      const r = await signIn('erin', first);
      signedIn(r, 's1');
      const seen = await postForm(`${server.url}/introspect`, { token: r.json.access_token }, { basic: [client.id, client.secret] });
      assert.equal(seen.status, 200, seen.text);
      assert.equal(seen.json.active, true);
      assert.equal(seen.json.sub, userId);
      assert.equal(seen.json.username, 'erin');
      assert.equal(seen.json.client_id, client.id);

      signedIn(await signIn('ERIN', first), 's1'); // the username is case-insensitive at sign-in too
      wrongPassword = await signIn('erin', `${first}x`);
      invalidGrant(wrongPassword, 'a wrong password');
      invalidGrant(await signIn('erin', `${first}\n`), 'the password with the newline that was stripped');
    });

    it('user set-password: the old password fails, the new one works', async () => {
      refused(await keymgr(['user', 'set-password', 'erin'], second), /--password-stdin/);
      refused(await keymgr(['user', 'set-password', 'erin', '--password-stdin'], 'short'), /at least 8 characters/);
      refused(await keymgr(['user', 'set-password', 'erin', '--password-stdin'], ''), /no password/);
      refused(await keymgr(['user', 'set-password', 'nobody', '--password-stdin'], second), /no user "nobody"/);
      signedIn(await signIn('erin', first), 's1'); // nothing above changed anything

      const hashBefore = (await usersNamed('erin'))[0]!.password_hash;
      const r = await keymgr(['user', 'set-password', 'erin', '--password-stdin'], `${second}\n`);
      ok(r);
      assert.deepEqual(r.json, { username: 'erin', password_changed: true });
      noSecretIn(r, first, second);
      const hashAfter = (await usersNamed('erin'))[0]!.password_hash;
      assert.notEqual(hashAfter, hashBefore);
      assertOwaspArgon2id(hashAfter);
      const everything = await database.dumpAllTables();
      assert.ok(!everything.includes(second) && !everything.includes(first), 'a clear password is stored somewhere');

      sameAsWrongPassword(await signIn('erin', first), 'the old password');
      signedIn(await signIn('erin', second), 's1');
    });

    it('user disable refuses sign-in and the next refresh; user enable restores sign-in', async () => {
      const live = await signIn('erin', second);
      signedIn(live, 's1');
      // The refresh token works while the user is enabled (and rotates).
      const rotated = await refresh(live.json.refresh_token);
      assert.equal(rotated.status, 200, rotated.text);
      assert.equal(typeof rotated.json.refresh_token, 'string');

      const d = await keymgr(['user', 'disable', 'erin']);
      ok(d);
      assert.deepEqual(d.json, { username: 'erin', disabled: true });
      assert.equal((await listed('erin'))?.disabled, true);

      sameAsWrongPassword(await signIn('erin', second), 'a disabled user');
      invalidGrant(await refresh(rotated.json.refresh_token), 'refresh for a disabled user');

      const e = await keymgr(['user', 'enable', 'erin']);
      ok(e);
      assert.deepEqual(e.json, { username: 'erin', disabled: false });
      assert.equal((await listed('erin'))?.disabled, false);
      signedIn(await signIn('erin', second), 's1');

      refused(await keymgr(['user', 'disable', 'nobody']), /no user "nobody"/);
      refused(await keymgr(['user', 'enable', 'nobody']), /no user "nobody"/);
    });

    it('role grant admin adds the role-bound scope to later sign-ins; revoke takes it away again', async () => {
      signedIn(await signIn('erin', second, 's1 s2'), 's1');
      ok(await keymgr(['role', 'grant', 'erin', 'admin']));
      const asAdmin = await signIn('erin', second, 's1 s2');
      signedIn(asAdmin, 's1 s2');
      signedIn(await signIn('erin', second, 's2'), 's2');

      ok(await keymgr(['role', 'revoke', 'erin', 'admin']));
      signedIn(await signIn('erin', second, 's1 s2'), 's1');
      // Asking only for a scope the user may not have is invalid_scope.
      const none = await signIn('erin', second, 's2');
      assert.equal(none.status, 400, none.text);
      assert.equal(none.json.error, 'invalid_scope');
      // A refresh token issued while the user was admin no longer carries s2.
      const refreshed = await refresh(asAdmin.json.refresh_token);
      assert.equal(refreshed.status, 200, refreshed.text);
      assert.equal(refreshed.json.scope, 's1');
      ok(await keymgr(['role', 'grant', 'erin', 'admin']));
    });

    it('scope delete: the running server stops granting the scope', async () => {
      signedIn(await signIn('erin', second, 's1 s3'), 's1 s3');
      ok(await keymgr(['scope', 'delete', 's3']));
      // The server learns of the change through LISTEN/NOTIFY: allow it a moment to arrive.
      let r = await signIn('erin', second, 's1 s3');
      for (let i = 0; i < 50 && r.json?.scope !== 's1'; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        r = await signIn('erin', second, 's1 s3');
      }
      signedIn(r, 's1');
    });

    // A scope bound to roles is for holders of those roles only. Deleting the role would leave
    // the scope bound to nothing (granted to every user), so it is refused while bound.
    it('role delete is refused while the role restricts a scope, which stays restricted', async () => {
      signedIn(await signIn('erin', second, 's1 s4'), 's1');
      refused(await keymgr(['role', 'delete', 'auditor']), /restricts scope/);
      signedIn(await signIn('erin', second, 's1 s4'), 's1');
      assert.deepEqual((await scopeList()).find((s) => s.name === 's4')?.roles, ['auditor']);
      assert.ok((await keymgr(['role', 'list'])).json.some((x: { name: string }) => x.name === 'auditor'), 'the role is gone');

      // Once no scope depends on it, the role can go; deleting an unknown role fails.
      ok(await keymgr(['scope', 'delete', 's4']));
      const r = await keymgr(['role', 'delete', 'auditor']);
      ok(r);
      assert.deepEqual(r.json, { name: 'auditor', deleted: true });
      assert.equal((await keymgr(['role', 'list'])).json.some((x: { name: string }) => x.name === 'auditor'), false);
      refused(await keymgr(['role', 'delete', 'auditor']), /no role "auditor"/);
    });

    it('user delete refuses sign-in and refresh, even for a new user of the same name', async () => {
      const live = await signIn('erin', second, 's1 s2');
      signedIn(live, 's1 s2');

      const r = await keymgr(['user', 'delete', 'erin']);
      ok(r);
      assert.deepEqual(r.json, { username: 'erin', id: userId, deleted: true });
      assert.equal(await listed('erin'), undefined);
      assert.deepEqual(await usersNamed('erin'), []);
      const memberships = await database.db.selectFrom('user_roles').select('role_name').where('user_id', '=', userId).execute();
      assert.deepEqual(memberships, []);

      sameAsWrongPassword(await signIn('erin', second), 'a deleted user');
      invalidGrant(await refresh(live.json.refresh_token), 'refresh for a deleted user');
      refused(await keymgr(['user', 'delete', 'erin']), /no user "erin"/);

      // Someone else under the same name is a different account: the old tokens stay dead.
      const again = await keymgr(['user', 'create', '--username', 'erin', '--password-stdin'], second);
      ok(again);
      assert.notEqual(again.json.id, userId);
      signedIn(await signIn('erin', second), 's1');
      invalidGrant(await refresh(live.json.refresh_token), 'refresh for the old account of a reused name');
    });
  });
});
