// Tells a database that cannot be reached apart from a query that is wrong: the first is
// answered 503 (fail closed, try again), the second is a bug and answered 500.
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE']);

export function isDatabaseUnreachable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: string }).code;
  if (code && CONNECTION_CODES.has(code)) return true;
  // SQLSTATE class 08 (connection exception) and 57P01-57P03 (server shutting down / starting).
  if (code && (/^08/.test(code) || /^57P0[123]$/.test(code))) return true;
  if (err instanceof AggregateError) return err.errors.some(isDatabaseUnreachable);
  return /timeout exceeded when trying to connect|Connection terminated|connect ECONNREFUSED/.test(err.message);
}
