// The servers under test and the requests the scenarios send them. Both servers get the same
// requests byte for byte, apart from credentials and the token being introspected.
import type { BenchDatabase } from './database.ts';
import type { Chain, Scenario, Target } from './load.ts';

export interface Credentials {
  clientId: string;
  clientSecret: string;
}

const TITLES: Record<string, string> = {
  a: 'POST /token client_credentials (opaque)',
  b: 'POST /token client_credentials (jwt)',
  c: 'POST /introspect (opaque token)',
  d: 'POST /token password (argon2id)',
  e: 'POST /token refresh_token (rotating)',
  f: 'POST /introspect by bearer (introspect scope)',
};

export function keymanagerTarget(port: number, pid: number, db: BenchDatabase): Target {
  return {
    name: 'keymanager',
    baseUrl: `http://127.0.0.1:${port}`,
    pid,
    ...(db.local ? { databasePids: () => db.serverBackendPids() } : {}),
    ...(db.statements ? { statements: db.statements } : {}),
  };
}

export function bareTarget(port: number, pid: number): Target {
  return { name: 'bare', baseUrl: `http://127.0.0.1:${port}`, pid };
}

/** RFC 6749 §2.3.1: each part is form-urlencoded before the two are joined and encoded. */
function basic({ clientId, clientSecret }: Credentials): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(clientSecret)}`).toString('base64')}`;
}

export function formRequest(credentials: Credentials, params: Record<string, string>) {
  return {
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(credentials) },
    body: new URLSearchParams(params).toString(),
  };
}

const TOKEN_PARAMS = { grant_type: 'client_credentials', scope: 'read write' };

export function tokenScenario(id: 'a' | 'b', client: Credentials): Scenario {
  return {
    id,
    title: TITLES[id]!,
    path: '/token',
    ...formRequest(client, TOKEN_PARAMS),
    verifyBody: (body) => body.includes('"access_token"'),
  };
}

async function issue(target: Target, owner: Credentials, params: Record<string, string>): Promise<string> {
  const issued = await fetch(new URL('/token', target.baseUrl), { method: 'POST', ...formRequest(owner, params) });
  const { access_token: token } = (await issued.json()) as { access_token?: string };
  if (!issued.ok || !token) throw new Error(`${target.name}: could not issue a token (HTTP ${issued.status})`);
  return token;
}

/**
 * Issues a token to `owner` first, so that every request of the run introspects a live one.
 * The caller authenticates with its client credentials (c), or — f — with a bearer token
 * carrying the introspect scope that it got by client credentials.
 */
export async function introspectScenario(id: 'c' | 'f', caller: Credentials, target: Target, owner: Credentials): Promise<Scenario> {
  const token = await issue(target, owner, TOKEN_PARAMS);
  const request = id === 'f'
    ? {
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${await issue(target, caller, { grant_type: 'client_credentials', scope: 'introspect' })}` },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
    }
    : formRequest(caller, { token, token_type_hint: 'access_token' });
  const scenario: Scenario = {
    id,
    title: TITLES[id]!,
    path: '/introspect',
    ...request,
    // An inactive answer is cheap and would flatter the figures: only active counts.
    verifyBody: (body) => body.includes('"active":true'),
  };
  const probe = await fetch(new URL(scenario.path, target.baseUrl), { method: 'POST', ...request });
  const text = await probe.text();
  if (!probe.ok || !scenario.verifyBody(text)) throw new Error(`${target.name}: introspection of a fresh token answered ${probe.status} ${text}`);
  return scenario;
}

export interface UserCredentials {
  username: string;
  password: string;
}

const passwordParams = (user: UserCredentials) => ({ grant_type: 'password', username: user.username, password: user.password, scope: 'read write' });

/**
 * The password grant for one user: argon2id (m=19 MiB, t=2, p=1) runs on libuv's thread
 * pool and dominates, so a few connections saturate the server. Only the right password is
 * sent: failures would lock the account (KM_LOCKOUT_MAX_FAILURES).
 */
export function passwordScenario(client: Credentials, user: UserCredentials, connections: number): Scenario {
  return {
    id: 'd',
    title: TITLES.d!,
    path: '/token',
    connections,
    unit: 'logins',
    ...formRequest(client, passwordParams(user)),
    verifyBody: (body) => body.includes('"access_token"') && body.includes('"refresh_token"'),
  };
}

/** A refresh token for a new grant, from the password grant. */
async function login(target: Target, client: Credentials, user: UserCredentials): Promise<string> {
  const res = await fetch(new URL('/token', target.baseUrl), { method: 'POST', ...formRequest(client, passwordParams(user)) });
  const text = await res.text();
  const token = res.ok ? (JSON.parse(text) as { refresh_token?: unknown }).refresh_token : undefined;
  if (typeof token !== 'string') throw new Error(`${target.name}: the password grant gave no refresh token: ${res.status} ${text}`);
  return token;
}

/**
 * One connection's chain of refresh tokens: each request sends the token the previous answer
 * returned. After an error answer the chain keeps the spent token, so its every later
 * request fails too (a reuse, which also revokes the grant): a broken chain cannot go unseen.
 */
function refreshChain(first: string): Chain {
  let token = first;
  return {
    body: () => new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token }).toString(),
    onResponse(status, body) {
      if (status !== 200) return;
      try {
        const next = (JSON.parse(body) as { refresh_token?: unknown }).refresh_token;
        if (typeof next === 'string') token = next;
      } catch {
        // not JSON: verifyBody counts it, and the chain stays on its spent token
      }
    },
  };
}

/**
 * Refresh with rotation (every refresh token is single-use): each connection chains its own
 * tokens, starting from a password-grant login made before the run and not measured.
 */
export function refreshScenario(client: Credentials, user: UserCredentials): Scenario {
  return {
    id: 'e',
    title: TITLES.e!,
    path: '/token',
    unit: 'refreshes',
    headers: formRequest(client, {}).headers,
    body: {
      async start(target, connections) {
        const tokens = await Promise.all(Array.from({ length: connections }, () => login(target, client, user)));
        return tokens.map(refreshChain);
      },
    },
    verifyBody: (body) => body.includes('"access_token"') && body.includes('"refresh_token"'),
  };
}
