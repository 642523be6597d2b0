// One declaration per management route: method, path, the zod schemas of its query, body and
// responses, and its handler. The same schemas validate requests and generate the OpenAPI 3.1
// document (GET /management/openapi.json), so the document cannot drift from the code.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { badRequest, ManagementError, notFound } from './errors.ts';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface RouteSpec<B extends z.ZodType | undefined, Q extends z.ZodObject | undefined> {
  method: Method;
  /** Below /management, koa style: `/clients/:clientId`. */
  path: string;
  summary: string;
  query?: Q;
  body?: B;
  /** Status → schema of the JSON body (errors are added for every route). */
  responses: Record<number, z.ZodType>;
  handler: (ctx: Context & { params: Record<string, string> }, input: { body: B extends z.ZodType ? z.output<B> : undefined; query: Q extends z.ZodObject ? z.output<Q> : undefined }) => Promise<unknown>;
}

const MAX_JSON_BYTES = 64 * 1024;

export const errorBody = z.object({ error: z.string(), error_description: z.string() }).meta({ id: 'Error' });

/** The field at fault and why, from a zod failure: `grant_types.1: Invalid option`. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  const where = issue?.path.length ? issue.path.join('.') : 'body';
  return `${where}: ${issue?.message ?? 'invalid'}`;
}

async function readJson(ctx: Context): Promise<unknown> {
  if (!ctx.request.is('application/json')) throw new ManagementError(415, 'unsupported_media_type', 'the body must be application/json');
  const declared = ctx.request.length;
  if (declared !== undefined && declared > MAX_JSON_BYTES) throw new ManagementError(413, 'invalid_request', 'request body is too large');
  const chunks: Buffer[] = [];
  let received = 0;
  // destroyOnReturn false: stopping early must not reset the connection before the 413 is sent.
  for await (const chunk of ctx.req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    received += chunk.length;
    if (received > MAX_JSON_BYTES) throw new ManagementError(413, 'invalid_request', 'request body is too large');
    chunks.push(chunk);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
    return JSON.parse(text);
  } catch {
    throw badRequest('the body is not valid UTF-8 JSON');
  }
}

/** Text PostgreSQL cannot hold as given: NUL, or a lone surrogate (it would become U+FFFD). */
function unstorable(text: string): boolean {
  return text.includes('\0') || !text.isWellFormed();
}

/** No body of this API nests half as deep; past it the walk below would exhaust the stack (a 500). */
const MAX_JSON_DEPTH = 32;

/** The path of the first unstorable key or string in a JSON value, if any. */
function unstorableAt(value: unknown, path: string[] = []): string | undefined {
  if (typeof value === 'string') return unstorable(value) ? path.join('.') || 'body' : undefined;
  if (path.length >= MAX_JSON_DEPTH && value && typeof value === 'object') throw badRequest(`body: nested more than ${MAX_JSON_DEPTH} levels deep`);
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      const at = unstorableAt(item, [...path, String(i)]);
      if (at) return at;
    }
  } else if (value && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      if (unstorable(key)) return [...path, '(a key)'].join('.');
      const at = unstorableAt(item, [...path, key]);
      if (at) return at;
    }
  }
  return undefined;
}

export class ManagementApi {
  readonly routes: RouteSpec<z.ZodType | undefined, z.ZodObject | undefined>[] = [];

  add<B extends z.ZodType | undefined = undefined, Q extends z.ZodObject | undefined = undefined>(router: Router, spec: RouteSpec<B, Q>): void {
    this.routes.push(spec as unknown as RouteSpec<z.ZodType | undefined, z.ZodObject | undefined>);
    router[spec.method](spec.path, async (ctx) => {
      // A path value no row can have is not found, before any lookup (DESIGN §2 rule 10).
      if (Object.values(ctx.params ?? {}).some((v) => typeof v === 'string' && unstorable(v))) throw notFound('no such resource');
      let query: unknown;
      if (spec.query) {
        const parsed = spec.query.safeParse(ctx.query);
        if (!parsed.success) throw badRequest(describeIssue(parsed.error));
        query = parsed.data;
      }
      let body: unknown;
      if (spec.body) {
        const raw = await readJson(ctx);
        const bad = unstorableAt(raw);
        if (bad) throw badRequest(`${bad}: must not contain NUL or invalid Unicode`);
        // For the audit trail: which fields a write carried (names only, never values).
        if (raw && typeof raw === 'object' && !Array.isArray(raw)) ctx.state.changedFields = Object.keys(raw).slice(0, 50);
        const parsed = spec.body.safeParse(raw);
        if (!parsed.success) throw badRequest(describeIssue(parsed.error));
        body = parsed.data;
      }
      const result = await spec.handler(ctx as Context & { params: Record<string, string> }, { body, query } as never);
      if (ctx.status === 404 && ctx.body === undefined) ctx.status = 200;
      ctx.body = result;
    });
  }

  /** The OpenAPI 3.1 document of every declared route. */
  document({ auth }: { auth: 'jwt' | 'basic' }): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {};
    const schema = (s: z.ZodType) => z.toJSONSchema(s, { target: 'draft-2020-12', io: 'output', unrepresentable: 'any' });
    const errors = [400, 401, 403, 404, 409, 413, 415];
    for (const r of this.routes) {
      const path = `/management${r.path.replace(/:([A-Za-z]+)/g, '{$1}')}`;
      const parameters = [
        ...[...r.path.matchAll(/:([A-Za-z]+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } })),
        ...Object.entries(r.query?.shape ?? {}).map(([name, s]) => ({ name, in: 'query', required: !(s as z.ZodType).safeParse(undefined).success, schema: schema(s as z.ZodType) })),
      ];
      const responses: Record<string, unknown> = {};
      for (const [status, s] of Object.entries(r.responses)) responses[status] = { description: `${status}`, content: { 'application/json': { schema: schema(s) } } };
      for (const status of errors) responses[String(status)] ??= { description: `${status}`, content: { 'application/json': { schema: schema(errorBody) } } };
      (paths[path] ??= {})[r.method] = {
        summary: r.summary,
        ...(parameters.length ? { parameters } : {}),
        ...(r.body ? { requestBody: { required: true, content: { 'application/json': { schema: schema(r.body) } } } } : {}),
        responses,
      };
    }
    return {
      openapi: '3.1.0',
      info: { title: 'keymanager management API', version: '1' },
      components: {
        securitySchemes: auth === 'jwt'
          ? { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'GET /management/login with Basic credentials returns {"AccessToken": …}' } }
          : { basic: { type: 'http', scheme: 'basic' } },
      },
      security: [auth === 'jwt' ? { bearer: [] } : { basic: [] }],
      paths,
    };
  }
}
