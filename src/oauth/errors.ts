// OAuth-facing errors beyond the ones oidc-provider ships. Everything that reaches a client
// is an oidc-provider error, so the wire shape is always { error, error_description }.
import { errors } from 'oidc-provider';
import { isDatabaseUnreachable } from '../db/errors.ts';

/** 503 temporarily_unavailable: storage is down, so nothing is issued or reported active. */
export class DatabaseUnavailable extends errors.TemporarilyUnavailable {
  constructor(cause: unknown) {
    super('the service is temporarily unavailable', { cause });
    this.status = 503;
    this.statusCode = 503;
    this.expose = true;
  }
}

/** Turns a connection failure into DatabaseUnavailable; anything else is rethrown as is. */
export function databaseUnavailable(err: unknown): unknown {
  return isDatabaseUnreachable(err) ? new DatabaseUnavailable(err) : err;
}
