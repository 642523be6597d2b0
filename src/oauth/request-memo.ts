// Rows one statement read ahead for later steps of the same request, so that each step does
// not make its own round trip (DESIGN.md §5). Kept on the request the protocol engine is
// serving and taken once: a later read in the same request goes to the database again, so
// nothing read ahead outlives the step it was read for.
import Provider from 'oidc-provider';

const MEMO = 'km:memo';

/** The request's memo; made on first use only when `create` (a lookup in a request with none needs none). */
function memoOfRequest(create: boolean): Map<string, unknown> | undefined {
  const state = (Provider.ctx as { state?: Record<string, unknown> } | undefined)?.state;
  if (!state) return undefined;
  if (create) state[MEMO] ??= new Map<string, unknown>();
  return state[MEMO] as Map<string, unknown> | undefined;
}

/** Keeps a value for the request being served; false when no request is being served. */
export function rememberForRequest(key: string, value: unknown): boolean {
  const memo = memoOfRequest(true);
  memo?.set(key, value);
  return memo !== undefined;
}

/** The value kept under `key` for this request, removed as it is taken; undefined if none. */
export function takeFromRequest<T>(key: string): T | undefined {
  const memo = memoOfRequest(false);
  if (!memo?.has(key)) return undefined;
  const value = memo.get(key) as T;
  memo.delete(key);
  return value;
}

/** Whether a value is kept under `key` for this request, without taking it. */
export function isRememberedForRequest(key: string): boolean {
  return memoOfRequest(false)?.has(key) ?? false;
}
