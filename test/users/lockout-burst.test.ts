// Brute-force protection under a burst: guesses sent all at once, each on its own connection,
// on one instance and split over two. The count and the check are one step, so no more than
// the configured number of passwords are ever checked within the window, and the right
// password is refused while the lock holds.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader, rawRequest } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient } from '../support/fixtures.ts';

const MAX_FAILURES = 4;
const MAX_PER_ADDRESS = 6;
const BURST = 60;

describe('brute-force protection under concurrent guesses', () => {
  let database: TestDatabase;
  let one: TestServer;
  let two: TestServer;
  let client: TestClient;

  before(async () => {
    database = await createTestDatabase();
    const settings = {
      trustProxy: true, trustedProxies: ['127.0.0.1'],
      lockoutMaxFailures: MAX_FAILURES, lockoutMaxFailuresPerAddress: MAX_PER_ADDRESS, lockoutWindow: 600,
      databasePoolSize: 10,
    };
    one = await startTestServer(database.url, settings);
    two = await startTestServer(database.url, settings);
    await makeScope(database.db, 'profile');
    client = await makeClient(database.db, { grantTypes: ['password'], scope: ['profile'] });
  });
  after(async () => {
    await one?.stop();
    await two?.stop();
    await database?.drop();
  });

  /** One guess on a connection of its own (no keep-alive pool), so that the burst really arrives together. */
  const guess = async (server: TestServer, username: string, password: string, from: string) => {
    const res = await rawRequest(server.url, {
      method: 'POST', target: '/token', body: new URLSearchParams({ grant_type: 'password', username, password }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicHeader(...client.basic), 'x-forwarded-for': from },
    });
    return { status: res.status, body: res.json as { error?: string } };
  };

  /** Password checks that ran: each one logs login.failed (wrong) or succeeds. */
  const checkedPasswords = (username: string) => [one, two].flatMap((s) => s.logs)
    .filter((l) => l.includes('"event":"login.failed"')).length - baseline.get(username)!;
  const baseline = new Map<string, number>();
  const failureRows = async (column: 'username_lower' | 'source_address', value: string) =>
    Number((await database.db.selectFrom('login_failures').select((e) => e.fn.countAll<string>().as('n')).where(column, '=', value).executeTakeFirstOrThrow()).n);

  for (const split of [false, true]) {
    it(`checks at most ${MAX_FAILURES} passwords of ${BURST} simultaneous guesses on one account${split ? ', split over two instances' : ''}`, async () => {
      const name = split ? 'gina' : 'hank';
      const user = await makeUser(database.db, name);
      baseline.set(name, [one, two].flatMap((s) => s.logs).filter((l) => l.includes('"event":"login.failed"')).length);
      // Every guess from its own address, so that only the per-account limit applies.
      const replies = await Promise.all(Array.from({ length: BURST }, (_, i) =>
        guess(split && i % 2 ? two : one, name, `wrong-${i}`, `203.0.${split ? 1 : 2}.${i + 1}`)));
      assert.deepEqual(new Set(replies.map((r) => `${r.status} ${r.body.error}`)), new Set(['400 invalid_grant']));
      assert.equal(await failureRows('username_lower', name), MAX_FAILURES, 'exactly the limit was recorded');
      assert.equal(checkedPasswords(name), MAX_FAILURES, 'exactly the limit of passwords was checked');
      const right = await guess(two, name, user.password, '203.0.3.1');
      assert.equal(right.status, 400, 'the right password is refused while the account is locked');
      assert.equal(right.body.error, 'invalid_grant');
    });
  }

  it(`${BURST / 4} simultaneous sign-ins with the right password all succeed (a service account used by many instances)`, async () => {
    const svc = await makeUser(database.db, 'svc-account');
    const replies = await Promise.all(Array.from({ length: BURST / 4 }, (_, i) =>
      guess(i % 2 ? two : one, 'svc-account', svc.password, `203.0.5.${i + 1}`)));
    assert.deepEqual(replies.map((r) => r.status), replies.map(() => 200));
    assert.equal(await failureRows('username_lower', 'svc-account'), 0, 'nothing left in the window');
  });

  it(`checks at most ${MAX_PER_ADDRESS} passwords from one address guessing at many accounts at once`, async () => {
    const from = '203.0.4.1';
    const users = await Promise.all(['ivan', 'judy', 'kate'].map((n) => makeUser(database.db, n)));
    const replies = await Promise.all(Array.from({ length: BURST }, (_, i) =>
      guess(i % 2 ? two : one, `spray-${i}`, `wrong-${i}`, from)));
    assert.deepEqual(new Set(replies.map((r) => r.status)), new Set([400]));
    assert.equal(await failureRows('source_address', from), MAX_PER_ADDRESS);
    const right = await guess(one, users[0]!.username, users[0]!.password, from);
    assert.equal(right.status, 400, 'the address is refused, even with a right password');
    const elsewhere = await guess(one, users[1]!.username, users[1]!.password, '203.0.4.2');
    assert.equal(elsewhere.status, 200, 'another address still signs in');
  });
});
