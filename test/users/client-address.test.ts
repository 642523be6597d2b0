// With trust_proxy, the client address (lockout per address) is the right-most
// X-Forwarded-For entry that is not one of trusted_proxies, and the header counts only when
// the TCP peer is one of them: a caller prepending forged addresses cannot dodge the count.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm } from '../support/http.ts';
import { makeClient, makeScope, makeUser, type TestClient } from '../support/fixtures.ts';
import { ConfigError, loadConfig } from '../../src/config/index.ts';
import { clientAddress } from '../../src/http/client-address.ts';

const PER_ADDRESS = 3;

describe('client address behind proxies', () => {
  let database: TestDatabase;
  let behindProxy: TestServer;
  let directly: TestServer;
  let client: TestClient;

  before(async () => {
    database = await createTestDatabase();
    const lockout = { lockoutMaxFailures: 100, lockoutMaxFailuresPerAddress: PER_ADDRESS, lockoutWindow: 600 };
    // The test process is the proxy (127.0.0.1) for one server, and a stranger to the other.
    behindProxy = await startTestServer(database.url, { trustProxy: true, trustedProxies: ['127.0.0.1', '10.0.0.1'], ...lockout });
    directly = await startTestServer(database.url, { trustProxy: true, trustedProxies: ['10.0.0.1'], ...lockout });
    await makeScope(database.db, 'profile');
    client = await makeClient(database.db, { grantTypes: ['password'], scope: ['profile'] });
  });
  after(async () => {
    await behindProxy?.stop();
    await directly?.stop();
    await database?.drop();
  });

  const attempt = (server: TestServer, username: string, password: string, forwardedFor: string) =>
    postForm(`${server.url}/token`, { grant_type: 'password', username, password }, { basic: client.basic, headers: { 'x-forwarded-for': forwardedFor } });
  const failuresFrom = async (address: string) => (await database.db.selectFrom('login_failures').select('source_address')
    .where('source_address', '=', address).execute()).length;

  it('forged entries left of the proxy\'s own are ignored: the address still locks', async () => {
    const user = await makeUser(database.db, 'mia');
    for (let i = 0; i < PER_ADDRESS; i++) {
      const res = await attempt(behindProxy, `nobody-${i}`, 'wrong', `192.0.2.${i + 1}, 198.51.100.7, 10.0.0.1`);
      assert.equal(res.status, 400);
    }
    assert.equal(await failuresFrom('198.51.100.7'), PER_ADDRESS, 'counted against the address the proxy saw');
    const refused = await attempt(behindProxy, 'mia', user.password, '192.0.2.99, 198.51.100.7, 10.0.0.1');
    assert.equal(refused.status, 400, 'the address is locked whatever is prepended');
    assert.equal(refused.json.error, 'invalid_grant');
    const other = await attempt(behindProxy, 'mia', user.password, '198.51.100.8');
    assert.equal(other.status, 200, 'another client behind the same proxy is not affected');
  });

  it('from a peer that is not a trusted proxy, X-Forwarded-For is ignored', async () => {
    const user = await makeUser(database.db, 'noah');
    for (let i = 0; i < PER_ADDRESS; i++) await attempt(directly, `nobody-${i}`, 'wrong', `203.0.113.${i + 1}`);
    assert.equal(await failuresFrom('127.0.0.1'), PER_ADDRESS);
    assert.equal((await attempt(directly, 'noah', user.password, '203.0.113.200')).status, 400);
  });

  it('picks the right-most untrusted hop', () => {
    const trusted = new Set(['127.0.0.1', '10.0.0.1', '10.0.0.2']);
    assert.equal(clientAddress('127.0.0.1', '6.6.6.6, 198.51.100.1, 10.0.0.2, 10.0.0.1', trusted), '198.51.100.1');
    assert.equal(clientAddress('::ffff:127.0.0.1', '198.51.100.1', trusted), '198.51.100.1');
    assert.equal(clientAddress('127.0.0.1', '10.0.0.2, 10.0.0.1', trusted), '10.0.0.2', 'only proxies: the farthest one');
    assert.equal(clientAddress('127.0.0.1', 'garbage, 10.0.0.1', trusted), '10.0.0.1', 'not an address: the last one we can vouch for');
    assert.equal(clientAddress('127.0.0.1', '', trusted), '127.0.0.1');
    assert.equal(clientAddress('192.0.2.5', '198.51.100.1', trusted), '192.0.2.5', 'an untrusted peer');
    assert.equal(clientAddress('127.0.0.1', '6.6.6.6, 198.51.100.1:4711', trusted), '198.51.100.1', 'a port written by the proxy');
    assert.equal(clientAddress('127.0.0.1', '[2001:db8::1]:4711, 10.0.0.1:80', trusted), '2001:db8::1');
    assert.equal(clientAddress('127.0.0.1', '2001:db8::2', trusted), '2001:db8::2');
  });

  it('trust_proxy without trusted_proxies refuses to start', () => {
    assert.throws(() => loadConfig({ env: { KM_TRUST_PROXY: 'on' } }), (err: unknown) => err instanceof ConfigError
      && err.message === 'config: KM_TRUST_PROXY: trust_proxy needs trusted_proxies (KM_TRUSTED_PROXIES), the addresses of your proxies');
  });
});
