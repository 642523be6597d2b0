// Calls to the management API over HTTPS, trusting the server's development certificate.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import type { Config } from '../../src/config/index.ts';
import { hashPassword } from '../../src/store/passwords.ts';
import { createTestDatabase } from './database.ts';
import { conformanceChecker } from './openapi.ts';
import { freePort, startTestServer, type TestServer } from './server.ts';

export interface ManagementReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

export function basicAuth(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

export function managementClient(server: TestServer) {
  const ca = readFileSync(join(server.keysDir, 'tls', 'server.crt'), 'utf8');
  const url = new URL(server.managementUrl);
  /** `localAddress`: the caller's address as the server sees it (any of 127/8 on loopback). */
  /** An `authorization` array sends the header once per element. */
  return function call(method: string, path: string, { authorization, body, headers: extra, chunked, localAddress }: { authorization?: string | string[]; body?: unknown; headers?: Record<string, string>; chunked?: boolean; localAddress?: string } = {}): Promise<ManagementReply> {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const headers: Record<string, string | string[]> = { accept: 'application/json', ...extra };
    if (authorization) headers.authorization = authorization;
    if (payload !== undefined) {
      headers['content-type'] ??= 'application/json';
      // Chunked: no declared length, so the size limit must be found while reading.
      if (!chunked) headers['content-length'] = String(Buffer.byteLength(payload));
    }
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: url.port, path, method, headers, ca, servername: 'localhost', agent: false, localAddress }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { text += c; });
        res.on('end', () => {
          let json: unknown;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  };
}

/** A fresh database and an HTTPS server with an admin (`ops`) and an auditor (`watcher`), both signed in. */
export async function startManagementApi(overrides: Partial<Record<keyof Config, unknown>> = {}) {
  const fast = { memoryCost: 8192, timeCost: 1, parallelism: 1 };
  const database = await createTestDatabase();
  const server = await startTestServer(database.url, {
    tls: true, port: await freePort(), issuer: 'https://localhost:9443',
    managementUsers: [
      { username: 'ops', password_hash: await hashPassword('ops-password-1', fast), roles: ['admin'] },
      { username: 'watcher', password_hash: await hashPassword('watcher-password-1', fast), roles: ['auditor'] },
    ],
    ...overrides,
  });
  const call = managementClient(server);
  const doc = await call('GET', '/management/openapi.json');
  assert.equal(doc.status, 200);
  assert.equal(doc.json.openapi, '3.1.0');
  const conformance = conformanceChecker(doc.json);
  const signIn = async (username: string, password: string) =>
    `Bearer ${(await call('GET', '/management/login', { authorization: basicAuth(username, password) })).json.AccessToken}`;
  return { database, server, call, conformance, admin: await signIn('ops', 'ops-password-1'), auditor: await signIn('watcher', 'watcher-password-1') };
}

/** A call (as the admin unless told otherwise) that must answer `status` and conform to the OpenAPI document. */
export function expectReply(current: () => { call: ReturnType<typeof managementClient>; conformance: ReturnType<typeof conformanceChecker>; admin: string }) {
  return async (status: number, method: string, path: string, opts: { authorization?: string; body?: unknown } = {}): Promise<ManagementReply> => {
    const { call, conformance, admin } = current();
    const res = await call(method, path, { authorization: admin, ...opts });
    assert.equal(res.status, status, `${method} ${path}: ${res.text}`);
    conformance.check(method, path, status, res.json);
    return res;
  };
}
