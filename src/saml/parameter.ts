// The `assertion` parameter of the SAML bearer grant before any XML is read: its encoding
// (RFC 7522 §2.1), its size, and the two ways an assertion is refused. Kept apart from
// assertion.ts so that the XML libraries load only when an assertion is first checked.

export const TRANSIENT_NAME_ID = 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient';

/** A malformed `assertion` parameter: invalid_request. */
export class AssertionMalformed extends Error {}
/** A well-formed assertion that is not acceptable: invalid_grant. The message is for the log. */
export class AssertionRejected extends Error {}

/**
 * The limit is on the parameter as sent (base64url): a limit on the decoded XML would sit
 * above what any body under max_body_bytes can carry (base64 adds a third), and never count.
 */
export const MAX_ASSERTION_LENGTH = 48 * 1024;

/** RFC 7522 §2.1: one assertion, base64url, no line breaks; correct padding if any. */
export function decodeAssertionParameter(value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new AssertionMalformed("missing required parameter 'assertion'");
  if (value.length > MAX_ASSERTION_LENGTH) throw new AssertionMalformed('assertion is too large');
  if (!/^[A-Za-z0-9_-]+={0,2}$/.test(value) || (value.includes('=') && value.length % 4 !== 0) || value.length % 4 === 1) {
    throw new AssertionMalformed('assertion must be base64url without line breaks');
  }
  const xml = Buffer.from(value, 'base64url');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(xml);
  } catch {
    throw new AssertionMalformed('assertion is not UTF-8 XML');
  }
}
