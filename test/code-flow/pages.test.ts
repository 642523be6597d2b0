// What the sign-in pages say, word for word: the consent page reads as a question a person
// can answer, and every error page says what happened and what to do next (go back to the
// application), with the protocol error only as a detail for the application's support.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createScope } from '../../src/store/scopes.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, formAction, formToken, type Step } from '../support/browserless.ts';

const REDIRECT = 'http://127.0.0.1:8080/callback';
const GO_BACK = 'Go back to the application you came from and start again from there.';

/** The text a reader sees in <main>, one line per block, entities decoded. */
function visibleText(html: string | undefined): string[] {
  const main = /<main>([\s\S]*)<\/main>/.exec(html ?? '')?.[1] ?? '';
  return main
    .replace(/<(p|h1|li|ul|div|form|button|label)\b[^>]*>/g, '\n')
    .replace(/<[^>]+>/g, '')
    .replace(/&#(\d+);/g, (_s, c) => String.fromCharCode(Number(c)))
    .split('\n')
    .map((line) => line.replace(/\s+/g, ' ').trim())
    .filter(Boolean);
}

describe('the sign-in pages say what to do', () => {
  let database: TestDatabase;
  let server: TestServer;
  let tracker: TestClient;
  let alice: TestUser;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    await createScope(database.db, 'orders:read', 'See your orders and their status');
    await createScope(database.db, 'orders:write', '');
    const common = { grantTypes: ['authorization_code'], redirectUris: [REDIRECT] };
    tracker = await makeClient(database.db, { ...common, name: 'Order Tracker', scope: ['orders:read', 'orders:write'] });
    alice = await makeUser(database.db, 'alice');
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const authorize = (b: Browser, params: Record<string, string>) =>
    b.get(`/authorize?${new URLSearchParams({ response_type: 'code', redirect_uri: REDIRECT, state: 'st', ...params })}`);

  async function consentStep(b: Browser, client: TestClient, scope: string): Promise<Step> {
    const login = await b.follow(await authorize(b, { client_id: client.id, scope }));
    assert.match(login.html ?? '', /name="password"/);
    return b.follow(await b.post(formAction(login.html!), { csrf: formToken(login.html!), username: alice.username, password: alice.password }));
  }

  it('the consent page asks for the permissions by their descriptions, then says who is signed in', async () => {
    const step = await consentStep(new Browser(server.url), tracker, 'orders:read orders:write');
    assert.equal(step.status, 200, step.html);
    assert.deepEqual(visibleText(step.html), [
      'Allow access?',
      'Order Tracker would like permission to:',
      'See your orders and their status (orders:read)',
      'orders:write (orders:write)',
      'You are signed in as alice. If you allow it, you will not be asked again for these permissions.',
      'Allow',
      'Deny',
    ]);
  });

  it('a redirect URI that is not registered: what happened, go back to the application, and the protocol error as a detail', async () => {
    const step = await authorize(new Browser(server.url), { client_id: tracker.id, redirect_uri: 'http://127.0.0.1:9999/elsewhere', scope: 'orders:read' });
    assert.equal(step.status, 400);
    assert.equal(step.location, undefined);
    assert.deepEqual(visibleText(step.html), [
      'Sign-in cannot continue',
      'The application that sent you here made a request this sign-in service does not accept, so you cannot sign in from this page.',
      `${GO_BACK} If this happens again, tell the application's support team and pass on the details below.`,
      "Details for the application's support: invalid_redirect_uri: redirect_uri did not match any of the client's registered redirect_uris",
    ]);
  });

  it('an unknown client: the same page, with its own detail', async () => {
    const step = await authorize(new Browser(server.url), { client_id: 'no-such-client', scope: 'orders:read' });
    assert.equal(step.status, 400);
    const text = visibleText(step.html);
    assert.equal(text[0], 'Sign-in cannot continue');
    assert.equal(text[2], `${GO_BACK} If this happens again, tell the application's support team and pass on the details below.`);
    assert.equal(text[3], "Details for the application's support: invalid_client: client is invalid");
  });

  it('a sign-in page that is no longer valid says so and sends the user back to the application', async () => {
    const b = new Browser(server.url);
    const login = await b.follow(await authorize(b, { client_id: tracker.id, scope: 'orders:read' }));
    const other = new Browser(server.url); // another browser: no cookie of this sign-in
    const step = await other.get(login.url);
    assert.equal(step.status, 400);
    assert.deepEqual(visibleText(step.html), [
      'Sign-in expired',
      'This sign-in page is no longer valid: it was used already, or it waited too long.',
      GO_BACK,
    ]);
  });

  it('a form that was tampered with is refused with the way back', async () => {
    const b = new Browser(server.url);
    const login = await b.follow(await authorize(b, { client_id: tracker.id, scope: 'orders:read' }));
    const step = await b.post(formAction(login.html!), { csrf: 'forged', username: alice.username, password: alice.password });
    assert.equal(step.status, 400);
    assert.deepEqual(visibleText(step.html), [
      'Sign-in cannot continue',
      'The form you sent was not the one this page gave you (it was changed, or sent from another browser).',
      GO_BACK,
    ]);
  });
});
