// The servers under test and the requests the scenarios send them. Both servers get the same
// requests byte for byte, apart from credentials and the token being introspected.
import type { BenchDatabase } from './database.ts';
import type { Scenario, Target } from './load.ts';
import { runChains } from './chained.ts';

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
};

export function keymanagerTarget(port: number, pid: number, db: BenchDatabase): Target {
  return {
    name: 'keymanager',
    baseUrl: `http://127.0.0.1:${port}`,
    pid,
    ...(db.local ? { databasePids: () => db.serverBackendPids() } : {}),
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

function formRequest(credentials: Credentials, params: Record<string, string>) {
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

/** Issues a token to `owner` first, so that every request of the run introspects a live one. */
export async function introspectScenario(id: 'c', caller: Credentials, target: Target, owner: Credentials): Promise<Scenario> {
  const issue = formRequest(owner, TOKEN_PARAMS);
  const issued = await fetch(new URL('/token', target.baseUrl), { method: 'POST', ...issue });
  const { access_token: token } = (await issued.json()) as { access_token?: string };
  if (!issued.ok || !token) throw new Error(`${target.name}: could not issue a token to introspect (HTTP ${issued.status})`);

  const scenario: Scenario = {
    id,
    title: TITLES[id]!,
    path: '/introspect',
    ...formRequest(caller, { token, token_type_hint: 'access_token' }),
    // An inactive answer is cheap and would flatter the figures: only active counts.
    verifyBody: (body) => body.includes('"active":true'),
  };
  const probe = await fetch(new URL(scenario.path, target.baseUrl), { method: 'POST', headers: scenario.headers, body: scenario.body });
  const text = await probe.text();
  if (!probe.ok || !scenario.verifyBody(text)) throw new Error(`${target.name}: introspection of a fresh token answered ${probe.status} ${text}`);
  return scenario;
}

export interface UserCredentials {
  username: string;
  password: string;
}

const PASSWORD_CONNECTIONS = 4;

/** The password grant: argon2id (19 MiB, t=2) dominates, so fewer connections saturate it. */
export function passwordScenario(client: Credentials, user: UserCredentials): Scenario {
  return {
    id: 'd',
    title: TITLES.d!,
    path: '/token',
    connections: PASSWORD_CONNECTIONS,
    ...formRequest(client, { grant_type: 'password', username: user.username, password: user.password, scope: 'read write' }),
    verifyBody: (body) => body.includes('"access_token"'),
  };
}

/**
 * Refresh with rotation: every connection carries its own chain of refresh tokens, each used
 * exactly once. The initial tokens come from the password grant, outside the measured run.
 */
export function refreshScenario(client: Credentials, user: UserCredentials): Scenario {
  const { headers } = formRequest(client, {});
  const scenario: Scenario = {
    id: 'e',
    title: TITLES.e!,
    path: '/token',
    headers,
    body: '',
    verifyBody: (body) => body.includes('"refresh_token"'),
    run: async (target, connections, seconds) => {
      const initial: string[] = [];
      for (let i = 0; i < connections; i++) {
        const res = await fetch(new URL('/token', target.baseUrl), { method: 'POST', ...formRequest(client, { grant_type: 'password', username: user.username, password: user.password, scope: 'read write' }) });
        const { refresh_token: token } = (await res.json()) as { refresh_token?: string };
        if (!token) throw new Error(`${target.name}: no refresh token from the password grant (HTTP ${res.status})`);
        initial.push(token);
      }
      return runChains(new URL('/token', target.baseUrl), headers, {
        body: (token) => new URLSearchParams({ grant_type: 'refresh_token', refresh_token: token }).toString(),
        next: (status, body) => (status === 200 ? (JSON.parse(body) as { refresh_token?: string }).refresh_token : undefined),
      }, initial, seconds);
    },
  };
  return scenario;
}
