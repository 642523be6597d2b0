// Properties of the parsers at the edge, over generated input (fast-check): the form and query
// parser, Basic credentials, scope lists, and what a database error means; then arbitrary
// bodies at the live /token and /introspect. A failing run prints the seed and the smallest
// input found, which `fc.assert(…, { seed, path })` replays.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as querystring from 'node:querystring';
import fc from 'fast-check';
import { errors } from 'oidc-provider';
import { encodeForm, parseFormStrict } from '../../src/http/form-body.ts';
import { parseBasicAuthorization } from '../../src/oauth/client-auth.ts';
import { splitScope } from '../../src/oauth/scope-policy.ts';
import { isDatabaseUnreachable, isUnstorableInput } from '../../src/db/errors.ts';
import { databaseUnavailable } from '../../src/oauth/errors.ts';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { basicHeader } from '../support/http.ts';
import { makeClient, type TestClient } from '../support/fixtures.ts';

/** Any Unicode text without lone surrogates (what a client can mean), NUL included. */
const text = (min = 0) => fc.string({ unit: 'binary', minLength: min, maxLength: 40 });
/** Pieces that stress form decoding: escapes of every kind, separators, multi-byte text. */
const FORM_PIECES = ['%', '%0', '%00', '%FF', '%C3', '%A9', '%C3%A9', '%ED%A0%80', '%EF%BF%BD', '%EF%BB%BF', '%F0%9F%98%80',
  '%zz', '%2B', '%26', '%3D', '+', '&', '=', 'a', 'Z', '0', ' ', 'é', '😀', '\0', '\uFFFD', '%25', '%%', '%2', '%e9'];
const formish = fc.array(fc.constantFrom(...FORM_PIECES), { maxLength: 24 }).map((p) => p.join(''));
/** RFC 6749 Appendix B: application/x-www-form-urlencoded, as a client library writes it. */
const formEncode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');

function refusedAsInvalidRequest(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    assert.ok(err instanceof errors.InvalidRequest, `threw ${String(err)}`);
    assert.equal((err as { status: number }).status, 400);
    return true;
  }
}

describe('properties: form and query parsing', () => {
  it('round-trips any names and values a client encodes, and refuses exactly those with NUL', () => {
    fc.assert(fc.property(fc.array(fc.tuple(text(), text()), { maxLength: 8 }), fc.boolean(), (pairs, appendixB) => {
      const encoded = appendixB
        ? pairs.map(([k, v]) => `${formEncode(k)}=${formEncode(v)}`).join('&')
        : new URLSearchParams(pairs).toString();
      const hasNul = pairs.some(([k, v]) => k.includes('\0') || v.includes('\0'));
      if (hasNul) {
        assert.ok(refusedAsInvalidRequest(() => parseFormStrict(encoded)));
        return;
      }
      // An empty name and value encode to "=", which is a pair; URLSearchParams agrees.
      assert.deepEqual(parseFormStrict(encoded), [...new URLSearchParams(encoded)]);
      assert.deepEqual(parseFormStrict(encoded).filter(([k, v]) => k || v), pairs.filter(([k, v]) => k || v));
    }));
  });

  const grouped = (pairs: [string, string][]) => {
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of pairs) {
      const seen = out[k];
      out[k] = seen === undefined ? v : Array.isArray(seen) ? [...seen, v] : [seen, v];
    }
    return out;
  };
  const engineReads = (s: string) => ({ ...querystring.parse(s) });

  it('hands oidc-provider a body it reads exactly as checked (node:querystring, URLSearchParams)', () => {
    fc.assert(fc.property(formish, (s) => {
      let pairs: [string, string][];
      try {
        pairs = parseFormStrict(s);
      } catch (err) {
        assert.ok(err instanceof errors.InvalidRequest);
        return;
      }
      for (const [k, v] of pairs) assert.ok(!k.includes('\0') && !v.includes('\0') && k.isWellFormed() && v.isWellFormed());
      const handedOver = encodeForm(pairs);
      assert.deepEqual(engineReads(handedOver), grouped(pairs));
      assert.deepEqual([...new URLSearchParams(handedOver)], pairs);
    }), { numRuns: 3000 });
  });

  it('a plain ASCII body (no %, no NUL), handed over as it came, reads as checked', () => {
    // readFormText keeps such a body unchanged instead of re-encoding it.
    const plain = fc.array(fc.oneof(fc.constantFrom('&', '=', '+', ' ', '&&', '=='), fc.string({ unit: fc.integer({ min: 1, max: 0x7f }).filter((c) => c !== 0x25).map((c) => String.fromCharCode(c)), maxLength: 6 })), { maxLength: 16 })
      .map((p) => p.join(''));
    fc.assert(fc.property(plain, (s) => {
      const pairs = parseFormStrict(s);
      assert.deepEqual(engineReads(s), grouped(pairs));
      assert.deepEqual([...new URLSearchParams(`&${s}`)], pairs);
    }), { numRuns: 3000 });
  });

  it('reads a query string (ASCII: Node refuses other bytes in the request line) as ctx.query does', () => {
    const ascii = fc.array(fc.constantFrom(...FORM_PIECES.filter((p) => /^[\x20-\x7e]*$/.test(p))), { maxLength: 24 }).map((p) => p.join(''));
    fc.assert(fc.property(ascii, (s) => {
      let pairs: [string, string][];
      try {
        pairs = parseFormStrict(s);
      } catch (err) {
        assert.ok(err instanceof errors.InvalidRequest);
        // Refused: the lenient parser would have produced NUL or U+FFFD from it.
        const lenient = JSON.stringify(engineReads(s));
        assert.ok(lenient.includes('\\u0000') || lenient.includes('\uFFFD'), `refused ${JSON.stringify(s)}: ${lenient}`);
        return;
      }
      assert.deepEqual(engineReads(s), grouped(pairs));
    }), { numRuns: 3000 });
  });

  it('the case that makes re-encoding necessary: node:querystring finds a NUL that is not there', () => {
    const body = 'client_id=%41%zz\u0100';
    assert.deepEqual(engineReads(body), { client_id: 'A%zz\0' }, 'if Node fixes this, the re-encoding can go');
    assert.deepEqual(parseFormStrict(body), [['client_id', 'A%zz\u0100']]);
    assert.deepEqual(engineReads(encodeForm(parseFormStrict(body))), { client_id: 'A%zz\u0100' });
  });

  it('never throws anything but invalid_request, whatever the bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      let pairs: [string, string][];
      try {
        pairs = parseFormStrict(bytes);
      } catch (err) {
        assert.ok(err instanceof errors.InvalidRequest, `threw ${String(err)}`);
        return;
      }
      // Accepted: the body is UTF-8, and reads the same as any urlencoded parser reads it. (The
      // URLSearchParams constructor drops a leading "?", which a body does not have: the "&"
      // in front keeps it, and adds nothing.)
      assert.deepEqual(pairs, [...new URLSearchParams(`&${Buffer.from(bytes).toString('utf8')}`)]);
      for (const [k, v] of pairs) assert.ok(!k.includes('\0') && !v.includes('\0'));
    }));
  });
});

describe('properties: Basic credentials (RFC 6749 §2.3.1)', () => {
  it('round-trips any non-empty Unicode id and secret without NUL', () => {
    const part = text(1).filter((s) => !s.includes('\0'));
    fc.assert(fc.property(part, part, (clientId, clientSecret) => {
      assert.deepEqual(parseBasicAuthorization(basicHeader(clientId, clientSecret)), { clientId, clientSecret });
    }));
  });

  it('refuses NUL anywhere, and an empty id or secret', () => {
    fc.assert(fc.property(text(), text(), (clientId, clientSecret) => {
      fc.pre(!clientId || !clientSecret || clientId.includes('\0') || clientSecret.includes('\0'));
      assert.equal(parseBasicAuthorization(basicHeader(clientId, clientSecret)), null);
    }));
  });

  it('never throws, and what it accepts is storable, whatever the header or the decoded bytes', () => {
    const check = (header: string) => {
      const parsed = parseBasicAuthorization(header);
      if (!parsed) return;
      for (const part of [parsed.clientId, parsed.clientSecret]) {
        assert.ok(part.length > 0 && part.isWellFormed() && !part.includes('\0'), JSON.stringify(header));
      }
    };
    fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => check(s)));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 60 }), (bytes) => check(`Basic ${Buffer.from(bytes).toString('base64')}`)));
    fc.assert(fc.property(formish, formish, (id, secret) => check(`Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`)));
  });
});

describe('properties: scope lists (RFC 6749 §3.3)', () => {
  it('never throws; gives distinct, non-empty scope tokens without spaces, in first-seen order', () => {
    fc.assert(fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 60 }), fc.anything()), (input) => {
      const scopes = splitScope(input);
      if (typeof input !== 'string') return assert.deepEqual(scopes, []);
      assert.equal(new Set(scopes).size, scopes.length);
      for (const s of scopes) assert.ok(s.length > 0 && !s.includes(' '));
      assert.deepEqual(scopes, [...new Set(input.split(' ').filter(Boolean))]);
      assert.deepEqual(splitScope(scopes.join(' ')), scopes, 'idempotent');
    }));
  });
});

describe('properties: what a database error means', () => {
  const sqlstate = fc.stringMatching(/^[0-9A-Z]{5}$/);
  const withCode = (code: string, message: string) => Object.assign(new Error(message), { code });

  it('an answer from PostgreSQL is an outage only for class 08 and 57P01-57P03, whatever its message says', () => {
    const messages = fc.oneof(fc.string(), fc.constantFrom('Connection terminated unexpectedly', 'timeout exceeded when trying to connect', 'connect ECONNREFUSED'));
    fc.assert(fc.property(sqlstate, messages, (code, message) => {
      const outage = /^08/.test(code) || /^57P0[123]$/.test(code);
      assert.equal(isDatabaseUnreachable(withCode(code, message)), outage, code);
    }), { numRuns: 2000 });
  });

  it('22021 and 22P05 are refused input: 400 invalid_request, never 503', () => {
    fc.assert(fc.property(fc.constantFrom('22021', '22P05'), fc.string(), (code, message) => {
      const err = withCode(code, message);
      assert.equal(isDatabaseUnreachable(err), false);
      assert.equal(isUnstorableInput(err), true);
      const mapped = databaseUnavailable(err) as { status: number; error: string };
      assert.equal(mapped.status, 400);
      assert.equal(mapped.error, 'invalid_request');
    }));
  });
});

describe('properties: arbitrary bodies at the live endpoints', () => {
  let database: TestDatabase;
  let server: TestServer;
  let client: TestClient;

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    client = await makeClient(database.db, { grantTypes: ['client_credentials', 'password', 'refresh_token'], scope: ['read'] });
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
  });

  const names = fc.constantFrom('grant_type', 'client_id', 'client_secret', 'scope', 'username', 'password', 'refresh_token', 'token',
    'token_type_hint', 'code', 'redirect_uri', 'code_verifier', 'assertion', 'resource', 'x');
  const values = fc.oneof(formish, fc.constantFrom('client_credentials', 'password', 'refresh_token', 'read', 'access_token'));
  const bodies = fc.oneof(
    fc.array(fc.tuple(names, values), { maxLength: 6 }).map((pairs) => Buffer.from(pairs.map(([k, v]) => `${k}=${v}`).join('&'))),
    fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  );
  const authorization = fc.oneof(
    fc.constant(undefined),
    fc.constant('basic'),
    formish.map((s) => `Basic ${Buffer.from(s).toString('base64')}`),
    fc.string({ maxLength: 30 }).filter((s) => /^[\t\x20-\x7e]*$/.test(s)),
  );

  for (const path of ['/token', '/introspect']) {
    it(`${path}: never a 5xx, always a JSON answer`, async () => {
      await fc.assert(fc.asyncProperty(bodies, authorization, async (body, auth) => {
        const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
        if (auth === 'basic') headers.authorization = basicHeader(...client.basic);
        else if (auth !== undefined) headers.authorization = auth;
        const res = await fetch(`${server.url}${path}`, { method: 'POST', headers, body });
        const reply = await res.text();
        assert.ok(res.status < 500, `${res.status} ${reply}`);
        assert.doesNotThrow(() => JSON.parse(reply), reply);
      }), { numRuns: 300 });
    });
  }
});
