// Property-based tests (fast-check) over the `assertion` parameter of the SAML2 bearer grant:
// whatever arrives — random bytes, NUL, invalid UTF-8, lone surrogates, huge values, random
// XML, SAML with random field values, or a used genuine assertion mutated at random — the
// answer is 400 with invalid_request or invalid_grant (README, "SAML 2.0 bearer assertions"),
// never a 5xx, and nothing is stored: no token, no user, no replay-cache row.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { startTestServer, type TestServer } from '../support/server.ts';
import { postForm, type Reply } from '../support/http.ts';
import { makeClient, type TestClient } from '../support/fixtures.ts';
import { addIdp } from '../../src/store/idps.ts';
import {
  SAML2_BEARER, TRANSIENT, assertionXml, encode, escapeXml, makeKeyPair, removeTempDirs, responseXml, signWithSamlify,
  signWithXmlCrypto, type Endpoint, type KeyPair,
} from './support.ts';

const IDP = 'https://idp.example.com/saml';
const STRICT_IDP = 'https://strict-idp.example.com/saml';
/** Under max_body_bytes with the rest of the form: bigger bodies are 413 by design. */
const HUGE = 50_000;
const RUNS = Number(process.env.FC_RUNS ?? 60);

/** Characters that exercise every edge: NUL and controls, lone surrogates, XML specials. */
const nasty = fc.constantFrom('\u0000', '\u0001', '\u001f', '\u007f', '\ud800', '\udfff', '\ufffe', '\uffff', '&', '<', '>', '"', "'",
  '&#0;', '&#x0;', '&#xD800;', '&#1;', '&amp;', '&lt;', ']]>', '<!--', '<?x?>', '<!DOCTYPE x>', '\r', '\n', ' ', '\u00e9', '\u{1F600}', '%00', '%FF');
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.array(fc.oneof(nasty, fc.string({ maxLength: 5 })), { maxLength: 12 }).map((parts) => parts.join('')),
);

const NAMES = ['saml:Assertion', 'saml:Issuer', 'saml:Subject', 'saml:NameID', 'saml:Conditions', 'samlp:Response', 'ds:Signature',
  'ds:SignedInfo', 'ds:Reference', 'ds:DigestMethod', 'ds:SignatureValue', 'x', 'Assertion'];
const NS = ' xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:ds="http://www.w3.org/2000/09/xmldsig#"';

/** Random element trees with SAML and XML-DSig names, attributes and text, escaped or raw. */
const { tree } = fc.letrec<{ tree: string }>((tie) => ({
  tree: fc.tuple(
    fc.constantFrom(...NAMES),
    fc.array(fc.tuple(fc.constantFrom('ID', 'Algorithm', 'URI', 'Format', 'Version', 'xmlns'), text), { maxLength: 3 }),
    fc.array(fc.oneof({ depthSize: 'small' }, text.map(escapeXml), text, tie('tree')), { maxLength: 4 }),
  ).map(([name, attrs, content]) => `<${name}${attrs.map(([k, v]) => ` ${k}="${escapeXml(v)}"`).join('')}>${content.join('')}</${name}>`),
}));

/** Percent-encodes every byte: the form body carries exactly these bytes, valid UTF-8 or not. */
const formOfBytes = (assertion: Uint8Array) =>
  `grant_type=${encodeURIComponent(SAML2_BEARER)}&assertion=${[...assertion].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')}`;

describe('SAML2 bearer grant: property-based tests over the assertion parameter', () => {
  let database: TestDatabase;
  let server: TestServer;
  let endpoint: Endpoint;
  let idpKey: KeyPair;
  let attacker: KeyPair;
  let client: TestClient;
  let used: string;

  const send = (body: string | Record<string, string>) => postForm(`${server.url}/token`, body, { basic: client.basic });

  async function counts() {
    const n = async (table: 'tokens' | 'users' | 'saml_assertion_ids') =>
      Number((await database.db.selectFrom(table).select(sql<string>`count(*)`.as('n')).executeTakeFirstOrThrow()).n);
    return { tokens: await n('tokens'), users: await n('users'), assertionIds: await n('saml_assertion_ids') };
  }

  function refusedAsReadme(res: Reply): void {
    assert.equal(res.status, 400, `${res.status} ${res.text.slice(0, 300)}`);
    assert.ok(res.json?.error === 'invalid_request' || res.json?.error === 'invalid_grant', res.text.slice(0, 300));
    assert.equal(res.json.access_token, undefined);
    assert.doesNotMatch(res.text, /\n\s+at /, 'no stack trace');
  }

  /** Checks every run's answer, and that the whole property stored nothing. */
  async function property<T>(arb: fc.Arbitrary<T>, toBody: (value: T) => string | Record<string, string>, numRuns = RUNS): Promise<void> {
    const before = await counts();
    await fc.assert(fc.asyncProperty(arb, async (value) => {
      refusedAsReadme(await send(toBody(value)));
    }), { numRuns });
    assert.deepEqual(await counts(), before, 'nothing stored');
  }

  before(async () => {
    database = await createTestDatabase();
    server = await startTestServer(database.url);
    endpoint = { issuer: server.config.issuer, tokenEndpoint: `${server.config.issuer}/token` };
    idpKey = makeKeyPair('idp');
    attacker = makeKeyPair('attacker');
    client = await makeClient(database.db, { grantTypes: [SAML2_BEARER], scope: ['read'] });
    // JIT on: any assertion wrongly accepted would leave a user behind.
    await addIdp(database.db, { entityId: IDP, certificates: [idpKey.cert], jit: true });
    await addIdp(database.db, { entityId: STRICT_IDP, certificates: [idpKey.cert] });
    // A genuine assertion, used once: its mutations must all be refused (as replays at best).
    used = signWithSamlify(assertionXml(endpoint, { issuer: IDP, nameId: 'mallory' }), idpKey);
    const first = await send({ grant_type: SAML2_BEARER, assertion: encode(used) });
    assert.equal(first.status, 200, first.text);
  });
  after(async () => {
    await server?.stop();
    await database?.drop();
    removeTempDirs();
  });

  it('any string as the parameter', async () => {
    await property(fc.oneof(text, fc.string({ unit: 'binary', minLength: 1, maxLength: 400 })), (assertion) => ({ grant_type: SAML2_BEARER, assertion }));
  });

  it('any bytes as the parameter (invalid UTF-8, NUL), percent-encoded in the form', async () => {
    await property(fc.uint8Array({ minLength: 1, maxLength: 300 }), formOfBytes);
  });

  it('huge parameters: base64url of random bytes, and long runs of one character', async () => {
    await property(fc.oneof(
      fc.integer({ min: 30_000, max: HUGE * 3 / 4 - 100 }).map((n) => encode(Buffer.alloc(n, 0x41).toString('latin1'))),
      fc.tuple(fc.constantFrom('A', '-', '=', '\u0000', '%'), fc.integer({ min: 1000, max: Math.floor(HUGE / 3) })).map(([c, n]) => c.repeat(n)),
    ), (assertion) => ({ grant_type: SAML2_BEARER, assertion }), 10);
  });

  it('base64url of random bytes', async () => {
    await property(fc.uint8Array({ minLength: 1, maxLength: 2000 }), (bytes) => ({ grant_type: SAML2_BEARER, assertion: Buffer.from(bytes).toString('base64url') }));
  });

  it('random XML trees with SAML names', async () => {
    await property(fc.tuple(tree, fc.boolean()), ([xml, ns]) => ({
      grant_type: SAML2_BEARER,
      assertion: Buffer.from(ns ? xml.replace(/^<([\w:]+)/, `<$1${NS}`) : xml, 'utf8').toString('base64url'),
    }));
  });

  it('SAML assertions with random field values: unsigned, signed by an unregistered key, or signed but for another audience', async () => {
    const fields = fc.record({
      issuer: fc.oneof(fc.constantFrom(IDP, STRICT_IDP, ` ${IDP}`, `${IDP}\u0000`, `${IDP}&#0;`), text),
      nameId: fc.oneof(fc.constantFrom('mallory', 'MALLORY', 'alice', ''), text),
      nameIdFormat: fc.option(fc.constantFrom(TRANSIENT, 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent'), { nil: undefined }),
      id: fc.option(fc.oneof(text, fc.constant('_'.repeat(5000))), { nil: undefined }),
      audience: fc.oneof(fc.constant('https://elsewhere.example.com'), text.filter((a) => !a.includes('127.0.0.1'))),
      signer: fc.constantFrom('none', 'attacker', 'idp'),
      wrap: fc.boolean(),
      raw: fc.boolean(),
    });
    await property(fields, (f) => {
      let xml = assertionXml(endpoint, { issuer: 'ISSUER', nameId: 'NAMEID', id: f.id === undefined ? undefined : escapeXml(f.id), nameIdFormat: f.nameIdFormat, audience: f.audience });
      // Raw: the values as they are, even where XML does not allow them.
      xml = xml.replace('>ISSUER<', `>${f.raw ? f.issuer : escapeXml(f.issuer)}<`).replace('>NAMEID<', `>${f.raw ? f.nameId : escapeXml(f.nameId)}<`);
      if (f.wrap) xml = responseXml(endpoint, f.issuer.replace(/[<&]/g, ''), xml);
      try {
        if (f.signer === 'attacker') xml = signWithXmlCrypto(xml, attacker.key, { keyInfoCert: attacker.certBody });
        // Signed by the registered key, but the audience is never this server's.
        if (f.signer === 'idp') xml = signWithSamlify(xml, idpKey);
      } catch {
        // Not signable (not well-formed): sent as it is.
      }
      return { grant_type: SAML2_BEARER, assertion: Buffer.from(xml, 'utf8').toString('base64url') };
    });
  });

  it('a used genuine assertion, mutated at random (deleted, inserted, replaced characters)', async () => {
    const edit = fc.tuple(fc.nat({ max: used.length }), fc.nat({ max: 40 }), fc.oneof(text, nasty, fc.constant('')));
    await property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
      let xml = used;
      for (const [at, remove, insert] of edits) xml = xml.slice(0, Math.min(at, xml.length)) + insert + xml.slice(Math.min(at, xml.length) + remove);
      return { grant_type: SAML2_BEARER, assertion: Buffer.from(xml, 'utf8').toString('base64url') };
    }, RUNS * 2);
  });
});
