// Calls to the management API over HTTPS, trusting the server's development certificate.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import type { TestServer } from './server.ts';

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
  return function call(method: string, path: string, { authorization, body }: { authorization?: string; body?: unknown } = {}): Promise<ManagementReply> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (authorization) headers.authorization = authorization;
    if (payload !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) });
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: url.port, path, method, headers, ca, servername: 'localhost', agent: false }, (res) => {
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
