// Management API refusals: JSON { error, error_description } with their status, mapped by the
// surface's one error mapper (src/http/errors.ts), which also writes the challenge.
export class ManagementError extends Error {
  readonly expose = true;
  readonly status: number;
  readonly error: string;
  readonly error_description: string;
  /** The WWW-Authenticate scheme of a 401. */
  readonly challenge?: 'Basic' | 'Bearer';

  constructor(status: number, error: string, description: string, challenge?: 'Basic' | 'Bearer') {
    super(description);
    this.status = status;
    this.error = error;
    this.error_description = description;
    this.challenge = challenge;
  }
}

export const unauthorized = (description: string, challenge: 'Basic' | 'Bearer') => new ManagementError(401, 'unauthorized', description, challenge);
export const forbidden = (description: string) => new ManagementError(403, 'forbidden', description);
export const notFound = (description: string) => new ManagementError(404, 'not_found', description);
export const badRequest = (description: string) => new ManagementError(400, 'invalid_request', description);
