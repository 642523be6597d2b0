// No secret material in the logs, not even a fragment: passwords, client secrets, tokens,
// codes, cookie values, the forms' anti-forgery tokens, and the session's own secrets (as
// stored in its row), after a run through every flow, its refusals included, at debug level.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient } from '../support/fixtures.ts';
import { Browser, formAction, formToken } from '../support/browserless.ts';
import { GRANTS, setUpEveryGrant } from '../support/every-grant.ts';
import { removeTempDirs } from '../saml/support.ts';

const REDIRECT = 'https://app.example/cb';
const FRAGMENT = 10;

/** For each secret (of FRAGMENT characters or more) with a fragment in the log, where. */
function leaksIn(lines: string[], secrets: Iterable<string>): string[] {
  const logs = lines.join('\n');
  const leaks: string[] = [];
  for (const secret of secrets) {
    if (secret.length < FRAGMENT) continue;
    for (let i = 0; i + FRAGMENT <= secret.length; i++) {
      const fragment = secret.slice(i, i + FRAGMENT);
      if (logs.includes(fragment)) {
        leaks.push(`${secret.slice(0, 4)}… (fragment ${fragment}) in: ${lines.find((l) => l.includes(fragment))!.slice(0, 300)}`);
        break;
      }
    }
  }
  return leaks;
}

/** Every string value anywhere in a JSON document. */
function stringsIn(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.flatMap(stringsIn);
  if (value && typeof value === 'object') return Object.values(value).flatMap(stringsIn);
  return [];
}

describe('logs hold no secrets', () => {
  let database: TestDatabase;
  let server: TestServer;
  let web: TestClient;
  let app: TestClient;
  const secrets = new Set<string>();

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url, { logLevel: 'debug' });
    await makeScope(database.db, 'read');
    web = await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token'], scope: ['read'], redirectUris: [REDIRECT] });
    app = await makeClient(database.db, { grantTypes: ['password', 'refresh_token', 'client_credentials'], scope: ['read'] });
    for (const c of [web, app]) secrets.add(c.secret);
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  it('after every flow and refusal, no log line contains a fragment of any secret', async () => {
    const user = await makeUser(database.db, 'pia');
    secrets.add(user.password);
    const note = (...values: (string | undefined | null)[]) => values.forEach((v) => v && secrets.add(v));

    // Password grant, wrong then right; refresh, reuse; introspection and revocation.
    note('not-the-password-123');
    await postForm(`${server.url}/token`, { grant_type: 'password', username: 'pia', password: 'not-the-password-123' }, { basic: app.basic });
    const tokens = (await postForm(`${server.url}/token`, { grant_type: 'password', username: 'pia', password: user.password, scope: 'read' }, { basic: app.basic })).json;
    note(tokens.access_token, tokens.refresh_token);
    const refreshed = (await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, { basic: app.basic })).json;
    note(refreshed.access_token, refreshed.refresh_token);
    await postForm(`${server.url}/token`, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, { basic: app.basic });
    await postForm(`${server.url}/introspect`, { token: refreshed.access_token }, { basic: app.basic });
    await postForm(`${server.url}/revoke`, { token: refreshed.access_token }, { basic: app.basic });
    note('wrong-client-secret-xyz');
    await postForm(`${server.url}/token`, { grant_type: 'client_credentials' }, { basic: [app.id, 'wrong-client-secret-xyz'] });

    // The code flow in a browser, a replayed code, a tampered form.
    const browser = new Browser(server.url);
    const params = new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: REDIRECT, scope: 'read', state: 'state-value-1234' });
    let step = await browser.follow(await browser.get(`/authorize?${params}`));
    const loginCsrf = formToken(step.html!);
    note(loginCsrf);
    await browser.post(formAction(step.html!), { csrf: `${loginCsrf}x`, username: 'pia', password: user.password });
    step = await browser.follow(await browser.get(`/authorize?${params}`));
    note(formToken(step.html!));
    step = await browser.follow(await browser.post(formAction(step.html!), { csrf: formToken(step.html!), username: 'pia', password: user.password }));
    note(formToken(step.html!));
    step = await browser.follow(await browser.post(formAction(step.html!), { csrf: formToken(step.html!), decision: 'approve' }));
    const code = new URL(step.location!).searchParams.get('code');
    note(code);
    const codeTokens = (await postForm(`${server.url}/token`, { grant_type: 'authorization_code', code: code!, redirect_uri: REDIRECT }, { basic: web.basic })).json;
    note(codeTokens.access_token, codeTokens.refresh_token);
    await postForm(`${server.url}/token`, { grant_type: 'authorization_code', code: code!, redirect_uri: REDIRECT }, { basic: web.basic });
    // Signing out (a 404 here; the engine's stock logout page put the session's xsrf secret
    // into its form, and a wrong one into the log).
    const logout = await browser.get(`/logout?client_id=${web.id}`);
    const xsrf = /name="xsrf" value="([^"]+)"/.exec(logout.html ?? '')?.[1];
    note(xsrf);
    await browser.post('/logout', { xsrf: xsrf ? `${xsrf.slice(0, -1)}A` : 'no-xsrf-on-the-page', logout: 'yes' });
    for (const value of browser.jar.cookies.values()) note(value);
    // The sessions' own secrets (the logout form's xsrf value), as the engine stored them.
    const rows = await database.db.selectFrom('tokens').select('payload').where('kind', '=', 'Session').execute();
    const identifiers = new Set([web.id, app.id, user.id, user.username]);
    for (const r of rows) note(...stringsIn((r.payload as { state?: unknown }).state).filter((v) => !identifiers.has(v)));

    assert.ok(server.logs.length >= 6, `the server logged the run (${server.logs.length} lines)`);
    assert.deepEqual(leaksIn(server.logs, secrets), []);
  });

  it('over a run of every grant, opaque and JWT, each also replayed and sent with a wrong secret, no log line holds a fragment of a secret', async () => {
    const mark = server.logMark();
    const wrong = 'wrong-client-secret-every-grant';
    const seen = new Set<string>([wrong]);
    try {
      for (const format of ['opaque', 'jwt'] as const) {
        const every = await setUpEveryGrant(server, database.db, `log-secrets-${format}`, format);
        for (const grant of GRANTS) {
          const request = await every.prepare(grant);
          const first = await every.send(request);
          assert.equal(first.status, 200, `${grant}: ${first.text}`);
          // A replay (code, refresh token, assertion: refused, and logged as such) and a wrong secret.
          await every.send(request);
          await every.send({ ...request, basic: [request.basic[0], wrong] });
        }
        const badPassword = `not-the-password-${format}`;
        seen.add(badPassword);
        const refused = await every.send({ ...(await every.prepare('password')), form: { grant_type: 'password', username: every.user.username, password: badPassword } });
        assert.equal(refused.status, 400, refused.text);
        for (const v of every.secrets) seen.add(v);
      }
    } finally {
      removeTempDirs();
    }
    const lines = server.logs.slice(mark);
    assert.ok(lines.some((l) => l.includes('"security":"token_reuse"')) && lines.some((l) => l.includes('saml.rejected')), 'the refusals were logged');
    assert.deepEqual(leaksIn(lines, seen), []);
  });
});
