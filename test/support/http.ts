// Small HTTP helpers: form posts with client authentication, JSON out.
export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

export interface PostOptions {
  basic?: [string, string];
  headers?: Record<string, string>;
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
  return toReply(await fetch(url, { method: 'POST', headers, body }));
}

export async function getJson(url: string): Promise<Reply> {
  return toReply(await fetch(url));
}
