// application/x-www-form-urlencoded bodies and query strings, read once and decoded strictly.
// PostgreSQL stores neither NUL nor invalid UTF-8, and a lenient decoder would turn invalid
// bytes into U+FFFD that no later check can tell from a real one, so every name and value is
// decoded from its bytes and refused, naming the parameter, when it is not valid UTF-8 or holds
// NUL. The body is read here at most once and kept on ctx.request.body, where our routes find
// it again and where oidc-provider's body parser looks when the request stream has already been
// read (node_modules/oidc-provider/lib/shared/selective_body.js) — re-encoded from the checked
// pairs, because node:querystring, which that parser uses, does not read every valid body as
// it was meant: `%41%zz` followed by a raw U+0100 comes out as "A%zz\0" (a character's low
// byte is kept when one escape in a value is malformed). Re-encoded, it reads what we checked.
import type { Context } from 'koa';
import { LRUCache } from 'lru-cache';
import { errors } from 'oidc-provider';

export const FORM_TYPE = 'application/x-www-form-urlencoded';

/**
 * What ctx.request.is(FORM_TYPE) answers for each Content-Type seen, bounded in number and, the
 * header being the caller's text, kept only when as short as a media type is. Every request is
 * asked (input-guard.ts) and nearly all send one of a few spellings: parsing the header each
 * time was a measurable part of a token request.
 */
const formTypes = new LRUCache<string, boolean>({ max: 64 });
const FORM_TYPE_KEPT_MAX_LENGTH = 128;

/** RFC 9110 §6.4.1 as ctx.request.is (type-is) reads it: chunked or a Content-Length, which may be 0. */
function requestHasBody(ctx: Context): boolean {
  const { headers } = ctx.req;
  return headers['transfer-encoding'] !== undefined || !Number.isNaN(Number(headers['content-length'] ?? Number.NaN));
}

/** Whether the request carries a body of media type FORM_TYPE: ctx.request.is(FORM_TYPE), memoized. */
export function declaresFormBody(ctx: Context): boolean {
  if (!requestHasBody(ctx)) return false;
  const type = ctx.get('content-type');
  let form = formTypes.get(type);
  if (form === undefined) {
    form = Boolean(ctx.request.is(FORM_TYPE));
    if (type.length <= FORM_TYPE_KEPT_MAX_LENGTH) formTypes.set(type, form);
  }
  return form;
}

export class PayloadTooLarge extends errors.InvalidRequest {
  constructor() {
    super('request body is too large');
    this.status = 413;
    this.statusCode = 413;
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const PERCENT = 0x25;
const PLUS = 0x2b;
const AMPERSAND = 0x26;
const EQUALS = 0x3d;

function hexValue(byte: number | undefined): number {
  if (byte === undefined) return -1;
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

/** Bytes that decode to themselves: ASCII without `%` (then only `+` means something else). NUL included. */
function isPlainAscii(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte >= 0x80 || byte === PERCENT) return false;
  }
  return true;
}

const latin1 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');

/**
 * One name or value as the WHATWG urlencoded parser (URLSearchParams) and node:querystring
 * decode it — `+` is a space, `%XX` a byte, a `%` not followed by two hex digits stays as it
 * is — except that bytes that are not UTF-8 are an error instead of U+FFFD. Undefined: not UTF-8.
 */
export function decodeFormComponent(bytes: Uint8Array): string | undefined {
  // Most names and values are plain ASCII: no copy, no decoder.
  if (isPlainAscii(bytes)) return latin1(bytes).replaceAll('+', ' ');
  const out = new Uint8Array(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]!;
    if (byte === PLUS) {
      out[n++] = 0x20;
    } else if (byte === PERCENT && hexValue(bytes[i + 1]) >= 0 && hexValue(bytes[i + 2]) >= 0) {
      out[n++] = hexValue(bytes[i + 1]) * 16 + hexValue(bytes[i + 2]);
      i += 2;
    } else {
      out[n++] = byte;
    }
  }
  try {
    return strictUtf8.decode(out.subarray(0, n));
  } catch {
    return undefined; // includes UTF-8-encoded surrogates (%ED%A0%80), which are not UTF-8
  }
}

/** How a refused parameter is named in the error: only names that look like parameters. */
function nameOf(name: string | undefined): string {
  return name !== undefined && /^[A-Za-z0-9_.:-]{1,64}$/.test(name) ? `'${name}' parameter` : 'a parameter';
}

/**
 * The name/value pairs of a form body or query string, in order, or InvalidRequest naming the
 * first parameter that is not valid UTF-8 or holds NUL.
 */
export function parseFormStrict(input: Uint8Array | string): [string, string][] {
  const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  const pairs: [string, string][] = [];
  let start = 0;
  while (start <= bytes.length) {
    let end = bytes.indexOf(AMPERSAND, start);
    if (end < 0) end = bytes.length;
    if (end > start) {
      const pair = bytes.subarray(start, end);
      const eq = pair.indexOf(EQUALS);
      const name = decodeFormComponent(eq < 0 ? pair : pair.subarray(0, eq));
      const value = eq < 0 ? '' : decodeFormComponent(pair.subarray(eq + 1));
      if (name === undefined || value === undefined) throw new errors.InvalidRequest(`${nameOf(name)} is not valid UTF-8`);
      if (name.includes('\0') || value.includes('\0')) throw new errors.InvalidRequest(`${nameOf(name)} must not contain NUL`);
      pairs.push([name, value]);
    }
    start = end + 1;
  }
  return pairs;
}

/**
 * A form body as checked text, read from the request at most once, within the size limit
 * whether the length is declared or the body is chunked.
 */
export async function readFormText(ctx: Context, maxBytes: number): Promise<string> {
  const kept = (ctx.request as { body?: unknown }).body;
  if (typeof kept === 'string') return kept;
  const declared = ctx.request.length;
  if (declared !== undefined && declared > maxBytes) throw new PayloadTooLarge();
  const chunks: Buffer[] = [];
  let received = 0;
  // destroyOnReturn false: stopping early must not reset the connection before the 413 is sent.
  for await (const chunk of ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    received += chunk.length;
    if (received > maxBytes) throw new PayloadTooLarge();
    chunks.push(chunk);
  }
  const bytes = Buffer.concat(chunks, received);
  // A plain ASCII body without NUL holds nothing to refuse, and node:querystring reads it as
  // parseFormStrict does, if it reads all of it: kept as it came. Anything else is checked,
  // and re-encoded (without empty pieces).
  const text = isPlainAscii(bytes) && !bytes.includes(0) && piecesOf(bytes) <= ENGINE_MAX_PIECES
    ? latin1(bytes)
    : encodeForm(engineReadable(parseFormStrict(bytes)));
  (ctx.request as { body?: unknown }).body = text;
  return text;
}

/**
 * node:querystring, the engine's parser, reads the first 1000 `&`-separated pieces of a body,
 * empty ones included, and drops the rest without a word (its maxKeys): a parameter there,
 * a second `grant_type` say, would be checked by no one.
 */
const ENGINE_MAX_PIECES = 1000;

function piecesOf(bytes: Uint8Array): number {
  let pieces = 1;
  for (let i = bytes.indexOf(AMPERSAND); i >= 0; i = bytes.indexOf(AMPERSAND, i + 1)) pieces++;
  return pieces;
}

/** Pairs the engine reads every one of once re-encoded, or InvalidRequest. */
function engineReadable(pairs: [string, string][]): [string, string][] {
  if (pairs.length > ENGINE_MAX_PIECES) throw new errors.InvalidRequest(`the request has more than ${ENGINE_MAX_PIECES} parameters`);
  return pairs;
}

/** Pairs as a body every urlencoded parser reads back exactly: ASCII, well-formed escapes only. */
export function encodeForm(pairs: [string, string][]): string {
  return pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
}

/**
 * A form body for the endpoints we serve ourselves, with the checks RFC 6749 §3.2 and RFC
 * 7662/7009 expect: the right media type, the size limit, valid text, no parameter twice.
 */
export async function readForm(ctx: Context, maxBytes: number): Promise<URLSearchParams> {
  if (!declaresFormBody(ctx)) {
    throw new errors.InvalidRequest(`only ${FORM_TYPE} content-type bodies are supported`);
  }
  const pairs = parseFormStrict(await readFormText(ctx, maxBytes));
  const seen = new Set<string>();
  for (const [key] of pairs) {
    if (seen.has(key)) throw new errors.InvalidRequest(`${nameOf(key)} must not be provided twice`);
    seen.add(key);
  }
  return new URLSearchParams(pairs);
}
