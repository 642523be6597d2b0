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

/**
 * What a storage failure means to the client: an unreachable database is DatabaseUnavailable
 * (503), a value the database refused is UnstorableInput (400) — never a 503, which would
 * tell the caller to retry what can never succeed. Anything else is rethrown as is (a 500).
 */
export function databaseUnavailable(err: unknown): unknown {
  if (isDatabaseUnreachable(err)) return new DatabaseUnavailable(err);
  if (isUnstorableInput(err)) return new UnstorableInput(err);
  return err;
}
