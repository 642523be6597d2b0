// OAuth-facing errors beyond the ones oidc-provider ships. Everything that reaches a client
// is an oidc-provider error, so the wire shape is always { error, error_description }.
import { errors } from 'oidc-provider';
import { isDatabaseUnreachable, isUnstorableInput } from '../db/errors.ts';

/** 503 temporarily_unavailable: storage is down, so nothing is issued or reported active. */
export class DatabaseUnavailable extends errors.TemporarilyUnavailable {
  constructor(cause: unknown) {
    super('the service is temporarily unavailable', { cause });
    this.status = 503;
    this.statusCode = 503;
    this.expose = true;
  }
}

/** 400 invalid_request: a value PostgreSQL refused to store (NUL, invalid UTF-8). */
export class UnstorableInput extends errors.InvalidRequest {
  constructor(cause: unknown) {
    super('a parameter contains characters that cannot be processed', undefined, { cause });
  }
}

/** 401 invalid_client: the client was deleted while its request was being served. */
export class ClientGone extends errors.InvalidClient {
  constructor(cause: unknown) {
    super('client authentication failed', { cause });
    this.status = 401;
    this.statusCode = 401;
  }
}

/** A token row refused because its client no longer exists (the foreign key, 23503). */
function isClientGone(err: unknown): boolean {
  const e = err as { code?: string; constraint?: string };
  return e?.code === '23503' && e.constraint === 'tokens_client_id_fkey';
}

/**
 * What a storage failure means to the client: an unreachable database is DatabaseUnavailable
 * (503), a value the database refused is UnstorableInput (400) — never a 503, which would
 * tell the caller to retry what can never succeed — and a token of a client deleted meanwhile
 * is ClientGone (401). Anything else is rethrown as is (a 500).
 */
export function databaseUnavailable(err: unknown): unknown {
  if (isDatabaseUnreachable(err)) return new DatabaseUnavailable(err);
  if (isUnstorableInput(err)) return new UnstorableInput(err);
  if (isClientGone(err)) return new ClientGone(err);
  return err;
}

/**
 * Runs a storage operation of the protocol engine's path, its failures mapped as above. Not an
 * async function: every token request passes here, and a catch costs less than a frame.
 */
export function guardStorage<T>(op: () => Promise<T>): Promise<T> {
  let running: Promise<T>;
  try {
    running = op();
  } catch (err) {
    return Promise.reject(databaseUnavailable(err));
  }
  return running.catch(rethrowMapped);
}

function rethrowMapped(err: unknown): never {
  throw databaseUnavailable(err);
}
