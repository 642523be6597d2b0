// zod's messages made to say what would have been accepted: "Invalid input" for KM_TLS=maybe
// leaves the operator guessing; "expected one of on, off, …" does not.
import type { z } from 'zod';

/** A zod issue as one phrase; a value outside a fixed set is answered with the set. */
export function describeIssue(issue: z.core.$ZodIssue): string {
  const accepted = acceptedValues(issue);
  const why = accepted.length > 0 ? `expected one of ${accepted.join(', ')}` : issue.message;
  // Inside a list of tables (management.users): which entry, which field.
  const at = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
  return at ? `${at}: ${why}` : why;
}

function acceptedValues(issue: z.core.$ZodIssue): string[] {
  // Numeric words last: zod lists them first (they are integer keys of the object it keeps).
  if (issue.code === 'invalid_value') return issue.values.map(String).sort((a, b) => Number(/^\d+$/.test(a)) - Number(/^\d+$/.test(b)));
  // on/off switches are a boolean (TOML) or one of several words (environment).
  if (issue.code === 'invalid_union') return [...new Set(issue.errors.flat().flatMap(acceptedValues))];
  return [];
}
