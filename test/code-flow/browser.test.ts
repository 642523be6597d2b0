// The authorization code flow in a real browser: playwright-core driving Debian's chromium
// through the key manager's own login and consent pages, to a test client's redirect URI
// served on loopback, then the code redeemed at /token. Screenshots of the pages go to
// test-output/ (git-ignored) and their paths are printed with the test results.
//
// Chromium is required, never optional: CI installs it (.ci/run), and a missing browser
// fails this file instead of skipping it.
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createScope } from '../../src/store/scopes.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { pkcePair } from '../support/browserless.ts';

// What the functions run inside the page see (the project's type-check has no DOM library).
declare const document: { activeElement: unknown; documentElement: { scrollWidth: number; clientWidth: number } };

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const OUTPUT_DIR = fileURLToPath(new URL('../../test-output/', import.meta.url));
const STEP_TIMEOUT = 15_000;

const SCOPES = [
  { name: 'orders:read', description: 'See your orders and their status' },
  { name: 'orders:write', description: 'Place and cancel orders for you' },
];

/** A stand-in for the client application: serves its redirect URI and records each visit. */
interface CallbackServer {
  redirectUri: string;
  visits: URLSearchParams[];
  close(): Promise<void>;
}

async function startCallbackServer(): Promise<CallbackServer> {
  const visits: URLSearchParams[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method === 'GET' && url.pathname === '/cb') {
      visits.push(url.searchParams);
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('ok');
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  return {
    redirectUri: `http://127.0.0.1:${port}/cb`,
    visits,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

describe('authorization code flow in a browser (chromium)', () => {
  let database: TestDatabase;
  let server: TestServer;
  let callback: CallbackServer;
  let browser: Browser;
  let thirdParty: TestClient;
  let firstParty: TestClient;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  const contexts: BrowserContext[] = [];

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Debian's chromium is required at ${CHROMIUM} (npm test installs it: test/support/system-packages.ts)`);
    mkdirSync(OUTPUT_DIR, { recursive: true });
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    callback = await startCallbackServer();
    for (const s of SCOPES) await createScope(database.db, s.name, s.description);
    const common = {
      grantTypes: ['authorization_code', 'refresh_token'],
      scope: SCOPES.map((s) => s.name),
      redirectUris: [callback.redirectUri],
    };
    thirdParty = await makeClient(database.db, { ...common, name: 'Order Tracker' });
    firstParty = await makeClient(database.db, { ...common, name: 'Company Portal', firstParty: true });
    alice = await makeUser(database.db, 'alice');
    bob = await makeUser(database.db, 'bob');
    carol = await makeUser(database.db, 'carol');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await callback?.close();
    await server?.stop();
    await database?.drop();
  });

  /** A fresh browser profile (cookies, storage) with its own page. */
  async function newPage(options: Parameters<Browser['newContext']>[0] = {}): Promise<Page> {
    const context = await browser.newContext(options);
    contexts.push(context);
    context.setDefaultTimeout(STEP_TIMEOUT);
    const page = await context.newPage();
    // CSP violations and other refusals show up here: kept for failure messages.
    const consoleLines: string[] = [];
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    (page as Page & { consoleLines?: string[] }).consoleLines = consoleLines;
    return page;
  }

  function consoleOf(page: Page): string {
    return ((page as Page & { consoleLines?: string[] }).consoleLines ?? []).join('\n');
  }

  function authorizeUrl(client: TestClient, extra: Record<string, string> = {}): string {
    const params = new URLSearchParams({
      response_type: 'code',
      client_id: client.id,
      redirect_uri: callback.redirectUri,
      scope: SCOPES.map((s) => s.name).join(' '),
      state: 'xyz',
      ...extra,
    });
    return `${server.url}/authorize?${params}`;
  }

  type Landing = 'login' | 'consent' | 'callback' | 'other';

  function where(page: Page, title: string): Landing {
    if (page.url().startsWith(`${callback.redirectUri}?`)) return 'callback';
    if (title === 'Sign in') return 'login';
    if (title === 'Allow access') return 'consent';
    return 'other';
  }

  /** Runs an action that submits a form or navigates, and says where the browser ends up. */
  async function navigate(page: Page, action: () => Promise<unknown>): Promise<Landing> {
    // A document's load event fires once: waiting for the next one means the next page,
    // after any redirects, has loaded.
    const loaded = page.waitForEvent('load', { timeout: STEP_TIMEOUT });
    await action();
    try {
      await loaded;
    } catch (err) {
      assert.fail(`no new page loaded after the action (still at ${page.url()}): ${(err as Error).message}\nconsole:\n${consoleOf(page)}`);
    }
    return where(page, await page.title());
  }

  async function screenshot(t: TestContext, page: Page, name: string): Promise<void> {
    const path = `${OUTPUT_DIR}${name}`;
    await page.screenshot({ path, fullPage: true });
    t.diagnostic(`screenshot: ${path}`);
    console.log(`screenshot: ${path}`);
  }

  async function signIn(page: Page, user: TestUser): Promise<Landing> {
    await page.getByLabel('Username').fill(user.username);
    await page.getByLabel('Password').fill(user.password);
    return navigate(page, () => page.getByLabel('Password').press('Enter'));
  }

  function callbackParams(page: Page): URLSearchParams {
    const url = new URL(page.url());
    assert.equal(`${url.origin}${url.pathname}`, callback.redirectUri);
    // The client's server saw the same redirect the browser followed.
    const seen = callback.visits.at(-1);
    assert.ok(seen, 'the redirect URI was loaded');
    assert.equal(seen.toString(), url.searchParams.toString());
    return url.searchParams;
  }

  async function redeem(client: TestClient, code: string, verifier?: string) {
    const form: Record<string, string> = { grant_type: 'authorization_code', code, redirect_uri: callback.redirectUri };
    if (verifier) form.code_verifier = verifier;
    return postForm(`${server.url}/token`, form, { basic: client.basic });
  }

  it('signs in through the login page (wrong password first), consents, and redeems the code with PKCE', async (t) => {
    const page = await newPage();
    const { verifier, challenge } = pkcePair();
    assert.equal(await navigate(page, () => page.goto(authorizeUrl(thirdParty, { code_challenge: challenge, code_challenge_method: 'S256' }))), 'login');

    // The real login page: labelled fields, the client named, the username field focused.
    assert.equal(await page.title(), 'Sign in');
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Sign in');
    assert.match(await page.locator('main').innerText(), /Order Tracker/);
    const username = page.getByLabel('Username');
    const password = page.getByLabel('Password');
    assert.equal(await username.getAttribute('type'), 'text');
    assert.equal(await password.getAttribute('type'), 'password');
    assert.equal(await username.getAttribute('autocomplete'), 'username');
    assert.equal(await password.getAttribute('autocomplete'), 'current-password');
    assert.equal(await username.evaluate((el) => el === document.activeElement), true, 'the username field has the focus');
    assert.equal(await page.getByRole('alert').count(), 0);
    await screenshot(t, page, 'login.png');

    // Keyboard only: type into the focused field, Tab to the password, Enter submits.
    await page.keyboard.type(alice.username);
    await page.keyboard.press('Tab');
    assert.equal(await password.evaluate((el) => el === document.activeElement), true, 'Tab moves to the password field');
    await page.keyboard.type('not the password');
    assert.equal(await navigate(page, () => page.keyboard.press('Enter')), 'login', 'a wrong password stays on the login page');
    const alert = page.getByRole('alert');
    assert.equal(await alert.count(), 1, 'the error is announced');
    assert.match(await alert.innerText(), /username or password is incorrect/i);
    assert.equal(await page.getByLabel('Username').inputValue(), alice.username, 'the username is kept');
    assert.equal(await page.getByLabel('Password').inputValue(), '', 'the password is not echoed back');
    assert.equal(await page.getByLabel('Username').getAttribute('aria-describedby'), await alert.getAttribute('id'));
    assert.equal(callback.visits.length, 0, 'nothing reached the client');
    await screenshot(t, page, 'login-error.png');

    // The right password: the consent page lists the scopes with their descriptions.
    assert.equal(await signIn(page, alice), 'consent');
    assert.equal(await page.getByRole('heading', { level: 1 }).textContent(), 'Allow access?');
    const text = await page.locator('main').innerText();
    assert.match(text, /Order Tracker/);
    assert.match(text, /alice/);
    const items = await page.getByRole('listitem').allInnerTexts();
    assert.equal(items.length, SCOPES.length, items.join('\n'));
    for (const s of SCOPES) {
      assert.ok(items.some((i) => i.includes(s.description) && i.includes(s.name)), `scope ${s.name} with its description in: ${items.join(' | ')}`);
    }
    assert.equal(await page.getByRole('button', { name: 'Allow' }).count(), 1);
    assert.equal(await page.getByRole('button', { name: 'Deny' }).count(), 1);
    await screenshot(t, page, 'consent.png');

    assert.equal(await navigate(page, () => page.getByRole('button', { name: 'Allow' }).click()), 'callback',
      `expected the redirect URI, at ${page.url()}`);
    const params = callbackParams(page);
    assert.equal(params.get('state'), 'xyz');
    assert.equal(params.get('error'), null);
    const code = params.get('code');
    assert.ok(code, 'a code in the redirect');
    assert.equal(params.get('iss'), server.url, 'RFC 9207 issuer in the response');

    const tokens = await redeem(thirdParty, code, verifier);
    assert.equal(tokens.status, 200, tokens.text);
    assert.equal(tokens.json.token_type, 'Bearer');
    assert.equal(typeof tokens.json.access_token, 'string');
    assert.equal(typeof tokens.json.refresh_token, 'string');
    assert.deepEqual(String(tokens.json.scope).split(' ').sort(), SCOPES.map((s) => s.name).sort());
    const seen = await postForm(`${server.url}/introspect`, { token: tokens.json.access_token }, { basic: thirdParty.basic });
    assert.equal(seen.json.active, true, seen.text);
    assert.equal(seen.json.sub, alice.id);
    assert.equal(seen.json.client_id, thirdParty.id);

    // The same code a second time is refused.
    const again = await redeem(thirdParty, code, verifier);
    assert.equal(again.status, 400, again.text);
    assert.equal(again.json.error, 'invalid_grant');

    // Same browser, same client: signed in and consent given, so straight back to the client.
    const pkce = pkcePair();
    assert.equal(await navigate(page, () => page.goto(authorizeUrl(thirdParty, { code_challenge: pkce.challenge, code_challenge_method: 'S256' }))), 'callback',
      `expected no login and no consent in the same browser, at ${page.url()}`);
    const second = callbackParams(page);
    assert.equal(second.get('state'), 'xyz');
    const tokens2 = await redeem(thirdParty, second.get('code')!, pkce.verifier);
    assert.equal(tokens2.status, 200, tokens2.text);
  });

  it('remembers consent: signing in again from another browser skips the consent page', async () => {
    const page = await newPage();
    assert.equal(await navigate(page, () => page.goto(authorizeUrl(thirdParty))), 'login');
    assert.equal(await signIn(page, alice), 'callback', `expected no consent page for alice, at ${page.url()} (${await page.title()})`);
    const params = callbackParams(page);
    assert.equal(params.get('state'), 'xyz');
    const tokens = await redeem(thirdParty, params.get('code')!);
    assert.equal(tokens.status, 200, tokens.text);
    assert.deepEqual(String(tokens.json.scope).split(' ').sort(), SCOPES.map((s) => s.name).sort());
  });

  it('never shows the consent page for a first-party client', async () => {
    const page = await newPage();
    assert.equal(await navigate(page, () => page.goto(authorizeUrl(firstParty))), 'login');
    assert.match(await page.locator('main').innerText(), /Company Portal/);
    assert.equal(await signIn(page, bob), 'callback', `expected no consent page, at ${page.url()} (${await page.title()})`);
    const params = callbackParams(page);
    assert.equal(params.get('state'), 'xyz');
    const tokens = await redeem(firstParty, params.get('code')!);
    assert.equal(tokens.status, 200, tokens.text);
    const seen = await postForm(`${server.url}/introspect`, { token: tokens.json.access_token }, { basic: firstParty.basic });
    assert.equal(seen.json.sub, bob.id);
  });

  it('Deny sends the user back to the client with error=access_denied', async () => {
    const page = await newPage();
    assert.equal(await navigate(page, () => page.goto(authorizeUrl(thirdParty))), 'login');
    assert.equal(await signIn(page, carol), 'consent');
    assert.equal(await navigate(page, () => page.getByRole('button', { name: 'Deny' }).click()), 'callback',
      `expected the redirect URI, at ${page.url()}`);
    const params = callbackParams(page);
    assert.equal(params.get('error'), 'access_denied');
    assert.equal(params.get('state'), 'xyz');
    assert.equal(params.get('code'), null);

    // Denying is not remembered as consent: the next attempt asks again.
    const next = await newPage();
    assert.equal(await navigate(next, () => next.goto(authorizeUrl(thirdParty))), 'login');
    assert.equal(await signIn(next, carol), 'consent');
  });

  it('is readable on a phone (390×844)', async (t) => {
    const page = await newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
    assert.equal(await navigate(page, () => page.goto(authorizeUrl(thirdParty))), 'login');
    // Nothing wider than the screen: no sideways scrolling on a phone.
    const widths = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth }));
    assert.ok(widths.scroll <= widths.client, `page is ${widths.scroll}px wide on a ${widths.client}px screen`);
    const box = await page.getByLabel('Password').boundingBox();
    assert.ok(box && box.x >= 0 && box.x + box.width <= 390, `password field within the screen: ${JSON.stringify(box)}`);
    await screenshot(t, page, 'login-phone.png');
  });
});
