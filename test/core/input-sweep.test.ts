// Bytes PostgreSQL cannot store (NUL, invalid UTF-8, lone surrogates) and oversized values, in
// every parameter of every public endpoint: each gets its protocol error from the edge, never a
// 5xx, and nothing is stored. Requests are written byte by byte (rawRequest), so raw NUL and
// raw 0xFF reach the server exactly as a hostile client would send them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { rawRequest, type Reply } from '../support/http.ts';
import { makeClient, makeUser, type TestClient, type TestUser } from '../support/fixtures.ts';
import { Browser, formAction, formToken, pkcePair } from '../support/browserless.ts';

const REDIRECT = 'https://app.example/cb';
const SAML2_BEARER = 'urn:ietf:params:oauth:grant-type:saml2-bearer';

/** What is appended to a clean value, as bytes on the wire (already form-encoded). */
const KINDS = {
  'raw NUL byte': Buffer.from([0x00]),
  '%00': Buffer.from('%00'),
  'raw 0xFF byte': Buffer.from([0xff]),
  'invalid UTF-8 %FF': Buffer.from('%FF'),
  'lone surrogate %ED%A0%80': Buffer.from('%ED%A0%80'),
  '30 kB value': Buffer.from('a'.repeat(30 * 1024)),
} as const;
type Kind = keyof typeof KINDS;
const RAW_KINDS = new Set<Kind>(['raw NUL byte', 'raw 0xFF byte']);

interface Expect {
  status: number;
  /** The JSON error; undefined: no JSON body is expected. */
  error?: string;
  description?: string;
  /** The members of the JSON body; error and error_description unless told. */
  keys?: string[];
  /** WWW-Authenticate: Basic with error="invalid_client". */
  challenge?: boolean;
  /** For pages (HTML) and other bodies. */
  text?: RegExp;
  /** Only for endpoints another change may switch off: any of these statuses. */
  anyOf?: number[];
}

type Where = { in: 'query' | 'body'; param: string; large: Expect } | { in: 'basic'; part: 'id' | 'secret' };

interface Endpoint {
  name: string;
  method: 'GET' | 'POST';
  /** Path and cookies; a function when each request needs a fresh sign-in step. */
  at: () => Promise<{ path: string; cookie?: string; params?: Record<string, string> }>;
  params: Record<string, string>;
  basic?: [string, string];
  targets: Where[];
  /** PAR, /logout and /userinfo may be switched off: only "no 5xx, and 400/401/404/431". */
  optional?: boolean;
}

const enc = (s: string) => Buffer.from(encodeURIComponent(s).replace(/%20/g, '+'));

function nulOrUtf8(kind: Kind): 'NUL' | 'UTF-8' {
  return kind === 'raw NUL byte' || kind === '%00' ? 'NUL' : 'UTF-8';
}

function expected(where: Where, kind: Kind, endpoint: Endpoint): Expect {
  if (endpoint.optional) return { status: 0, anyOf: kind === '30 kB value' ? [400, 401, 404, 431] : [400, 401, 404] };
  if (where.in === 'basic') {
    // The header holds the credentials base64-encoded: 30 kB of them exceed Node's 16 KiB header limit.
    if (kind === '30 kB value') return { status: 431 };
    return { status: 401, error: 'invalid_client', description: 'client_id and client_secret in the authorization header are not properly encoded', challenge: true };
  }
  if (kind === '30 kB value') return where.in === 'query' ? { status: 431 } : where.large;
  // Node's HTTP parser refuses raw control and non-ASCII bytes in the request line itself.
  if (where.in === 'query' && RAW_KINDS.has(kind)) return { status: 400, text: /^$/ };
  const problem = nulOrUtf8(kind) === 'NUL' ? 'must not contain NUL' : 'is not valid UTF-8';
  return { status: 400, error: 'invalid_request', description: `'${where.param}' parameter ${problem}` };
}

function formBytes(params: Record<string, string>, corrupt?: { param: string; tail: Buffer }): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (parts.length) parts.push(Buffer.from('&'));
    parts.push(enc(k), Buffer.from('='), enc(v));
    if (corrupt?.param === k) parts.push(corrupt.tail);
  }
  return Buffer.concat(parts);
}

function basicBytes([id, secret]: [string, string], part: 'id' | 'secret' | undefined, tail: Buffer): string {
  const credentials = Buffer.concat([enc(id), part === 'id' ? tail : Buffer.alloc(0), Buffer.from(':'), enc(secret), part === 'secret' ? tail : Buffer.alloc(0)]);
  return `Basic ${credentials.toString('base64')}`;
}

function mismatch(reply: Reply, want: Expect): string | undefined {
  if (reply.status >= 500) return `5xx: ${reply.status} ${reply.text.slice(0, 200)}`;
  if (want.anyOf) return want.anyOf.includes(reply.status) ? undefined : `status ${reply.status} not in ${want.anyOf}: ${reply.text.slice(0, 200)}`;
  if (reply.status !== want.status) return `status ${reply.status}, expected ${want.status}: ${reply.text.slice(0, 200)}`;
  if (want.error !== undefined) {
    if (reply.json?.error !== want.error) return `error ${reply.json?.error}, expected ${want.error}: ${reply.text.slice(0, 200)}`;
    if (want.description !== undefined && reply.json.error_description !== want.description) {
      return `error_description ${JSON.stringify(reply.json.error_description)}, expected ${JSON.stringify(want.description)}`;
    }
    const keys = Object.keys(reply.json).sort().join(',');
    if (keys !== (want.keys ?? ['error', 'error_description']).join(',')) return `body has ${keys}`;
  }
  if (want.text && !want.text.test(reply.text)) return `body ${JSON.stringify(reply.text.slice(0, 200))} does not match ${want.text}`;
  const challenge = reply.headers.get('www-authenticate') ?? '';
  if (want.challenge && !/^Basic realm="[^"]+", error="invalid_client"/.test(challenge)) return `WWW-Authenticate ${JSON.stringify(challenge)}`;
  return undefined;
}

describe('unstorable bytes and oversized values in every parameter of every endpoint', () => {
  let database: TestDatabase;
  let server: TestServer;
  let conf: TestClient;
  let pub: TestClient;
  let alice: TestUser;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    conf = await makeClient(database.db, {
      grantTypes: ['client_credentials', 'password', 'refresh_token', 'authorization_code', SAML2_BEARER],
      scope: ['read'],
      redirectUris: [REDIRECT],
    });
    pub = await makeClient(database.db, { grantTypes: ['authorization_code'], scope: ['read'], redirectUris: [REDIRECT], authMethod: 'none' });
    alice = await makeUser(database.db, 'alice');
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  async function counts(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const table of ['tokens', 'users', 'login_failures', 'consents'] as const) {
      const row = await database.db.selectFrom(table).select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow();
      out[table] = Number(row.n);
    }
    return out;
  }

  /** A browser at the sign-in page of a fresh authorization request. */
  async function signInStep() {
    const browser = new Browser(server.url);
    const query = new URLSearchParams({ response_type: 'code', client_id: conf.id, redirect_uri: REDIRECT, scope: 'read', state: 's' });
    const page = await browser.follow(await browser.get(`/authorize?${query}`));
    assert.match(page.html ?? '', /name="password"/, 'the sign-in page');
    return { browser, path: formAction(page.html!), csrf: formToken(page.html!) };
  }

  /** A browser at the consent page, alice signed in. */
  async function consentStep() {
    const { browser, path, csrf } = await signInStep();
    const page = await browser.follow(await browser.post(path, { csrf, username: alice.username, password: alice.password }));
    assert.match(page.html ?? '', /name="decision"/, 'the consent page');
    return { browser, path: formAction(page.html!), csrf: formToken(page.html!) };
  }

  const fixed = (path: string) => async () => ({ path });
  const q = (param: string): Where => ({ in: 'query', param, large: { status: 431 } });
  const b = (param: string, large: Expect): Where => ({ in: 'body', param, large });
  const invalid = (error: string, status = 400): Expect => ({ status, error });
  /** Placeholder for endpoints marked optional: expected() judges those loosely. */
  const SWITCHABLE: Expect = { status: 0 };
  const basicParts: Where[] = [{ in: 'basic', part: 'id' }, { in: 'basic', part: 'secret' }];
  const { challenge } = pkcePair();
  const authorizeParams = () => ({
    response_type: 'code', client_id: conf.id, redirect_uri: REDIRECT, scope: 'read', state: 'st', nonce: 'n', login_hint: 'alice',
    ui_locales: 'en', display: 'page', dpop_jkt: 'a'.repeat(43), code_challenge: challenge, code_challenge_method: 'S256', prompt: 'login',
  });
  const authorizeKeys = Object.keys({
    response_type: 1, client_id: 1, redirect_uri: 1, scope: 1, state: 1, nonce: 1, login_hint: 1, ui_locales: 1, display: 1, dpop_jkt: 1,
    code_challenge: 1, code_challenge_method: 1, prompt: 1,
  });

  function endpoints(): Endpoint[] {
    return [
      {
        name: 'POST /token client_credentials (Basic)', method: 'POST', at: fixed('/token'),
        params: { grant_type: 'client_credentials', scope: 'read' }, basic: conf.basic,
        // invalid_scope names the refused scope in the body as well (oidc-provider's InvalidScope).
        targets: [b('grant_type', invalid('unsupported_grant_type')), b('scope', { ...invalid('invalid_scope'), keys: ['error', 'error_description', 'scope'] }), ...basicParts],
      },
      {
        name: 'POST /token client_secret_post', method: 'POST', at: fixed('/token'),
        params: { grant_type: 'client_credentials', client_id: conf.id, client_secret: conf.secret },
        targets: [b('client_id', invalid('invalid_client', 401)), b('client_secret', invalid('invalid_client', 401))],
      },
      {
        name: 'POST /token password', method: 'POST', at: fixed('/token'),
        params: { grant_type: 'password', username: alice.username, password: alice.password, scope: 'read' }, basic: conf.basic,
        targets: [b('username', invalid('invalid_request')), b('password', invalid('invalid_request'))],
      },
      {
        name: 'POST /token refresh_token', method: 'POST', at: fixed('/token'),
        params: { grant_type: 'refresh_token', refresh_token: 'not-a-refresh-token' }, basic: conf.basic,
        targets: [b('refresh_token', invalid('invalid_grant'))],
      },
      {
        name: 'POST /token authorization_code', method: 'POST', at: fixed('/token'),
        params: { grant_type: 'authorization_code', code: 'not-a-code', redirect_uri: REDIRECT, code_verifier: 'v'.repeat(43) }, basic: conf.basic,
        targets: [b('code', invalid('invalid_grant')), b('redirect_uri', invalid('invalid_grant')), b('code_verifier', invalid('invalid_grant'))],
      },
      {
        name: 'POST /token authorization_code, public client', method: 'POST', at: fixed('/token'),
        params: { grant_type: 'authorization_code', client_id: pub.id, code: 'not-a-code', redirect_uri: REDIRECT, code_verifier: 'v'.repeat(43) },
        targets: [b('client_id', invalid('invalid_client', 401))],
      },
      {
        name: 'POST /token saml2-bearer', method: 'POST', at: fixed('/token'),
        params: { grant_type: SAML2_BEARER, assertion: 'PHNhbWw-' }, basic: conf.basic,
        // 30 kB of 'a' after the base64url of "<saml>" does not decode to UTF-8 XML.
        targets: [b('assertion', invalid('invalid_request'))],
      },
      ...(['introspect', 'revoke'] as const).flatMap((e): Endpoint[] => {
        const unknownToken: Expect = e === 'introspect' ? { status: 200, text: /^\{"active":false\}$/ } : { status: 200, text: /^$/ };
        return [
          {
            name: `POST /${e} (Basic)`, method: 'POST', at: fixed(`/${e}`),
            params: { token: 'not-a-token', token_type_hint: 'access_token' }, basic: conf.basic,
            targets: [b('token', unknownToken), b('token_type_hint', unknownToken), ...basicParts],
          },
          {
            name: `POST /${e} client_secret_post`, method: 'POST', at: fixed(`/${e}`),
            params: { token: 'not-a-token', client_id: conf.id, client_secret: conf.secret },
            targets: [b('client_id', invalid('invalid_client', 401)), b('client_secret', invalid('invalid_client', 401))],
          },
          {
            name: `POST /${e} public client`, method: 'POST', at: fixed(`/${e}`),
            params: { token: 'not-a-token', client_id: pub.id },
            targets: [b('client_id', invalid('invalid_client', 401))],
          },
        ];
      }),
      {
        name: 'GET /authorize', method: 'GET', at: fixed('/authorize'),
        params: authorizeParams(), targets: authorizeKeys.map(q),
      },
      {
        // Wrong secret: a pushed request that were otherwise valid would be stored.
        name: 'POST /request (PAR)', method: 'POST', at: fixed('/request'), optional: true,
        params: { ...authorizeParams(), client_id: conf.id }, basic: [conf.id, 'wrong-secret'],
        targets: [...['client_id', 'state', 'nonce', 'login_hint', 'redirect_uri', 'scope'].map((k) => b(k, SWITCHABLE)), ...basicParts],
      },
      {
        name: 'GET /logout', method: 'GET', at: fixed('/logout'), optional: true,
        params: { client_id: conf.id, state: 'st', post_logout_redirect_uri: REDIRECT, logout_hint: 'alice', ui_locales: 'en' },
        targets: ['client_id', 'state', 'post_logout_redirect_uri', 'logout_hint', 'ui_locales'].map(q),
      },
      {
        name: 'POST /logout', method: 'POST', at: fixed('/logout'), optional: true,
        params: { client_id: conf.id, state: 'st', xsrf: 'x', logout: 'yes' },
        targets: ['client_id', 'state', 'xsrf', 'logout'].map((k) => b(k, SWITCHABLE)),
      },
      {
        name: 'GET /userinfo', method: 'GET', at: fixed('/userinfo'), optional: true,
        params: { access_token: 'not-a-token' }, targets: [q('access_token')],
      },
      {
        name: 'POST /userinfo', method: 'POST', at: fixed('/userinfo'), optional: true,
        params: { access_token: 'not-a-token' }, targets: [b('access_token', SWITCHABLE)],
      },
      {
        name: 'POST /interaction/:uid/login', method: 'POST',
        at: async () => {
          const { browser, path, csrf } = await signInStep();
          return { path, cookie: browser.jar.header(), params: { csrf } };
        },
        params: { csrf: '', username: alice.username, password: alice.password },
        targets: [
          b('csrf', { status: 400, text: /The form you sent was not the one this page gave you/ }),
          b('username', { status: 200, text: /The username or password is incorrect/ }),
          b('password', { status: 200, text: /The username or password is incorrect/ }),
        ],
      },
      {
        name: 'POST /interaction/:uid/consent', method: 'POST',
        at: async () => {
          const { browser, path, csrf } = await consentStep();
          return { path, cookie: browser.jar.header(), params: { csrf } };
        },
        params: { csrf: '', decision: 'approve' },
        targets: [
          b('csrf', { status: 400, text: /The form you sent was not the one this page gave you/ }),
          // Anything but "approve" is a refusal: back to the client with access_denied.
          b('decision', { status: 303 }),
        ],
      },
      {
        name: 'GET /interaction/:uid', method: 'GET',
        at: async () => {
          const { browser, path } = await signInStep();
          return { path: path.replace(/\/login$/, ''), cookie: browser.jar.header() };
        },
        params: { lang: 'en' }, targets: [q('lang')],
      },
      { name: 'GET /jwks', method: 'GET', at: fixed('/jwks'), params: { x: '1' }, targets: [q('x')] },
      { name: 'GET /.well-known/openid-configuration', method: 'GET', at: fixed('/.well-known/openid-configuration'), params: { x: '1' }, targets: [q('x')] },
      { name: 'GET /.well-known/oauth-authorization-server', method: 'GET', at: fixed('/.well-known/oauth-authorization-server'), params: { x: '1' }, targets: [q('x')] },
    ];
  }

  it('runs every cell (the table is built once the clients exist)', async (t) => {
    for (const endpoint of endpoints()) {
      for (const where of endpoint.targets) {
        const label = `${endpoint.name} ${where.in === 'basic' ? `Basic ${where.part}` : `${where.in} ${where.param}`}`;
        await t.test(label, async () => {
          const problems: string[] = [];
          for (const kind of Object.keys(KINDS) as Kind[]) {
            const want = expected(where, kind, endpoint);
            const { path, cookie, params: fresh } = await endpoint.at();
            const params = { ...endpoint.params, ...fresh };
            const tail = KINDS[kind];
            const corrupt = where.in === 'basic' ? undefined : { param: where.param, tail };
            const headers: Record<string, string> = {};
            if (cookie) headers.cookie = cookie;
            if (endpoint.basic || where.in === 'basic') headers.authorization = basicBytes(endpoint.basic ?? conf.basic, where.in === 'basic' ? where.part : undefined, where.in === 'basic' ? tail : Buffer.alloc(0));
            let target: Buffer = Buffer.from(path);
            let body: Buffer | undefined;
            if (endpoint.method === 'GET') {
              target = Buffer.concat([target, Buffer.from('?'), formBytes(params, corrupt)]);
            } else {
              headers['content-type'] = 'application/x-www-form-urlencoded';
              body = formBytes(params, corrupt);
            }
            const stored = await counts();
            const reply = await rawRequest(server.url, { method: endpoint.method, target, headers, body });
            const problem = mismatch(reply, want);
            if (problem) problems.push(`${kind}: ${problem}`);
            assert.deepEqual(await counts(), stored, `${label} ${kind}: nothing stored`);
          }
          assert.deepEqual(problems, []);
        });
      }
    }
  });

  it('the path is a parameter too: NUL or invalid UTF-8 in it → 400 invalid_request, before any lookup', async () => {
    const { browser } = await signInStep();
    const cases: [string, string, string][] = [
      ['GET', '/interaction/%00', 'the request path must not contain NUL'],
      ['POST', '/interaction/abc%00/login', 'the request path must not contain NUL'],
      ['POST', '/interaction/%ED%A0%80/consent', 'the request path is not valid percent-encoded UTF-8'],
      ['GET', '/jwks%FF', 'the request path is not valid percent-encoded UTF-8'],
    ];
    for (const [method, target, description] of cases) {
      const stored = await counts();
      const headers: Record<string, string> = { cookie: browser.jar.header() };
      if (method === 'POST') headers['content-type'] = 'application/x-www-form-urlencoded';
      const reply = await rawRequest(server.url, { method, target, headers, body: method === 'POST' ? 'csrf=x' : undefined });
      assert.equal(reply.status, 400, `${target}: ${reply.text}`);
      assert.deepEqual(reply.json, { error: 'invalid_request', error_description: description }, target);
      assert.deepEqual(await counts(), stored);
    }
  });

  it('clean requests still work: the guard hands the body over to the engine and to our routes', async () => {
    const token = await rawRequest(server.url, {
      method: 'POST', target: '/token', headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicBytes(conf.basic, undefined, Buffer.alloc(0)) },
      body: formBytes({ grant_type: 'client_credentials', scope: 'read' }),
    });
    assert.equal(token.status, 200, token.text);
    assert.equal(token.json.scope, 'read');
    // A chunked body (no Content-Length) within the limit, 100 reads of 400 bytes.
    const chunked = await fetch(`${server.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicBytes(conf.basic, undefined, Buffer.alloc(0)) },
      body: Readable.toWeb(Readable.from((function* () {
        yield Buffer.from('grant_type=client_credentials&scope=read&pad=');
        for (let i = 0; i < 100; i++) yield Buffer.alloc(400, 'a');
      })())),
      duplex: 'half',
    } as RequestInit);
    assert.equal(chunked.status, 200);
    assert.equal(((await chunked.json()) as { scope: string }).scope, 'read');
    const login = await signInStep();
    const page = await login.browser.post(login.path, { csrf: login.csrf, username: alice.username, password: alice.password });
    assert.equal(page.status, 303, page.html);
  });
});
