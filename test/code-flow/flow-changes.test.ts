// What may change while a browser is in the code flow: another user signing in on a browser
// where someone already is (prompt=login), and the client's registration (a redirect URI
// removed while the sign-in page is open).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, formAction, formToken, runCodeFlow, type Step } from '../support/browserless.ts';
import { deleteClient, updateClient } from '../../src/store/clients.ts';
import { syncEveryInstance } from '../support/wait.ts';

const REDIRECT = 'https://app.example/cb';
const OLD_REDIRECT = 'https://old.example/cb';
const FAST = { memoryCost: 8192, timeCost: 1, parallelism: 1 };

/** The hidden fields of the page's one form. */
function hiddenFields(html: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"\s*\/?>/g)) fields[m[1]!] = m[2]!;
  return fields;
}

describe('the code flow while things change', () => {
  let database: TestDatabase;
  let server: TestServer;
  let web: TestClient;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    await makeScope(database.db, 'orders:read');
    web = await makeClient(database.db, { grantTypes: ['authorization_code'], scope: ['orders:read'], redirectUris: [REDIRECT, OLD_REDIRECT] });
    alice = await makeUser(database.db, 'alice', { params: FAST });
    bob = await makeUser(database.db, 'bob', { params: FAST });
    carol = await makeUser(database.db, 'carol', { params: FAST });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const redeem = (code: string, redirectUri = REDIRECT) =>
    postForm(`${server.url}/token`, { grant_type: 'authorization_code', code, redirect_uri: redirectUri }, { basic: web.basic });
  const usernameOf = async (accessToken: string) =>
    (await postForm(`${server.url}/introspect`, { token: accessToken }, { basic: web.basic })).json.username;
  const authorize = (browser: Browser, extra: Record<string, string> = {}, redirectUri = REDIRECT) =>
    browser.get(`/authorize?${new URLSearchParams({ response_type: 'code', client_id: web.id, redirect_uri: redirectUri, scope: 'orders:read', state: 'st-1', ...extra })}`);
  const codeFrom = (step: Step) => {
    assert.ok(step.location?.startsWith(`${REDIRECT}?`), `redirected to the client: ${step.status} ${step.location ?? step.html?.slice(0, 300)}`);
    return new URL(step.location!).searchParams.get('code')!;
  };

  it('prompt=login: another user signs in on a browser where one is signed in; the first one\'s session ends', async () => {
    const browser = new Browser(server.url);
    const first = await runCodeFlow(browser, { clientId: web.id, redirectUri: REDIRECT, scope: 'orders:read', username: alice.username, password: alice.password });
    const aliceTokens = await redeem(first.searchParams.get('code')!);
    assert.equal(await usernameOf(aliceTokens.json.access_token), 'alice');

    let step = await browser.follow(await authorize(browser, { prompt: 'login' }));
    assert.match(step.html ?? '', /name="password"/, 'the sign-in page');
    step = await browser.post(formAction(step.html!), { csrf: formToken(step.html!), username: bob.username, password: bob.password });
    step = await browser.follow(step);
    // The engine ends alice's session first, through a form the page posts by itself.
    const fields = hiddenFields(step.html ?? '');
    assert.equal(fields.logout, 'yes', step.html);
    step = await browser.follow(await browser.post(formAction(step.html!), fields));
    if (step.html?.includes('name="decision"')) {
      step = await browser.follow(await browser.post(formAction(step.html), { csrf: formToken(step.html), decision: 'approve' }));
    }
    // What applications already hold of alice is theirs until it expires or is revoked (README).
    assert.equal(await usernameOf(aliceTokens.json.access_token), 'alice');
    const bobTokens = await redeem(codeFrom(step));
    assert.equal(bobTokens.status, 200, bobTokens.text);
    assert.equal(await usernameOf(bobTokens.json.access_token), 'bob');

    // The browser is bob's now: a silent request gets bob's code, never alice's.
    const silent = await browser.follow(await authorize(browser, { prompt: 'none' }));
    const silentTokens = await redeem(codeFrom(silent));
    assert.equal(await usernameOf(silentTokens.json.access_token), 'bob');
  });

  /** Removes OLD_REDIRECT from the client while `during` runs, and puts it back after. */
  const withoutOldRedirect = async (during: () => Promise<void>) => {
    await updateClient(database.db, web.id, { redirectUris: [REDIRECT] });
    await syncEveryInstance(database.url);
    try {
      await during();
    } finally {
      await updateClient(database.db, web.id, { redirectUris: [REDIRECT, OLD_REDIRECT] });
      await syncEveryInstance(database.url);
    }
  };

  it('a redirect URI removed while the consent page is open gets nothing, not even the refusal: approve or deny, an error page', async () => {
    for (const decision of ['deny', 'approve']) {
      const browser = new Browser(server.url);
      let step = await browser.follow(await authorize(browser, {}, OLD_REDIRECT));
      step = await browser.follow(await browser.post(formAction(step.html!), { csrf: formToken(step.html!), username: carol.username, password: carol.password }));
      assert.match(step.html ?? '', /name="decision"/, 'the consent page');
      await withoutOldRedirect(async () => {
        const answered = await browser.post(formAction(step.html!), { csrf: formToken(step.html!), decision });
        assert.equal(answered.status, 400, `${decision}: ${answered.location ?? ''}`);
        assert.equal(answered.location, undefined);
        assert.match(answered.html ?? '', /invalid_redirect_uri/);
      });
    }
  });

  it('a client deleted while its consent page is open: an error page, not a 401 (a browser would ask for a password)', async () => {
    const doomed = await makeClient(database.db, { grantTypes: ['authorization_code'], scope: ['orders:read'], redirectUris: [REDIRECT] });
    const browser = new Browser(server.url);
    let step = await browser.follow(await browser.get(`/authorize?${new URLSearchParams({ response_type: 'code', client_id: doomed.id, redirect_uri: REDIRECT, scope: 'orders:read', state: 'st-1' })}`));
    step = await browser.follow(await browser.post(formAction(step.html!), { csrf: formToken(step.html!), username: alice.username, password: alice.password }));
    assert.match(step.html ?? '', /name="decision"/, 'the consent page');
    await deleteClient(database.db, doomed.id);
    await syncEveryInstance(database.url);
    const answered = await browser.post(formAction(step.html!), { csrf: formToken(step.html!), decision: 'approve' });
    assert.equal(answered.status, 400, answered.html?.slice(0, 300));
    assert.equal(answered.location, undefined);
    assert.match(answered.html ?? '', /^<!doctype html>/i);
    assert.match(answered.html ?? '', /invalid_redirect_uri/);
  });

  it('a redirect URI removed while the sign-in page is open gets no code: an error page, never a redirect to it', async () => {
    const browser = new Browser(server.url);
    let step = await browser.follow(await authorize(browser, {}, OLD_REDIRECT));
    assert.match(step.html ?? '', /name="password"/, 'the sign-in page');
    await updateClient(database.db, web.id, { redirectUris: [REDIRECT] });
    await syncEveryInstance(database.url);
    try {
      step = await browser.post(formAction(step.html!), { csrf: formToken(step.html!), username: alice.username, password: alice.password });
      step = await browser.follow(step);
      assert.equal(step.status, 400, `${step.location ?? ''} ${step.html?.slice(0, 300)}`);
      assert.equal(step.location, undefined);
      assert.match(step.html ?? '', /invalid_redirect_uri/);
    } finally {
      await updateClient(database.db, web.id, { redirectUris: [REDIRECT, OLD_REDIRECT] });
      await syncEveryInstance(database.url);
    }
  });
});
