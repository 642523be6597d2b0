// Distinguished names compared as names, not as strings. People copy a subject from wherever
// they saw it: RFC 4514 (`CN=gw,O=Example`, least significant first, what
// `openssl x509 -nameopt RFC2253` prints), openssl's one-line output (`O = Example, CN = gw`,
// most significant first), or openssl's `-subj` form (`/O=Example/CN=gw`). The same name
// written either way must match, and nothing else may: so both sides are parsed into their
// RDN sequence, attribute types and values are normalised, and the sequences are compared.
// Pure functions: registration (store/clients.ts) refuses a DN that does not parse, and the
// mutual-TLS check (oauth/mtls.ts) compares a certificate's subject with the registered one.

/** One attribute type and value, normalised for comparison. */
interface Ava {
  type: string;
  value: string;
}

/** RDNs in the order written; each RDN's attributes sorted (their order carries no meaning). */
type Rdns = Ava[][];

export class DistinguishedNameError extends Error {}

// Short names as OpenSSL prints them, keyed by every spelling people use (lower case) and OID.
const ATTRIBUTE_TYPES: Record<string, string[]> = {
  cn: ['commonname', '2.5.4.3'],
  sn: ['surname', '2.5.4.4'],
  serialnumber: ['2.5.4.5'],
  c: ['countryname', '2.5.4.6'],
  l: ['localityname', '2.5.4.7'],
  st: ['stateorprovincename', 's', '2.5.4.8'],
  street: ['streetaddress', '2.5.4.9'],
  o: ['organizationname', '2.5.4.10'],
  ou: ['organizationalunitname', '2.5.4.11'],
  title: ['2.5.4.12'],
  businesscategory: ['2.5.4.15'],
  postalcode: ['2.5.4.17'],
  gn: ['givenname', '2.5.4.42'],
  initials: ['2.5.4.43'],
  generationqualifier: ['2.5.4.44'],
  dnqualifier: ['2.5.4.46'],
  pseudonym: ['2.5.4.65'],
  organizationidentifier: ['2.5.4.97'],
  dc: ['domaincomponent', '0.9.2342.19200300.100.1.25'],
  uid: ['userid', '0.9.2342.19200300.100.1.1'],
  emailaddress: ['email', 'e', '1.2.840.113549.1.9.1'],
};
const CANONICAL_TYPE = new Map<string, string>(
  Object.entries(ATTRIBUTE_TYPES).flatMap(([short, others]) => [[short, short], ...others.map((o): [string, string] => [o, short])]),
);

function normaliseType(raw: string): string {
  const type = raw.trim().toLowerCase().replace(/^oid\./, '');
  if (!/^([a-z][a-z0-9-]*|\d+(\.\d+)+)$/.test(type)) throw new DistinguishedNameError(`"${raw.trim()}" is not an attribute type`);
  return CANONICAL_TYPE.get(type) ?? type;
}

/**
 * Values compare with the case of ASCII letters and runs of spaces ignored, and nothing else:
 * a client's identity is not widened to look-alikes. No Unicode case folding (the Kelvin sign
 * would be a k), no compatibility folding (fullwidth letters would be ASCII ones), and only
 * U+0020 counts as a space (not a BOM, NBSP or ideographic space).
 */
function normaliseValue(value: string): string {
  return value.replace(/[A-Z]/g, (c) => c.toLowerCase()).replace(/ +/g, ' ').replace(/^ | $/g, '');
}

/** The characters of an escaped value: `\,` and friends, and `\XX` hex pairs of UTF-8 bytes. */
function unescapeValue(text: string, hexPairs: boolean): string {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\\' && i + 1 < text.length) {
      const pair = text.slice(i + 1, i + 3);
      if (hexPairs && /^[0-9a-fA-F]{2}$/.test(pair)) {
        bytes.push(parseInt(pair, 16));
        i += 2;
        continue;
      }
      i += 1;
      bytes.push(...Buffer.from(text[i]!, 'utf8'));
      continue;
    }
    bytes.push(...Buffer.from(ch, 'utf8'));
  }
  const decoded = Buffer.from(bytes);
  const textValue = decoded.toString('utf8');
  if (!Buffer.from(textValue, 'utf8').equals(decoded)) throw new DistinguishedNameError('an escaped value is not UTF-8');
  return textValue;
}

/**
 * Splits on the separators that are not escaped (`\`) nor, where quoting exists, quoted
 * (`"…"`), keeping the escapes in the pieces for the value parser.
 */
function splitUnescaped(text: string, separators: string, quotes: boolean): string[] {
  const pieces: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\\' && i + 1 < text.length) {
      current += ch + text[i + 1];
      i += 1;
    } else if (quotes && ch === '"') {
      quoted = !quoted;
      current += ch;
    } else if (!quoted && separators.includes(ch)) {
      pieces.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (quoted) throw new DistinguishedNameError('a quoted value is not closed');
  pieces.push(current);
  return pieces;
}

/** How a form writes values: RFC 4514 and openssl's one-line form escape and quote; -subj only escapes. */
interface ValueSyntax {
  hexPairs: boolean;
  quotes: boolean;
}

function parseAva(text: string, { hexPairs, quotes }: ValueSyntax): Ava {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new DistinguishedNameError(`"${text.trim()}" is not of the form type=value`);
  const type = normaliseType(text.slice(0, eq));
  // Spaces around '=' and around separators are not part of the value; escaped ones are.
  let raw = text.slice(eq + 1).replace(/^ +/, '');
  while (raw.endsWith(' ') && !/(^|[^\\])(\\\\)*\\ $/.test(raw)) raw = raw.slice(0, -1);
  // A BER-encoded value would be compared as its hex, not as the text it encodes: refused.
  if (raw.startsWith('#')) throw new DistinguishedNameError(`the value of ${type} is BER-encoded (#…): write it as text, or escape a leading # as \\#`);
  if (quotes && raw.startsWith('"')) {
    if (!raw.endsWith('"') || raw.length < 2) throw new DistinguishedNameError(`the quoted value of ${type} is not closed`);
    raw = raw.slice(1, -1);
  }
  const value = normaliseValue(unescapeValue(raw, hexPairs));
  if (!value) throw new DistinguishedNameError(`${type} has an empty value`);
  return { type, value };
}

function parseRdns(text: string, rdnSeparators: string, syntax: ValueSyntax): Rdns {
  const rdns = splitUnescaped(text, rdnSeparators, syntax.quotes).map((rdn) => {
    const avas = splitUnescaped(rdn, '+', syntax.quotes).map((ava) => parseAva(ava, syntax));
    return avas.sort((a, b) => (a.type + '=' + a.value < b.type + '=' + b.value ? -1 : 1));
  });
  if (rdns.length === 0) throw new DistinguishedNameError('the name is empty');
  return rdns;
}

const RFC_4514: ValueSyntax = { hexPairs: true, quotes: true };

/** A name as written, with the orders it may be read in. */
interface ParsedName {
  rdns: Rdns;
  /** The slash form has one order (most significant first); the comma forms are written both ways. */
  eitherOrder: boolean;
}

/** Parses a DN as people write it (RFC 4514, openssl's one-line or `/`-separated form). */
export function parseDistinguishedName(text: string): ParsedName {
  const trimmed = text.trim();
  if (!trimmed) throw new DistinguishedNameError('the name is empty');
  if (/[\x00-\x1f\x7f]/.test(trimmed)) throw new DistinguishedNameError('the name holds a control character');
  if (trimmed.startsWith('/')) {
    // openssl's -subj form: a backslash escapes the next character; there are no hex pairs.
    const rdns = parseRdns(trimmed.slice(1), '/', { hexPairs: false, quotes: false });
    return { rdns: rdns.reverse(), eitherOrder: false };
  }
  // RFC 4514 (',') and RFC 2253's older ';', one RDN per separator.
  return { rdns: parseRdns(trimmed, ',;', RFC_4514), eitherOrder: true };
}

/** Node's X509Certificate#subject: one RDN a line, most significant first, RFC 2253 escapes. */
export function parseCertificateName(multiline: string): Rdns {
  return parseRdns(multiline.replace(/\n+$/, ''), '\n', RFC_4514).reverse();
}

function sameRdns(a: Rdns, b: Rdns): boolean {
  return a.length === b.length && a.every((rdn, i) => {
    const other = b[i]!;
    return rdn.length === other.length && rdn.every((ava, j) => ava.type === other[j]!.type && ava.value === other[j]!.value);
  });
}

/**
 * Whether a certificate's subject (Node's multi-line form) is the registered name. The name is
 * taken in RFC 4514 order (least significant first) or, when written with commas, also in the
 * reverse order that openssl's one-line output uses: the same attributes in the same
 * sequence, nothing added, left out or moved.
 */
export function subjectMatches(certificateSubject: string, registered: string): boolean {
  let expected: ParsedName;
  let actual: Rdns;
  try {
    expected = parseDistinguishedName(registered);
    actual = parseCertificateName(certificateSubject);
  } catch {
    return false;
  }
  if (sameRdns(actual, expected.rdns)) return true;
  return expected.eitherOrder && sameRdns(actual, [...expected.rdns].reverse());
}

/** Refuses a DN that does not parse, with the reason: for registration. */
export function assertDistinguishedName(text: string): void {
  parseDistinguishedName(text);
}
