// Refusals at /authorize (RFC 6749 §4.1.2.1, RFC 7636 §4, OpenID prompt=none): an error about
// the client or its redirect URI is a page shown to the user, never a redirect; every other
// error goes back to the client's redirect URI with `error`, `error_description`, `state`
// and `iss` (RFC 9207). The server runs behind a TCP relay so that the last test can take
// the database away from it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { startTcpProxy, viaProxy, type TcpProxy } from '../support/tcp-proxy.ts';
import { makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, formAction, formToken, runCodeFlow, type Step } from '../support/browserless.ts';

const REDIRECT = 'https://app.example/cb';
/** RFC 7636 §4.1: 43 to 128 characters of ALPHA / DIGIT / "-" / "." / "_" / "~". */
const UNRESERVED = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~';

describe('refusals at the authorization endpoint', () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  let server: TestServer;
  let web: TestClient;
  let passwordApp: TestClient;
  let alice: TestUser;

  const authorize = (browser: Browser, params: Record<string, string>) => browser.get(`/authorize?${new URLSearchParams(params)}`);
  const request = (extra: Record<string, string | undefined> = {}): Record<string, string> => {
    const all: Record<string, string | undefined> = { response_type: 'code', client_id: web.id, redirect_uri: REDIRECT, scope: 'read', state: 'st-1', ...extra };
    return Object.fromEntries(Object.entries(all).filter((e): e is [string, string] => e[1] !== undefined));
  };

  /** A redirect to the client carrying the error (in the query, or the fragment when so told). */
  function assertRedirectedError(step: Step, error: string, { state = 'st-1', in: part = 'query' }: { state?: string; in?: 'query' | 'fragment' } = {}): URLSearchParams {
    assert.equal(step.status, 303, `${step.status} ${step.location ?? step.html?.slice(0, 300)}`);
    const back = new URL(step.location!);
    assert.equal(`${back.origin}${back.pathname}`, REDIRECT, step.location);
    const params = new URLSearchParams(part === 'query' ? back.search : back.hash.slice(1));
    assert.equal(part === 'query' ? back.hash : back.search, '', `nothing in the ${part === 'query' ? 'fragment' : 'query'}: ${step.location}`);
    assert.equal(params.get('error'), error, step.location);
    assert.ok(params.get('error_description'), `an error_description: ${step.location}`);
    assert.equal(params.get('state'), state, step.location);
    assert.equal(params.get('iss'), server.config.issuer, step.location);
    assert.equal(params.get('code'), null);
    return params;
  }

  /** An error page for the user (no redirect), naming the error. */
  function assertErrorPage(step: Step, status: number, error: string, mentions: RegExp): void {
    assert.equal(step.status, status, step.location ?? step.html?.slice(0, 300));
    assert.equal(step.location, undefined);
    // README: the page says what the user can do next; the protocol error goes along as a detail.
    assert.match(step.html ?? '', /Go back to the application you came from/);
    assert.match(step.html ?? '', new RegExp(`Details for the application's support: <span class="scope">${error}: `));
    assert.match(step.html ?? '', mentions);
    assert.doesNotMatch(step.html ?? '', /at .*\.(ts|js):\d+/, 'no stack trace');
  }

  /** Signs alice in (and consents) at an /authorize that went to the sign-in page. */
  async function signIn(browser: Browser, first: Step): Promise<Step> {
    let step = await browser.follow(first);
    assert.match(step.html ?? '', /name="password"/, 'the sign-in page');
    step = await browser.follow(await browser.post(formAction(step.html!), { csrf: formToken(step.html!), username: alice.username, password: alice.password }));
    if (step.html?.includes('name="decision"')) {
      step = await browser.follow(await browser.post(formAction(step.html), { csrf: formToken(step.html), decision: 'approve' }));
    }
    return step;
  }

  before(async () => {
    database = await createTestDatabase();
    const target = new URL(database.url);
    proxy = await startTcpProxy(target.hostname, Number(target.port));
    server = await startTestServer(viaProxy(database.url, proxy));
    await makeScope(database.db, 'read');
    await makeScope(database.db, 'write');
    await makeScope(database.db, 'orders:write', ['order-admin']);
    await makeScope(database.db, 'reports');
    web = await makeClient(database.db, { grantTypes: ['authorization_code', 'refresh_token'], scope: ['read', 'write', 'orders:write'], redirectUris: [REDIRECT] });
    // Registered with the redirect URI, but without the authorization_code grant.
    passwordApp = await makeClient(database.db, { grantTypes: ['password', 'refresh_token'], scope: ['read'], redirectUris: [REDIRECT] });
    alice = await makeUser(database.db, 'alice', { params: { memoryCost: 8192, timeCost: 1, parallelism: 1 } });
  });
  after(async () => {
    await server?.stop();
    await proxy?.close();
    await database?.drop();
  });

  describe('about the client or its redirect URI: an error page, never a redirect', () => {
    it('no client_id → 400 page naming it', async () => {
      assertErrorPage(await authorize(new Browser(server.url), request({ client_id: undefined })), 400, 'invalid_request', /client_id/);
    });

    it('no redirect_uri, although the client has only one → 400 page naming it', async () => {
      assertErrorPage(await authorize(new Browser(server.url), request({ redirect_uri: undefined })), 400, 'invalid_request', /redirect_uri/);
    });
  });

  describe('anything else: back to the redirect URI with error, error_description, state and iss', () => {
    it('no response_type → invalid_request', async () => {
      const params = assertRedirectedError(await authorize(new Browser(server.url), request({ response_type: undefined })), 'invalid_request');
      assert.match(params.get('error_description')!, /response_type/);
    });

    it('response_type=token → unsupported_response_type, in the fragment as RFC 6749 §4.2.2.1 has it for that response type', async () => {
      assertRedirectedError(await authorize(new Browser(server.url), request({ response_type: 'token' })), 'unsupported_response_type', { in: 'fragment' });
    });

    it('response_type=something unknown → unsupported_response_type', async () => {
      assertRedirectedError(await authorize(new Browser(server.url), request({ response_type: 'ticket' })), 'unsupported_response_type');
    });

    it('a client without the authorization_code grant → unauthorized_client', async () => {
      assertRedirectedError(await authorize(new Browser(server.url), request({ client_id: passwordApp.id })), 'unauthorized_client');
    });

    it('a resource other than this server → invalid_target (RFC 8707 §2)', async () => {
      assertRedirectedError(await authorize(new Browser(server.url), request({ resource: 'https://elsewhere.example/api' })), 'invalid_target');
    });

    for (const [name, scope] of [
      ['unregistered', 'admin'],
      ['registered but not allowed to the client', 'reports'],
      ['bound to a role the user lacks', 'orders:write'],
    ] as const) {
      it(`a scope ${name}, and nothing else → invalid_scope once the user is known`, async () => {
        const browser = new Browser(server.url);
        assertRedirectedError(await signIn(browser, await authorize(browser, request({ scope }))), 'invalid_scope');
      });
    }

    for (const scope of [undefined, 'offline_access']) {
      it(`${scope === undefined ? 'no scope' : `only ${scope}`} → invalid_scope once the user is known (RFC 6749 §3.3)`, async () => {
        const browser = new Browser(server.url);
        assertRedirectedError(await signIn(browser, await authorize(browser, request({ scope }))), 'invalid_scope');
      });
    }

    it('with a signed-in user, prompt=none and no scope that can be granted → invalid_scope', async () => {
      const browser = new Browser(server.url);
      await runCodeFlow(browser, { clientId: web.id, redirectUri: REDIRECT, scope: 'read', username: alice.username, password: alice.password, state: 'st-1' });
      assertRedirectedError(await authorize(browser, request({ scope: 'admin', prompt: 'none' })), 'invalid_scope');
    });

    it('prompt=none without a signed-in user → login_required', async () => {
      assertRedirectedError(await authorize(new Browser(server.url), request({ prompt: 'none' })), 'login_required');
    });

    it('prompt=none for a scope not yet agreed to → consent_required; for one agreed to → a code', async () => {
      const browser = new Browser(server.url);
      await runCodeFlow(browser, { clientId: web.id, redirectUri: REDIRECT, scope: 'read', username: alice.username, password: alice.password });
      assertRedirectedError(await authorize(browser, request({ scope: 'read write', prompt: 'none', state: 'st-2' })), 'consent_required', { state: 'st-2' });
      const agreed = await authorize(browser, request({ scope: 'read', prompt: 'none' }));
      assert.equal(agreed.status, 303);
      const back = new URL(agreed.location!);
      assert.equal(`${back.origin}${back.pathname}`, REDIRECT);
      assert.ok(back.searchParams.get('code'), agreed.location);
      assert.equal(back.searchParams.get('error'), null);
    });

    for (const [name, challenge] of [
      ['42 characters', UNRESERVED.slice(0, 42)],
      ['129 characters', UNRESERVED.repeat(2).slice(0, 129)],
      ['a "+" (base64, not base64url)', `${UNRESERVED.slice(0, 42)}+`],
      ['a "/"', `${UNRESERVED.slice(0, 42)}/`],
      ['"=" padding', `${UNRESERVED.slice(0, 42)}=`],
      ['a space', `${UNRESERVED.slice(0, 42)} `],
    ] as const) {
      it(`a code_challenge with ${name} → invalid_request (RFC 7636 §4.4.1)`, async () => {
        const params = assertRedirectedError(await authorize(new Browser(server.url), request({ code_challenge: challenge, code_challenge_method: 'S256' })), 'invalid_request');
        assert.match(params.get('error_description')!, /code_challenge/);
      });
    }

    it('code_challenges of 43 and 128 unreserved characters are accepted: on to the sign-in page', async () => {
      for (const challenge of [UNRESERVED.slice(0, 43), UNRESERVED.repeat(2).slice(0, 128)]) {
        const step = await authorize(new Browser(server.url), request({ code_challenge: challenge, code_challenge_method: 'S256' }));
        assert.equal(step.status, 303, step.html?.slice(0, 300));
        assert.match(step.location ?? '', /^\/interaction\/[A-Za-z0-9_-]+$/);
      }
    });
  });

  describe('the database unavailable', () => {
    let stranger: TestClient;
    let cut = false;
    const restore = async () => {
      if (cut) await proxy.restore();
      cut = false;
    };
    before(async () => {
      // A client this instance has never looked up: nothing of it is held in memory.
      stranger = await makeClient(database.db, { grantTypes: ['authorization_code'], scope: ['read'], redirectUris: [REDIRECT] });
      await proxy.cut();
      cut = true;
    });
    after(restore);

    it('→ 503 page temporarily_unavailable, never a redirect to a redirect URI that could not be checked', async () => {
      const step = await authorize(new Browser(server.url), request({ client_id: stranger.id }));
      assertErrorPage(step, 503, 'temporarily_unavailable', /temporarily unavailable/);
      assert.doesNotMatch(step.html ?? '', /ECONNREFUSED|127\.0\.0\.1|postgres/i, 'no connection detail');
    });

    it('and /authorize works again once the database is back', async () => {
      await restore();
      // Observable condition, generous deadline: /readyz says the pool reaches the database.
      const deadline = Date.now() + 30_000;
      while ((await fetch(`${server.url}/readyz`)).status !== 200) {
        assert.ok(Date.now() < deadline, 'the database did not come back within 30 s');
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const step = await authorize(new Browser(server.url), request({ client_id: stranger.id }));
      assert.equal(step.status, 303, step.html?.slice(0, 300));
      assert.match(step.location ?? '', /^\/interaction\//);
    });
  });
});
