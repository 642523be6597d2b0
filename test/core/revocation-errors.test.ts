// Refusals at /revoke (RFC 7009 §2.1, §2.2.1; RFC 6749 §5.2 for the errors; the README's
// Errors section for their bodies): every refused request leaves the token active, and a
// token_type_hint the server does not know is ignored, not refused.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { assertRefusal, basicHeader, postForm, toReply, type PostOptions, type Reply } from '../support/http.ts';
import { issueToken, makeClient, type TestClient } from '../support/fixtures.ts';

/** max_body_bytes by default, as the README states it (56 KiB). */
const MAX_BODY_BYTES = 56 * 1024;

describe('refusals at the revocation endpoint', () => {
  let database: TestDatabase;
  let server: TestServer;
  let owner: TestClient;

  const revoke = (body: Record<string, string> | string, opts: PostOptions = { basic: owner.basic }) => postForm(`${server.url}/revoke`, body, opts);
  const active = async (token: string) => (await postForm(`${server.url}/introspect`, { token }, { basic: owner.basic })).json.active as boolean;
  /** A 401 invalid_client with the Basic challenge the README promises. */
  const assertChallenged = (res: Reply) => {
    assertRefusal(res, 401, 'invalid_client');
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="[^"]+", error="invalid_client", error_description="[^"]+"$/);
  };

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    owner = await makeClient(database.db);
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  describe('token_type_hint (§2.1: a hint the server does not know is ignored)', () => {
    for (const hint of ['bogus', 'id_token', '']) {
      it(`"${hint}" → 200 with an empty body, and the token is revoked`, async () => {
        const token = await issueToken(server.url, owner);
        const res = await revoke({ token, token_type_hint: hint });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.text, '');
        assert.equal(await active(token), false);
      });
    }

    it('a wrong hint (refresh_token for an access token) → 200, and the token is revoked all the same', async () => {
      const token = await issueToken(server.url, owner);
      const res = await revoke({ token, token_type_hint: 'refresh_token' });
      assert.equal(res.status, 200, res.text);
      assert.equal(await active(token), false);
    });
  });

  describe('client authentication (RFC 6749 §5.2: 401 invalid_client)', () => {
    it('an unknown client with Basic → 401 with a Basic challenge; the token stays active', async () => {
      const token = await issueToken(server.url, owner);
      assertChallenged(await revoke({ token }, { basic: ['no-such-client', owner.secret] }));
      assert.equal(await active(token), true);
    });

    it('an unknown client with its credentials in the body → 401 invalid_client; the token stays active', async () => {
      const token = await issueToken(server.url, owner);
      assertRefusal(await revoke({ token, client_id: 'no-such-client', client_secret: owner.secret }, {}), 401, 'invalid_client', 'client authentication failed');
      assert.equal(await active(token), true);
    });

    it('an unknown client_id alone → 401 invalid_client', async () => {
      const token = await issueToken(server.url, owner);
      assertRefusal(await revoke({ token, client_id: 'no-such-client' }, {}), 401, 'invalid_client', 'client authentication failed');
      assert.equal(await active(token), true);
    });

    for (const [name, header] of [
      ['not base64', 'Basic ***'],
      ['no colon', `Basic ${Buffer.from('just-an-id').toString('base64')}`],
      ['no credentials', 'Basic'],
      ['an empty id', `Basic ${Buffer.from(':secret').toString('base64')}`],
      ['bad percent-encoding', `Basic ${Buffer.from('%zz:%zz').toString('base64')}`],
      ['another scheme', 'Digest username="x"'],
    ] as const) {
      it(`a malformed Basic header (${name}) → 401 with a Basic challenge; the token stays active`, async () => {
        const token = await issueToken(server.url, owner);
        assertChallenged(await revoke({ token }, { headers: { authorization: header } }));
        assert.equal(await active(token), true);
      });
    }

    it('no authentication at all → 401 with a Basic challenge; the token stays active', async () => {
      const token = await issueToken(server.url, owner);
      const res = await revoke({ token }, {});
      assertChallenged(res);
      assert.equal(res.json.error_description, 'no client authentication mechanism provided');
      assert.equal(await active(token), true);
    });
  });

  describe('the request itself (400 invalid_request)', () => {
    for (const name of ['token', 'token_type_hint', 'client_id']) {
      it(`'${name}' given twice → 400 invalid_request naming it; the token stays active`, async () => {
        const token = await issueToken(server.url, owner);
        const first = { token, token_type_hint: 'access_token', client_id: owner.id }[name];
        const body = `${new URLSearchParams({ token, token_type_hint: 'access_token', client_id: owner.id })}&${name}=${encodeURIComponent(first!)}`;
        assertRefusal(await revoke(body), 400, 'invalid_request', `'${name}' parameter must not be provided twice`);
        assert.equal(await active(token), true);
      });
    }

    for (const [type, body] of [
      ['application/json', (token: string) => JSON.stringify({ token })],
      ['text/plain', (token: string) => `token=${token}`],
      ['multipart/form-data; boundary=x', (token: string) => `--x\r\nContent-Disposition: form-data; name="token"\r\n\r\n${token}\r\n--x--\r\n`],
    ] as const) {
      it(`a body of type ${type} → 400 invalid_request; the token stays active`, async () => {
        const token = await issueToken(server.url, owner);
        const res = await revoke(body(token), { basic: owner.basic, headers: { 'content-type': type } });
        assertRefusal(res, 400, 'invalid_request', 'only application/x-www-form-urlencoded content-type bodies are supported');
        assert.equal(await active(token), true);
      });
    }

    it('a body with no Content-Type → 400 invalid_request; the token stays active', async () => {
      const token = await issueToken(server.url, owner);
      const res = await toReply(await fetch(`${server.url}/revoke`, {
        method: 'POST',
        headers: { authorization: basicHeader(...owner.basic) },
        body: new Blob([`token=${token}`]), // a Blob without a type: fetch sends no Content-Type
      }));
      assertRefusal(res, 400, 'invalid_request', 'only application/x-www-form-urlencoded content-type bodies are supported');
      assert.equal(await active(token), true);
    });

    it(`a body over max_body_bytes (${MAX_BODY_BYTES}) → 413 invalid_request; one at the limit is read`, async () => {
      const token = await issueToken(server.url, owner);
      const prefix = `token=${token}&pad=`;
      const over = await revoke(`${prefix}${'a'.repeat(MAX_BODY_BYTES + 1 - prefix.length)}`);
      assertRefusal(over, 413, 'invalid_request', 'request body is too large');
      assert.equal(await active(token), true);
      const atLimit = await revoke(`${prefix}${'a'.repeat(MAX_BODY_BYTES - prefix.length)}`);
      assert.equal(atLimit.status, 200, atLimit.text);
      assert.equal(await active(token), false);
    });
  });
});
