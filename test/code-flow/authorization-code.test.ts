// Authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636, RFC 9700): redirect URI
// matching, PKCE rules, single-use codes and their replay, consent form tampering.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, formAction, formToken, pkcePair, runCodeFlow } from '../support/browserless.ts';
import { tokenDigest } from '../../src/store/tokens.ts';

const REDIRECT = 'https://app.example/cb';

describe('authorization code grant', () => {
  let database: TestDatabase;
  let server: TestServer;
  let web: TestClient;
  let other: TestClient;
  let spa: TestClient;
  let native: TestClient;
  let alice: TestUser;
  let bob: TestUser;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url, { authorizationCodeTtl: 30 });
    await makeScope(database.db, 'orders:read');
    await makeScope(database.db, 'orders:write', ['order-admin']);
    const scope = ['orders:read', 'orders:write'];
    web = await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token'], scope, redirectUris: [REDIRECT] });
    other = await makeClient(database.db, { grantTypes: ['authorization_code'], scope, redirectUris: ['https://other.example/cb'] });
    spa = await makeClient(database.db, { grantTypes: ['authorization_code'], scope, redirectUris: ['https://spa.example/cb'], authMethod: 'none' });
    native = await makeClient(database.db, { grantTypes: ['authorization_code'], scope, redirectUris: ['http://127.0.0.1/callback'], authMethod: 'none', applicationType: 'native' });
    alice = await makeUser(database.db, 'alice', { roles: ['order-admin'] });
    bob = await makeUser(database.db, 'bob');
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const flow = (client: TestClient, user: TestUser, extra: { scope?: string; challenge?: string; redirectUri?: string } = {}) =>
    runCodeFlow(new Browser(server.url), {
      clientId: client.id,
      redirectUri: extra.redirectUri ?? (client === spa ? 'https://spa.example/cb' : REDIRECT),
      scope: extra.scope ?? 'orders:read',
      username: user.username,
      password: user.password,
      challenge: extra.challenge,
    });

  const redeem = (client: TestClient, code: string, params: Record<string, string> = {}) =>
    postForm(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: REDIRECT, ...params }, client.secret ? { basic: client.basic } : {});

  const introspect = (token: string) => postForm(`${server.url}/introspect`, { token }, { basic: web.basic });

  it('signs in, consents, returns code and state to the exact redirect URI, and the code redeems', async () => {
    const { verifier, challenge } = pkcePair();
    const back = await flow(web, alice, { scope: 'orders:read orders:write', challenge });
    assert.equal(`${back.origin}${back.pathname}`, REDIRECT);
    assert.equal(back.searchParams.get('state'), 'st-123');
    assert.equal(back.searchParams.get('iss'), server.config.issuer, 'RFC 9207 iss');
    const res = await redeem(web, back.searchParams.get('code')!, { code_verifier: verifier });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json.scope.split(' ').sort(), ['orders:read', 'orders:write']);
    assert.equal(typeof res.json.refresh_token, 'string');
    const seen = await introspect(res.json.access_token);
    assert.equal(seen.json.sub, alice.id);
    assert.equal(seen.json.username, 'alice');
  });

  it('gives a user without the bound role only the unbound scope', async () => {
    const back = await flow(web, bob, { scope: 'orders:read orders:write' });
    const res = await redeem(web, back.searchParams.get('code')!);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.scope, 'orders:read');
  });

  it('accepts a confidential client without PKCE', async () => {
    const back = await flow(web, alice);
    assert.equal((await redeem(web, back.searchParams.get('code')!)).status, 200);
  });

  it('lets a public client redeem with PKCE and no secret', async () => {
    const { verifier, challenge } = pkcePair();
    const back = await flow(spa, alice, { challenge });
    const res = await redeem(spa, back.searchParams.get('code')!, { client_id: spa.id, code_verifier: verifier, redirect_uri: 'https://spa.example/cb' });
    assert.equal(res.status, 200, res.text);
  });

  describe('PKCE', () => {
    it('a public client without code_challenge gets invalid_request at its redirect URI', async () => {
      const b = new Browser(server.url);
      const step = await b.get(`/authorize?${new URLSearchParams({ response_type: 'code', client_id: spa.id, redirect_uri: 'https://spa.example/cb', scope: 'orders:read', state: 's' })}`);
      const back = new URL(step.location!);
      assert.equal(back.origin, 'https://spa.example');
      assert.equal(back.searchParams.get('error'), 'invalid_request');
      assert.equal(back.searchParams.get('state'), 's');
    });

    it('the plain method is refused', async () => {
      const b = new Browser(server.url);
      const step = await b.get(`/authorize?${new URLSearchParams({
        response_type: 'code', client_id: web.id, redirect_uri: REDIRECT, scope: 'orders:read', code_challenge: 'a'.repeat(43), code_challenge_method: 'plain',
      })}`);
      assert.equal(new URL(step.location!).searchParams.get('error'), 'invalid_request');
    });

    it('a missing or wrong code_verifier is invalid_grant', async () => {
      const { challenge } = pkcePair();
      const missing = await flow(web, alice, { challenge });
      const r1 = await redeem(web, missing.searchParams.get('code')!);
      assert.equal(r1.status, 400);
      assert.equal(r1.json.error, 'invalid_grant');
      const wrong = await flow(web, alice, { challenge });
      const r2 = await redeem(web, wrong.searchParams.get('code')!, { code_verifier: pkcePair().verifier });
      assert.equal(r2.json.error, 'invalid_grant');
    });

    it('a code_verifier for a code issued without a challenge is refused', async () => {
      const back = await flow(web, alice);
      const res = await redeem(web, back.searchParams.get('code')!, { code_verifier: pkcePair().verifier });
      assert.equal(res.status, 400);
      assert.equal(res.json.error, 'invalid_grant');
    });
  });

  describe('redirect URIs', () => {
    const nearMisses = [
      ['different case', 'https://app.example/CB'],
      ['different host case', 'https://APP.example/cb'],
      ['trailing slash', 'https://app.example/cb/'],
      ['extra query', 'https://app.example/cb?x=1'],
      ['fragment', 'https://app.example/cb#frag'],
      ['dot segments', 'https://app.example/x/../cb'],
      ['double encoding', 'https://app.example/%2563b'],
      ['user@host', 'https://app.example@evil.example/cb'],
      ['another scheme', 'http://app.example/cb'],
      ['another port', 'https://app.example:8443/cb'],
      ['unregistered', 'https://evil.example/cb'],
    ] as const;
    for (const [name, uri] of nearMisses) {
      it(`${name}: an error page, never a redirect`, async () => {
        const b = new Browser(server.url);
        const step = await b.get(`/authorize?${new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: uri, scope: 'orders:read', state: 's' })}`);
        assert.equal(step.status, 400, `${uri} → ${step.status} ${step.location ?? ''}`);
        assert.equal(step.location, undefined);
        assert.match(step.html ?? '', /redirect_uri/);
      });
    }

    it('an unknown client: an error page, never a redirect', async () => {
      const b = new Browser(server.url);
      const step = await b.get(`/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'no-such-client', redirect_uri: REDIRECT, scope: 'orders:read' })}`);
      assert.equal(step.status, 400);
      assert.equal(step.location, undefined);
    });

    it('a native client may use any loopback port (RFC 8252 §7.3); a web client may not', async () => {
      const { challenge } = pkcePair();
      const back = await runCodeFlow(new Browser(server.url), {
        clientId: native.id, redirectUri: 'http://127.0.0.1:51234/callback', scope: 'orders:read', username: 'alice', password: alice.password, challenge,
      });
      assert.equal(back.port, '51234');
      assert.ok(back.searchParams.get('code'));
      const b = new Browser(server.url);
      const step = await b.get(`/authorize?${new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: 'https://app.example:51234/cb', scope: 'orders:read' })}`);
      assert.equal(step.status, 400);
      assert.equal(step.location, undefined);
    });
  });

  describe('codes', () => {
    it('a replayed code is refused and revokes the tokens issued from it', async () => {
      const back = await flow(web, alice);
      const code = back.searchParams.get('code')!;
      const first = await redeem(web, code);
      assert.equal(first.status, 200);
      assert.equal((await introspect(first.json.access_token)).json.active, true);
      const mark = server.logMark();
      const replay = await redeem(web, code);
      assert.equal(replay.status, 400);
      assert.deepEqual(replay.json, { error: 'invalid_grant', error_description: 'grant request is invalid' });
      assert.equal(server.logsSince(mark).filter((e) => e.security === 'token_reuse').length, 1, 'this replay logged as a security event');
      assert.deepEqual((await introspect(first.json.access_token)).json, { active: false });
      assert.deepEqual((await introspect(first.json.refresh_token)).json, { active: false });
    });

    it('an expired code is refused', async () => {
      const back = await flow(web, alice);
      const code = back.searchParams.get('code')!;
      await sql`update tokens set expires_at = now() - interval '1 second', payload = jsonb_set(payload, '{exp}', to_jsonb(extract(epoch from now())::int - 1)) where id_sha256 = ${tokenDigest(code)}`.execute(database.db);
      const res = await redeem(web, code);
      assert.equal(res.status, 400);
      assert.equal(res.json.error, 'invalid_grant');
    });

    it('lives as long as configured (authorization_code_ttl)', async () => {
      const back = await flow(web, alice);
      const row = await database.db.selectFrom('tokens').select(['issued_at', 'expires_at']).where('id_sha256', '=', tokenDigest(back.searchParams.get('code')!)).executeTakeFirstOrThrow();
      const seconds = (row.expires_at!.getTime() - row.issued_at.getTime()) / 1000;
      assert.ok(Math.abs(seconds - 30) < 2, `code lives ${seconds}s`);
    });

    it('a code issued to another client is refused', async () => {
      const back = await flow(web, alice);
      const res = await postForm(`${server.url}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: 'https://other.example/cb' }, { basic: other.basic });
      assert.equal(res.status, 400);
      assert.equal(res.json.error, 'invalid_grant');
    });

    it('a redirect_uri at /token other than the one of the request is refused', async () => {
      const back = await flow(web, alice);
      const res = await redeem(web, back.searchParams.get('code')!, { redirect_uri: 'https://app.example/cb2' });
      assert.equal(res.status, 400);
      assert.equal(res.json.error, 'invalid_grant');
    });
  });

  describe('the sign-in and consent forms', () => {
    let fresh = 0;
    /** A user who has never consented, at the consent page. */
    async function toConsent(b: Browser) {
      const user = await makeUser(database.db, `consenter-${++fresh}`);
      let step = await b.follow(await b.get(`/authorize?${new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: REDIRECT, scope: 'orders:read orders:write', state: 's' })}`));
      step = await b.follow(await b.post(formAction(step.html!), { csrf: formToken(step.html!), username: user.username, password: user.password }));
      return step;
    }

    it('a wrong password shows the login page again with an error', async () => {
      const b = new Browser(server.url);
      const login = await b.follow(await b.get(`/authorize?${new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: REDIRECT, scope: 'orders:read' })}`));
      const again = await b.post(formAction(login.html!), { csrf: formToken(login.html!), username: 'bob', password: 'wrong-password' });
      assert.equal(again.status, 200);
      assert.match(again.html!, /role="alert"/);
      assert.match(again.html!, /name="password"/);
    });

    it('a consent form with a forged token is refused', async () => {
      const b = new Browser(server.url);
      const consent = await toConsent(b);
      assert.match(consent.html!, /name="decision"/);
      const forged = await b.post(formAction(consent.html!), { csrf: 'forged', decision: 'approve' });
      assert.equal(forged.status, 400);
      assert.equal(forged.location, undefined);
    });

    it('a consent form posted without the browser\'s interaction cookie is refused', async () => {
      const b = new Browser(server.url);
      const consent = await toConsent(b);
      const stranger = new Browser(server.url);
      const res = await stranger.post(formAction(consent.html!), { csrf: formToken(consent.html!), decision: 'approve' });
      assert.equal(res.status, 400);
      assert.equal(res.location, undefined);
    });

    it('the consent page lists only what the user can be granted; extra form fields change nothing', async () => {
      const b = new Browser(server.url);
      const consent = await toConsent(b);
      assert.match(consent.html!, /orders:read/);
      assert.doesNotMatch(consent.html!, /orders:write/, 'the user lacks order-admin');
      let step = await b.post(formAction(consent.html!), { csrf: formToken(consent.html!), decision: 'approve', scope: 'orders:read orders:write' });
      step = await b.follow(step);
      const code = new URL(step.location!).searchParams.get('code')!;
      const res = await redeem(web, code);
      assert.equal(res.json.scope, 'orders:read');
    });

    for (const withOpenid of [false, true]) {
      it(`consent is asked again only for scopes not yet agreed to, in any later session${withOpenid ? ' (openid among the client\'s and the requested scopes)' : ''}`, async () => {
        const oidc = withOpenid ? ['openid'] : [];
        const c = await makeClient(database.db, { grantTypes: ['authorization_code'], scope: [...oidc, 'orders:read', 'orders:write'], redirectUris: [REDIRECT] });
        const user = await makeUser(database.db, `consent-again-${++fresh}`, { roles: ['order-admin'] });
        /** A flow in `browser`; the scopes the consent page listed, or undefined when it did not appear. */
        const run = async (browser: Browser, scope: string[]) => {
          let listed: string[] | undefined;
          const back = await runCodeFlow(browser, {
            clientId: c.id, redirectUri: REDIRECT, scope: [...oidc, ...scope].join(' '), username: user.username, password: user.password,
            onConsent: (html) => (listed = [...html.matchAll(/<span class="scope">\(([^)]+)\)<\/span>/g)].map((m) => m[1]!).sort()),
          });
          const code = back.searchParams.get('code');
          assert.ok(code, back.href);
          const redeemed = await redeem(c, code);
          assert.equal(redeemed.status, 200, redeemed.text);
          assert.deepEqual(redeemed.json.scope.split(' ').filter((s: string) => !oidc.includes(s)).sort(), [...scope].sort());
          return listed;
        };
        const first = new Browser(server.url);
        assert.deepEqual(await run(first, ['orders:read']), ['orders:read'], 'asked the first time');
        assert.equal(await run(first, ['orders:read']), undefined, 'not again in the same session');
        assert.equal(await run(new Browser(server.url), ['orders:read']), undefined, 'nor in a new session');
        const wider = await run(new Browser(server.url), ['orders:read', 'orders:write']);
        assert.ok(wider?.includes('orders:write'), `asked again for the new scope: ${wider}`);
        for (const scope of [['orders:write'], ['orders:read', 'orders:write']]) {
          assert.equal(await run(new Browser(server.url), scope), undefined, `${scope} is agreed to now`);
        }
      });
    }

    it('deny sends access_denied to the client', async () => {
      const b = new Browser(server.url);
      const consent = await toConsent(b);
      const step = await b.follow(await b.post(formAction(consent.html!), { csrf: formToken(consent.html!), decision: 'deny' }));
      assert.equal(new URL(step.location!).searchParams.get('error'), 'access_denied');
    });
  });
});
