// Reads an application/x-www-form-urlencoded body for the endpoints we serve ourselves, with
// the checks RFC 6749 §3.2 and RFC 7662/7009 expect: POST only, the right media type, a size
// limit, and no parameter given twice.
import type { Context } from 'koa';
import { errors } from 'oidc-provider';

export class PayloadTooLarge extends errors.InvalidRequest {
  constructor() {
    super('request body is too large');
    this.status = 413;
    this.statusCode = 413;
  }
}

export async function readForm(ctx: Context, maxBytes: number): Promise<URLSearchParams> {
  if (!ctx.request.is('application/x-www-form-urlencoded')) {
    throw new errors.InvalidRequest('only application/x-www-form-urlencoded content-type bodies are supported');
  }
  const declared = ctx.request.length;
  if (declared !== undefined && declared > maxBytes) throw new PayloadTooLarge();
  const chunks: Buffer[] = [];
  let received = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    received += chunk.length;
    if (received > maxBytes) throw new PayloadTooLarge();
    chunks.push(chunk);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new errors.InvalidRequest('request body is not valid UTF-8');
  }
  const form = new URLSearchParams(text);
  const seen = new Set<string>();
  for (const key of form.keys()) {
    if (seen.has(key)) throw new errors.InvalidRequest(`'${key}' parameter must not be provided twice`);
    seen.add(key);
  }
  return form;
}
