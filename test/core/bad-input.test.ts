// Bad requests at /token (RFC 6749 §5.2): the right error and status, never a 500, and
// nothing stored changes.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import type { Server } from 'node:http';
import Koa from 'koa';
import pino from 'pino';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader, postForm, rawRequest, type Reply } from '../support/http.ts';
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';
import { createDatabase, type Db } from '../../src/db/database.ts';
import { errorMapper } from '../../src/http/errors.ts';
import { databaseUnavailable } from '../../src/oauth/errors.ts';

describe('bad input at the token endpoint', () => {
  let database: TestDatabase;
  let server: TestServer;
  let client: TestClient;
  let snapshotBefore: string;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    client = await makeClient(database.db, { scope: ['read'] });
    await issueToken(server.url, client);
    snapshotBefore = await database.dumpAllTables();
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const token = (body: Record<string, string> | string, opts: Parameters<typeof postForm>[2] = { basic: client.basic }) =>
    postForm(`${server.url}/token`, body, opts);

  function assertError(res: Reply, status: number, error: string) {
    assert.equal(res.status, status, res.text);
    assert.equal(res.json?.error, error, res.text);
    // README "Errors": every refusal carries a description.
    assert.equal(typeof res.json.error_description, 'string', res.text);
    assert.notEqual(res.json.error_description, '', res.text);
    assert.doesNotMatch(res.text, /at .*\.(ts|js):\d+/, 'no stack trace');
  }

  it('missing grant_type → 400 invalid_request', async () => {
    assertError(await token({ scope: 'read' }), 400, 'invalid_request');
  });

  it('unknown grant_type → 400 unsupported_grant_type', async () => {
    assertError(await token({ grant_type: 'urn:example:nope' }), 400, 'unsupported_grant_type');
    assertError(await token({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: 'x' }), 400, 'unsupported_grant_type');
  });

  it('unknown client → 401 invalid_client with WWW-Authenticate', async () => {
    const res = await token({ grant_type: 'client_credentials' }, { basic: ['no-such-client', 'secret'] });
    assertError(res, 401, 'invalid_client');
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
  });

  it('wrong secret → 401 invalid_client with WWW-Authenticate, same answer as unknown client', async () => {
    const res = await token({ grant_type: 'client_credentials' }, { basic: [client.id, `${client.secret}x`] });
    assertError(res, 401, 'invalid_client');
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm=/);
    const unknown = await token({ grant_type: 'client_credentials' }, { basic: ['no-such-client', 'secret'] });
    assert.deepEqual(res.json, unknown.json);
  });

  it('wrong secret sent in the body → 401 invalid_client', async () => {
    assertError(await token({ grant_type: 'client_credentials', client_id: client.id, client_secret: 'nope' }, {}), 401, 'invalid_client');
  });

  it('no client authentication at all → 401 invalid_client with a Basic challenge (RFC 6749 §5.2)', async () => {
    const res = await token({ grant_type: 'client_credentials' }, {});
    assertError(res, 401, 'invalid_client');
    assert.deepEqual(res.json, { error: 'invalid_client', error_description: 'no client authentication mechanism provided' });
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="[^"]+", error="invalid_client"/);
  });

  it('a body client_id that does not match the Basic one stays 400 invalid_request', async () => {
    const mismatch = await token({ grant_type: 'client_credentials', client_id: 'someone-else' }, { basic: client.basic });
    assertError(mismatch, 400, 'invalid_request');
  });

  for (const [name, header] of [
    ['not base64', 'Basic ***'],
    ['no colon', `Basic ${Buffer.from('just-an-id').toString('base64')}`],
    ['empty', 'Basic '],
    ['another scheme', 'Bearer abc'],
    ['bad percent-encoding', `Basic ${Buffer.from('%zz:%zz').toString('base64')}`],
    ['a NUL byte in the id', `Basic ${Buffer.from('id\0:secret').toString('base64')}`],
    ['%00 in the secret', `Basic ${Buffer.from('id:sec%00ret').toString('base64')}`],
    ['bytes that are not UTF-8', `Basic ${Buffer.concat([Buffer.from('id'), Buffer.from([0xff, 0xfe]), Buffer.from(':secret')]).toString('base64')}`],
    ['%FF in the id', `Basic ${Buffer.from('id%FF:secret').toString('base64')}`],
    ['an encoded lone surrogate', `Basic ${Buffer.from('id%ED%A0%80:secret').toString('base64')}`],
    ['an empty secret', `Basic ${Buffer.from('id:').toString('base64')}`],
  ] as const) {
    it(`malformed Basic header (${name}) → 401 invalid_client with WWW-Authenticate`, async () => {
      const res = await token({ grant_type: 'client_credentials' }, { headers: { authorization: header } });
      assertError(res, 401, 'invalid_client');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Basic /);
    });
  }

  it('Basic and client_secret in the body together → 400 invalid_request', async () => {
    const res = await token({ grant_type: 'client_credentials', client_secret: client.secret }, { headers: { authorization: basicHeader(client.id, client.secret) } });
    assertError(res, 400, 'invalid_request');
  });

  it('two Authorization headers → 400 invalid_request, whichever comes first (a proxy in front may believe the other)', async () => {
    const other = await makeClient(database.db, { scope: ['read'] });
    const valid = basicHeader(...client.basic);
    for (const [path, body] of [['/token', 'grant_type=client_credentials&scope=read'], ['/introspect', 'token=x'], ['/revoke', 'token=x']] as const) {
      for (const pair of [[valid, basicHeader(...other.basic)], [basicHeader(...other.basic), valid], [valid, valid], [valid, 'Bearer x']]) {
        const res = await rawRequest(server.url, {
          method: 'POST', target: path, body,
          headers: [['Content-Type', 'application/x-www-form-urlencoded'], ['Authorization', pair[0]!], ['authorization', pair[1]!]],
        });
        assertError(res, 400, 'invalid_request');
        assert.equal(res.json.error_description, 'the request has more than one Authorization header');
      }
    }
    await database.db.deleteFrom('clients').where('client_id', '=', other.id).execute();
  });

  it('a body that is not application/x-www-form-urlencoded → 400 invalid_request', async () => {
    const res = await token(JSON.stringify({ grant_type: 'client_credentials' }), { basic: client.basic, headers: { 'content-type': 'application/json' } });
    assertError(res, 400, 'invalid_request');
    const text = await token('grant_type=client_credentials', { basic: client.basic, headers: { 'content-type': 'text/plain' } });
    assertError(text, 400, 'invalid_request');
  });

  it('an oversized body → 413 invalid_request', async () => {
    const big = `grant_type=client_credentials&scope=${'a'.repeat(60 * 1024)}`;
    assertError(await token(big), 413, 'invalid_request');
  });

  const chunked = (path: string, kib: number, headers: Record<string, string> = { authorization: basicHeader(...client.basic) }) => {
    const chunks = async function* () {
      yield Buffer.from('grant_type=client_credentials&scope=read&pad=');
      for (let i = 0; i < kib; i++) yield Buffer.alloc(1024, 'a');
    };
    return fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: Readable.toWeb(Readable.from(chunks())),
      duplex: 'half',
    } as RequestInit);
  };

  // A body that arrives in parts, after its headers, is read whole and within the limit.
  const inParts = async (parts: string[]) => {
    const { connect } = await import('node:net');
    const url = new URL(server.url);
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    for (const part of parts) {
      socket.write(part);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await closed;
    const text = Buffer.concat(chunks).toString('utf8');
    return { status: Number(text.split(' ')[1]), json: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Record<string, unknown> };
  };
  const head = (length: number | 'chunked') => `POST /token HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: ${basicHeader(...client.basic)}\r\n`
    + `Content-Type: application/x-www-form-urlencoded\r\n${length === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${length}`}\r\n\r\n`;

  it('a body that arrives after its headers, in parts, is read whole: its last parameter counts', async () => {
    // The scope, sent last, is one the client may not have: read whole, that is invalid_scope.
    const body = 'grant_type=client_credentials&scope=admin';
    const res = await inParts([head(body.length), body.slice(0, 10), body.slice(10, 36), body.slice(36)]);
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_scope');
  });

  it('a chunked body that passes the limit in its last parts, arriving late → 413', async () => {
    const piece = (data: string) => `${data.length.toString(16)}\r\n${data}\r\n`;
    const res = await inParts([head('chunked') + piece('grant_type=client_credentials&pad='), piece('a'.repeat(40_000)), piece('a'.repeat(40_000)), '0\r\n\r\n']);
    assert.equal(res.status, 413);
    assert.deepEqual(res.json, { error: 'invalid_request', error_description: 'request body is too large' });
  });

  for (const path of ['/token', '/introspect', '/revoke', '/interaction/some-uid/login', '/interaction/some-uid/consent']) {
    it(`an oversized body sent chunked (no Content-Length) at ${path} → 413, as a declared one is`, async () => {
      const res = await chunked(path, 80);
      assert.equal(res.status, 413);
      assert.deepEqual(await res.json(), { error: 'invalid_request', error_description: 'request body is too large' });
    });
  }

  it('a parameter name or value with NUL or invalid UTF-8 → 400 invalid_request, naming it', async () => {
    const cases: [string, string][] = [
      ['grant_type=client_credentials&scope=read%00', "'scope' parameter must not contain NUL"],
      ['grant_type=client_credentials&scope=re%C3%28ad', "'scope' parameter is not valid UTF-8"],
      ['grant_type=client_credentials&sc%00ope=read', 'a parameter must not contain NUL'],
      ['grant_type=client_credentials&%ED%A0%80=1', 'a parameter is not valid UTF-8'],
    ];
    for (const [body, description] of cases) {
      const res = await token(body);
      assertError(res, 400, 'invalid_request');
      assert.deepEqual(res.json, { error: 'invalid_request', error_description: description }, body);
    }
  });

  it('a body node:querystring would misread reaches the engine as it was checked (no NUL from nowhere)', async () => {
    // `%41%zz` then a raw U+0100: node:querystring, oidc-provider's parser, makes that "A%zz\0".
    const body = Buffer.from('grant_type=client_credentials&client_id=%41%zz\u0100&client_secret=x', 'utf8');
    const res = await fetch(`${server.url}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    assert.equal(res.status, 401);
    assert.deepEqual(await res.json(), { error: 'invalid_client', error_description: 'client authentication failed' });
  });

  it('a scope the client may not have → 400 invalid_scope', async () => {
    assertError(await token({ grant_type: 'client_credentials', scope: 'admin' }), 400, 'invalid_scope');
  });

  it('a duplicated parameter → 400 invalid_request', async () => {
    assertError(await token('grant_type=client_credentials&scope=read&scope=read'), 400, 'invalid_request');
    assertError(await token('grant_type=client_credentials&grant_type=client_credentials'), 400, 'invalid_request');
  });

  // node:querystring, the engine's parser, reads the first 1000 `&`-separated pieces of a body
  // (its maxKeys), empty pieces counted, and drops the rest without a word.
  it('a duplicated parameter behind 1000 empty pieces (`&&…&`) → 400 invalid_request', async () => {
    const res = await token(`grant_type=client_credentials&scope=read${'&'.repeat(1000)}&grant_type=password`);
    assert.deepEqual(res.json, { error: 'invalid_request', error_description: "'grant_type' parameter must not be provided twice" }, res.text);
    assert.equal(res.status, 400);
  });

  it('a body of more than 1000 parameters → 400 invalid_request (the engine would read only the first 1000)', async () => {
    const filler = Array.from({ length: 998 }, (_, i) => `p${i}=&`).join('');
    const res = await token(`grant_type=client_credentials&${filler}scope=read&grant_type=password`);
    assert.deepEqual(res.json, { error: 'invalid_request', error_description: 'the request has more than 1000 parameters' }, res.text);
    assert.equal(res.status, 400);
    // 1000 are read, every one of them: the last one decides.
    assertError(await token(`grant_type=client_credentials&${filler}scope=admin`), 400, 'invalid_scope');
  });

  it('a resource other than this server → 400 invalid_target (RFC 8707)', async () => {
    assertError(await token({ grant_type: 'client_credentials', resource: 'https://elsewhere.example/' }), 400, 'invalid_target');
  });

  it('GET on the token endpoint → 405 with Allow: POST', async () => {
    const res = await fetch(`${server.url}/token?grant_type=client_credentials`);
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'POST');
  });

  it('a disabled client → 401 invalid_client', async () => {
    const disabled = await makeClient(database.db, { scope: ['read'] });
    await database.db.updateTable('clients').set({ disabled: true }).where('client_id', '=', disabled.id).execute();
    assertError(await token({ grant_type: 'client_credentials' }, { basic: disabled.basic }), 401, 'invalid_client');
    await database.db.deleteFrom('clients').where('client_id', '=', disabled.id).execute();
  });

  it('left the database exactly as it was: every request above was refused', async () => {
    assert.equal(await database.dumpAllTables(), snapshotBefore);
  });
});

// What a database error says to the client, with real PostgreSQL errors through the real error
// mapper: 503 only when the database cannot be reached; a value it cannot store is a 400.
describe('database errors at the error mapper', () => {
  let database: TestDatabase;
  let server: Server;
  let url: string;
  let unreachable: Db;

  before(async () => {
    database = await createTestDatabase();
    unreachable = createDatabase({ url: `postgres://nobody@127.0.0.1:${await freePort()}/none`, poolSize: 1, applicationName: 'unreachable' });
    const queries: Record<string, (db: Db) => Promise<unknown>> = {
      nul: (db) => sql`select ${'a\0b'}::text`.execute(db), // 22021
      'jsonb-nul': (db) => sql`select ${'{"a":"\\u0000"}'}::jsonb`.execute(db), // 22P05
      // 22P02, whose message quotes the input: it must not pass for a lost connection.
      'quoted-outage': (db) => sql`select ${'Connection terminated'}::uuid`.execute(db),
      'quoted-timeout': (db) => sql`select ${'timeout exceeded when trying to connect'}::int`.execute(db),
      down: () => sql`select 1`.execute(unreachable),
    };
    const app = new Koa();
    app.silent = true;
    app.use(errorMapper(pino({ level: 'silent' }), { realm: 'test' }));
    app.use(async (ctx) => {
      const [, how, name] = ctx.path.split('/');
      const query = queries[name!]!;
      // "raw": as our own routes meet it; "adapter": as oidc-provider's adapter wraps it.
      if (how === 'raw') await query(database.db);
      else await query(database.db).catch((err: unknown) => { throw databaseUnavailable(err); });
      ctx.body = 'unexpected';
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    server?.close();
    await unreachable?.destroy();
    await database?.drop();
  });

  for (const how of ['raw', 'adapter']) {
    it(`NUL in text (22021) and \\u0000 in jsonb (22P05) → 400 invalid_request, not 500 or 503 (${how})`, async () => {
      for (const name of ['nul', 'jsonb-nul']) {
        const res = await fetch(`${url}/${how}/${name}`);
        assert.equal(res.status, 400, name);
        assert.deepEqual(await res.json(), { error: 'invalid_request', error_description: 'a parameter contains characters that cannot be processed' });
      }
    });

    it(`an input error whose message quotes "Connection terminated" is not an outage: 500, not 503 (${how})`, async () => {
      for (const name of ['quoted-outage', 'quoted-timeout']) {
        const res = await fetch(`${url}/${how}/${name}`);
        assert.equal(res.status, 500, name);
        assert.deepEqual(await res.json(), { error: 'server_error', error_description: 'an unexpected error occurred' });
      }
    });

    it(`an unreachable database → 503 temporarily_unavailable (${how})`, async () => {
      const res = await fetch(`${url}/${how}/down`);
      assert.equal(res.status, 503);
      assert.deepEqual(await res.json(), { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable' });
    });
  }
});
