// The database of DATABASE_URL cannot be used at start: say where (without the password) and
// why, in one line, instead of the stack trace of the first query that needed it.
import { StartupError } from '../config/startup-errors.ts';

const NETWORK_CAUSES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'no answer',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
};

export class DatabaseUnreachableError extends StartupError {
  constructor(url: string, cause: unknown) {
    super(describe(redactUrl(url), cause), { cause });
  }
}

function describe(where: string, cause: unknown): string {
  const err = firstError(cause);
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && NETWORK_CAUSES[code]) return `cannot reach the database at DATABASE_URL ${where}: ${NETWORK_CAUSES[code]} (${code})`;
  const message = err instanceof Error ? err.message.split('\n')[0] : String(cause);
  // PostgreSQL answered and said no (a wrong password, no such database, too many clients).
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return `the database at DATABASE_URL ${where} refused the connection: ${message} (${code})`;
  if (/timeout/i.test(message ?? '')) return `cannot reach the database at DATABASE_URL ${where}: no answer (timed out)`;
  return `cannot reach the database at DATABASE_URL ${where}: ${message}`;
}

/** pg reports a host with several addresses (localhost: ::1 and 127.0.0.1) as an AggregateError. */
function firstError(err: unknown): unknown {
  return err instanceof AggregateError && err.errors.length > 0 ? firstError(err.errors[0]) : err;
}

/** The URL without its password; the query string goes too, since pg reads a password from it as well. */
export function redactUrl(url: string): string {
  const parsed = URL.parse(url);
  if (!parsed) return '(not a URL)';
  parsed.password = '';
  parsed.search = '';
  return parsed.href;
}
