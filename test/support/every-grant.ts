// Every grant of the token endpoint, made ready up to its token request, for promises that
// must hold whatever grant issued the token: JWT access tokens recorded before the response,
// no token without its record, no secret in the logs. Preparing (a signed-in code, a refresh
// token, a signed assertion) is apart from sending, so that a test can take the database away
// in between.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Db } from '../../src/db/database.ts';
import type { TokenFormat } from '../../src/store/clients.ts';
import { addIdp } from '../../src/store/idps.ts';
import { linkUser } from '../../src/store/users.ts';
import { makeClient, makeUser, type TestClient, type TestUser } from './fixtures.ts';
import { postForm, type Reply } from './http.ts';
import { Browser, pkcePair, runCodeFlow } from './browserless.ts';
import type { TestServer } from './server.ts';
import { SAML2_BEARER, assertionXml, encode, makeKeyPair, signWithSamlify } from '../saml/support.ts';

export const GRANTS = ['client_credentials', 'password', 'refresh_token', 'authorization_code', SAML2_BEARER] as const;
export type GrantName = (typeof GRANTS)[number];

export interface TokenRequest {
  grant: GrantName;
  form: Record<string, string>;
  basic: [string, string];
}

export interface EveryGrant {
  /** One confidential client allowed every grant, `scope=read`. */
  client: TestClient;
  /** A local user, also linked to the IdP that signs the assertions. */
  user: TestUser;
  /** Every secret value used or received so far: secrets, passwords, codes, verifiers, assertions, tokens. */
  secrets: Set<string>;
  /** Everything the grant needs before its token request, done now. */
  prepare(grant: GrantName): Promise<TokenRequest>;
  /** Sends the token request; the tokens it returns join `secrets`. */
  send(request: TokenRequest): Promise<Reply>;
}

const REDIRECT = 'https://every-grant.example/cb';

/** Sets up a client, a user and an IdP named after `name` (unique per database). Call the SAML support's removeTempDirs() after. */
export async function setUpEveryGrant(server: TestServer, db: Db, name: string, tokenFormat: TokenFormat): Promise<EveryGrant> {
  const client = await makeClient(db, {
    grantTypes: ['client_credentials', 'password', 'refresh_token', 'authorization_code', SAML2_BEARER],
    scope: ['read'], redirectUris: [REDIRECT], tokenFormat,
  });
  // A random password: the default one holds the username, which the logs may name.
  const user = await makeUser(db, `${name}-user`, { password: randomBytes(18).toString('base64url') });
  const idp = `https://idp.${name}.example/saml`;
  const idpKey = makeKeyPair(`${name}-idp`);
  await addIdp(db, { entityId: idp, certificates: [idpKey.cert] });
  await linkUser(db, user.username, { idp, nameId: user.username });
  const secrets = new Set<string>([client.secret, user.password]);
  const note = (...values: unknown[]) => {
    for (const v of values) if (typeof v === 'string' && v) secrets.add(v);
  };
  const request = (grant: GrantName, form: Record<string, string>): TokenRequest => ({ grant, form: { grant_type: grant, ...form }, basic: client.basic });
  const send = async (req: TokenRequest): Promise<Reply> => {
    const res = await postForm(`${server.url}/token`, req.form, { basic: req.basic });
    note(res.json?.access_token, res.json?.refresh_token);
    return res;
  };

  return {
    client, user, secrets, send,
    async prepare(grant) {
      switch (grant) {
        case 'client_credentials':
          return request(grant, { scope: 'read' });
        case 'password':
          return request(grant, { username: user.username, password: user.password, scope: 'read' });
        case 'refresh_token': {
          const first = await send(request('password', { username: user.username, password: user.password, scope: 'read' }));
          assert.equal(first.status, 200, first.text);
          return request(grant, { refresh_token: first.json.refresh_token as string });
        }
        case 'authorization_code': {
          const { verifier, challenge } = pkcePair();
          const back = await runCodeFlow(new Browser(server.url), {
            clientId: client.id, redirectUri: REDIRECT, scope: 'read', username: user.username, password: user.password, challenge,
          });
          const code = back.searchParams.get('code');
          assert.ok(code, `a code: ${back.href}`);
          note(code, verifier);
          return request(grant, { code, redirect_uri: REDIRECT, code_verifier: verifier });
        }
        case SAML2_BEARER: {
          const issuer = server.config.issuer;
          const assertion = encode(signWithSamlify(assertionXml({ issuer, tokenEndpoint: `${issuer}/token` }, { issuer: idp, nameId: user.username }), idpKey));
          note(assertion);
          return request(grant, { assertion, scope: 'read' });
        }
      }
    },
  };
}
