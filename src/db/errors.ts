// Tells a database that cannot be reached apart from a query that fails: the first is answered
// 503 (fail closed, try again); input PostgreSQL refuses to store is the client's mistake (400,
// although the edge should have refused it first: src/http/input-guard.ts); anything else is a
// bug and answered 500.
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE']);
const SQLSTATE = /^[0-9A-Z]{5}$/;

function codeOf(err: Error): string | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

export function isDatabaseUnreachable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof AggregateError) return err.errors.some(isDatabaseUnreachable);
  const code = codeOf(err);
  if (code && CONNECTION_CODES.has(code)) return true;
  if (code && SQLSTATE.test(code)) {
    // The server answered: only SQLSTATE class 08 (connection exception), 57P01-57P03
    // (shutting down / starting) and a statement cancelled at database_request_timeout say it
    // cannot serve now. Its message may quote the input, so it is never read: a value cannot
    // make a refused query look like an outage.
    return /^08/.test(code) || /^57P0[123]$/.test(code) || code === STATEMENT_TIMEOUT;
  }
  return isConnectionLostMessage(err.message);
}

/**
 * The connection a statement ran on is of no further use: it ended, was refused or reset, or
 * stayed silent past the request timeout. Unlike a statement PostgreSQL cancelled itself (the
 * database is slow, not gone), it is closed rather than used again.
 */
export function isConnectionLost(err: unknown): boolean {
  return isDatabaseUnreachable(err) && codeOf(err as Error) !== STATEMENT_TIMEOUT;
}

/** query_canceled, raised as "canceling statement due to statement timeout". */
const STATEMENT_TIMEOUT = '57014';

// node-postgres's own errors (no SQLSTATE): the pool could not connect, lost the connection,
// or had no answer in time ("Query read timeout", src/db/pool.ts). "not queryable": a pooled
// client whose connection ended while it was checked out.
function isConnectionLostMessage(message: string): boolean {
  return /timeout exceeded when trying to connect|Connection terminated|connect ECONNREFUSED|encountered a connection error and is not queryable|^Query read timeout$/.test(message);
}

/** SQLSTATEs of values PostgreSQL cannot store: NUL or bytes not in UTF-8 (22021), \u0000 in jsonb (22P05). */
const UNSTORABLE_INPUT = new Set(['22021', '22P05']);

export function isUnstorableInput(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = codeOf(err);
  return code !== undefined && UNSTORABLE_INPUT.has(code);
}
