// Small HTTP helpers: form posts with client authentication, JSON out.
import assert from 'node:assert/strict';

/** README "Errors": what /token, /introspect and /revoke answer (503) while PostgreSQL cannot be reached. */
export const UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable' } as const;

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

export interface PostOptions {
  basic?: [string, string];
  headers?: Record<string, string>;
  /** To go away before the answer (the request is aborted). */
  signal?: AbortSignal;
}

export function basicHeader(id: string, secret: string): string {
  // RFC 6749 §2.3.1: form-urlencode each part before base64.
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

export async function toReply(res: Response): Promise<Reply> {
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

export async function postForm(url: string, params: Record<string, string> | string, opts: PostOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', ...opts.headers };
  if (opts.basic) headers.authorization = basicHeader(...opts.basic);
  const body = typeof params === 'string' ? params : new URLSearchParams(params).toString();
  return toReply(await fetch(url, { method: 'POST', headers, body, signal: opts.signal }));
}

export async function getJson(url: string): Promise<Reply> {
  return toReply(await fetch(url));
}

export interface RawRequest {
  method: string;
  /** The request target exactly as sent: a string is written as latin1 bytes, a Buffer as is. */
  target: string | Buffer;
  /** Pairs, to send one header more than once. */
  headers?: Record<string, string> | [string, string][];
  body?: string | Buffer;
}

/**
 * One request over a bare TCP connection, bytes exactly as given: for request lines and bodies
 * that fetch() would encode or refuse (raw NUL, invalid UTF-8). The connection closes after it.
 */
export async function rawRequest(baseUrl: string, req: RawRequest): Promise<Reply> {
  const { connect } = await import('node:net');
  const url = new URL(baseUrl);
  const body = typeof req.body === 'string' ? Buffer.from(req.body, 'latin1') : req.body;
  const given = Array.isArray(req.headers) ? req.headers : Object.entries(req.headers ?? {});
  // The URL's host, unless the caller sends its own.
  const ownHost = given.some(([k]) => k.toLowerCase() === 'host');
  const head = [...(ownHost ? [] : [`Host: ${url.host}`]), 'Connection: close', ...given.map(([k, v]) => `${k}: ${v}`)];
  if (body) head.push(`Content-Length: ${body.length}`);
  const bytes = Buffer.concat([
    Buffer.from(`${req.method} `, 'latin1'),
    typeof req.target === 'string' ? Buffer.from(req.target, 'latin1') : req.target,
    Buffer.from(` HTTP/1.1\r\n${head.join('\r\n')}\r\n\r\n`, 'latin1'),
    body ?? Buffer.alloc(0),
  ]);
  const received = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(url.port), url.hostname);
    socket.on('data', (c: Buffer) => chunks.push(c));
    // A server may answer and close before reading everything sent (413, 431): what arrived counts.
    socket.on('error', (err) => (chunks.length ? resolve(Buffer.concat(chunks)) : reject(err)));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.write(bytes);
  });
  const split = received.indexOf('\r\n\r\n');
  if (split < 0) throw new Error(`no HTTP response: ${JSON.stringify(received.toString('latin1').slice(0, 200))}`);
  const [statusLine, ...lines] = received.subarray(0, split).toString('latin1').split('\r\n');
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  let rest = received.subarray(split + 4);
  if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
    const parts: Buffer[] = [];
    for (;;) {
      const eol = rest.indexOf('\r\n');
      const size = parseInt(rest.subarray(0, eol).toString('latin1'), 16);
      if (!size) break;
      parts.push(rest.subarray(eol + 2, eol + 2 + size));
      rest = rest.subarray(eol + 2 + size + 2);
    }
    rest = Buffer.concat(parts);
  }
  const text = rest.toString('utf8');
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: Number(statusLine!.split(' ')[1]), headers, text, json };
}

/** The README's refusal: exactly `error` and a non-empty `error_description`, no stack. */
export function assertRefusal(res: Reply, status: number, error: string, description?: RegExp | string): void {
  assert.equal(res.status, status, res.text);
  assert.deepEqual(Object.keys(res.json ?? {}).sort(), ['error', 'error_description'], res.text);
  assert.equal(res.json.error, error, res.text);
  assert.equal(typeof res.json.error_description, 'string', res.text);
  assert.notEqual(res.json.error_description, '', res.text);
  if (typeof description === 'string') assert.equal(res.json.error_description, description);
  else if (description) assert.match(res.json.error_description, description);
  assert.doesNotMatch(res.text, /at .*\.(ts|js):\d+/, 'no stack trace');
}
