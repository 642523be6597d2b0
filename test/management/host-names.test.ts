// The management listener answers only the Host names it was told about (README "Management
// API", `management_hostnames`): a web page that rebinds its own name to 127.0.0.1 must not
// read /metrics or anything else through an operator's browser. IP literals and localhost
// always pass; bound to loopback (the default) nothing else does unless configured; bound to
// any other address, any name passes until names are configured.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from '../../src/config/index.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { rawRequest } from '../support/http.ts';
import { isLoopbackHost } from '../../src/http/client-address.ts';

const MISDIRECTED = { error: 'misdirected_request', error_description: 'this listener does not answer for that host name (see management_hostnames)' };
const PATHS = ['/healthz', '/readyz', '/metrics', '/management/login', '/management/clients'];

describe('management listener: Host names', () => {
  let database: TestDatabase;
  let loopback: TestServer;
  let named: TestServer;
  let anyAddress: TestServer;
  let anyAddressNamed: TestServer;

  before(async () => {
    database = await createTestDatabase();
    loopback = await startTestServer(database.url);
    named = await startTestServer(database.url, { managementHostnames: ['km-admin.example.internal', 'ops.example'] });
    anyAddress = await startTestServer(database.url, { managementHost: '0.0.0.0' });
    anyAddressNamed = await startTestServer(database.url, { managementHost: '0.0.0.0', managementHostnames: 'km-admin.example.internal' });
  });
  after(async () => {
    for (const server of [loopback, named, anyAddress, anyAddressNamed]) await server?.stop();
    await database?.drop();
  });

  const get = (server: TestServer, path: string, host: string | string[]) => {
    const port = new URL(server.managementUrl).port;
    const hosts = Array.isArray(host) ? host : [host];
    return rawRequest(`http://127.0.0.1:${port}`, { method: 'GET', target: path, headers: hosts.map((h) => ['Host', h] as [string, string]) });
  };

  it('bound to loopback: IP literals and localhost (any port, any case, a final dot) reach every path', async () => {
    const port = new URL(loopback.managementUrl).port;
    for (const host of [`127.0.0.1:${port}`, '127.0.0.1', `localhost:${port}`, 'LocalHost', 'localhost.', `[::1]:${port}`, '10.1.2.3:80', '[2001:db8::7]']) {
      const res = await get(loopback, '/healthz', host);
      assert.equal(res.status, 200, `${host}: ${res.text}`);
      assert.deepEqual(res.json, { status: 'ok' });
    }
    const metrics = await get(loopback, '/metrics', `localhost:${port}`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /^# HELP /m);
  });

  it('bound to loopback: any other name gets 421 misdirected_request on every path, before authentication', async () => {
    const port = new URL(loopback.managementUrl).port;
    for (const host of [`attacker.example:${port}`, 'attacker.example', 'localhost.attacker.example', '127.0.0.1.nip.io', 'sub.localhost', '2130706433', '0x7f.0.0.1', 'km-admin.example.internal',
      // An IPv6 address outside brackets, one with a zone (which can carry a name), a name in brackets.
      'fe80::1%attacker.example', '::1', '[fe80::1%25eth0]', '[attacker.example]', '[localhost]']) {
      for (const path of PATHS) {
        const res = await get(loopback, path, host);
        assert.equal(res.status, 421, `${host} ${path}: ${res.text}`);
        assert.deepEqual(res.json, MISDIRECTED);
        assert.equal(res.headers.get('cache-control'), 'no-store');
        assert.equal(res.headers.get('www-authenticate'), null);
      }
    }
  });

  it('two Host headers are refused (400), whichever comes first', async () => {
    const port = new URL(loopback.managementUrl).port;
    for (const pair of [[`127.0.0.1:${port}`, 'attacker.example'], ['attacker.example', `127.0.0.1:${port}`], ['localhost', 'localhost']]) {
      const res = await get(loopback, '/metrics', pair);
      assert.equal(res.status, 400, `${pair}: ${res.text}`);
      assert.deepEqual(res.json, { error: 'invalid_request', error_description: 'the request has more than one Host header' });
    }
  });

  it('management_hostnames adds exactly those names, compared without case and port', async () => {
    for (const host of ['km-admin.example.internal', 'KM-Admin.Example.Internal:9164', 'ops.example.', '127.0.0.1', 'localhost']) {
      const res = await get(named, '/healthz', host);
      assert.equal(res.status, 200, `${host}: ${res.text}`);
    }
    for (const host of ['admin.example.internal', 'example.internal', 'ops.example.evil', 'xops.example']) {
      const res = await get(named, '/metrics', host);
      assert.equal(res.status, 421, `${host}: ${res.text}`);
      assert.deepEqual(res.json, MISDIRECTED);
    }
  });

  it('bound to every address: any name passes until management_hostnames is set', async () => {
    const open = await get(anyAddress, '/healthz', 'keymanager-mgmt.svc:9164');
    assert.equal(open.status, 200, open.text);
    for (const [host, status] of [['km-admin.example.internal', 200], ['10.0.0.5:9164', 200], ['keymanager-mgmt.svc:9164', 421]] as const) {
      const res = await get(anyAddressNamed, '/healthz', host);
      assert.equal(res.status, status, `${host}: ${res.text}`);
    }
  });

  it('a bind address is loopback in any spelling: the check is on when bound by 127.1 or 2130706433 too', async () => {
    for (const managementHost of ['127.1', '2130706433']) {
      const server = await startTestServer(database.url, { managementHost });
      try {
        assert.equal((await get(server, '/metrics', 'attacker.example')).status, 421, managementHost);
        assert.equal((await get(server, '/healthz', 'localhost')).status, 200, managementHost);
      } finally {
        await server.stop();
      }
    }
    for (const address of ['127.0.0.1', '127.8.9.10', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '[::1]', 'localhost', 'LOCALHOST']) {
      assert.equal(isLoopbackHost(address), true, address);
    }
    for (const address of ['0.0.0.0', '::', '10.0.0.5', '::ffff:10.0.0.5', 'km.example.internal', '127.0.0.1.nip.io']) {
      assert.equal(isLoopbackHost(address), false, address);
    }
  });

  it('KM_MANAGEMENT_HOSTNAMES is comma-separated; a name with a port, a path or a space is refused at start', () => {
    const config = loadConfig({ env: { KM_MANAGEMENT_HOSTNAMES: ' km-admin.example , ops.example ' } });
    assert.deepEqual(config.managementHostnames, ['km-admin.example', 'ops.example']);
    for (const bad of ['km-admin.example:9164', 'km admin', 'https://km-admin.example', '-km.example', 'km.example/']) {
      assert.throws(() => loadConfig({ env: { KM_MANAGEMENT_HOSTNAMES: bad } }), (err: Error) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, /KM_MANAGEMENT_HOSTNAMES/);
        assert.match(err.message, /a DNS name, without port/);
        return true;
      });
    }
  });
});
