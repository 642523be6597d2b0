// The one place that reads SAML: decoding the assertion parameter, checking its signature
// against an identity provider's registered certificates, and reading claims — only from the
// XML the signature covers, as xml-crypto returns it, so that nothing wrapped around or beside
// the signed element (XML signature wrapping) is ever read. Only characters XML allows get
// past parsing, and only SHA-2 (digests and signature) is accepted.
import { createHash, createPublicKey, verify, type KeyLike } from 'node:crypto';
import { DOMParser, type Document, type Element, type Node } from '@xmldom/xmldom';
import { SignedXml, type HashAlgorithm } from 'xml-crypto';
import { AssertionRejected } from './parameter.ts';

const SAML = 'urn:oasis:names:tc:SAML:2.0:assertion';
const SAMLP = 'urn:oasis:names:tc:SAML:2.0:protocol';
const DSIG = 'http://www.w3.org/2000/09/xmldsig#';
const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';
const SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';
/** xs:ID values IdPs write are short; a longer one is refused before it reaches the replay cache. */
export const MAX_ASSERTION_ID_LENGTH = 256;

// Public-key algorithms with SHA-2 only: an HMAC "signature" would be keyed with something
// public. Each names the key type it needs, so a registered key is used for its own algorithm.
const SIGNATURE_ALGORITHMS: Record<string, { hash: string; keyType: 'rsa' | 'ec' }> = {
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256': { hash: 'sha256', keyType: 'rsa' },
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512': { hash: 'sha512', keyType: 'rsa' },
  'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256': { hash: 'sha256', keyType: 'ec' },
  'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384': { hash: 'sha384', keyType: 'ec' },
  'http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512': { hash: 'sha512', keyType: 'ec' },
};
const TRANSFORMS = new Set(['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#']);
// SHA-2 digests only: a SHA-1 Reference digest under an RSA-SHA256 SignatureMethod is a
// SHA-1 signature of the content, whatever the SignatureMethod says.
const DIGEST_ALGORITHMS: Record<string, string> = {
  'http://www.w3.org/2001/04/xmlenc#sha256': 'sha256',
  'http://www.w3.org/2001/04/xmldsig-more#sha384': 'sha384',
  'http://www.w3.org/2001/04/xmlenc#sha512': 'sha512',
};

/**
 * The verifier's signature table: the accepted algorithms and nothing else (xml-crypto ships
 * RSA-SHA1 and lacks ECDSA). XML-DSig writes an ECDSA signature value as r || s (RFC 4050),
 * not DER.
 */
const verifierSignatures = Object.fromEntries(Object.entries(SIGNATURE_ALGORITHMS).map(([uri, { hash, keyType }]) => [uri, class {
  getSignature(): string {
    throw new Error('verification only');
  }
  verifySignature(material: string, key: KeyLike, signatureValue: string): boolean {
    const publicKey = createPublicKey(key as string);
    if (publicKey.asymmetricKeyType !== keyType) return false;
    const options = keyType === 'ec' ? { key: publicKey, dsaEncoding: 'ieee-p1363' as const } : publicKey;
    return verify(hash, Buffer.from(material, 'utf8'), options, Buffer.from(signatureValue, 'base64'));
  }
  getAlgorithmName(): string {
    return uri;
  }
}])) as SignedXml['SignatureAlgorithms'];

/** The verifier's digest table: the accepted ones, and nothing else (xml-crypto ships SHA-1 and lacks SHA-384). */
const verifierDigests = Object.fromEntries(Object.entries(DIGEST_ALGORITHMS).map(([uri, name]) => [uri, class implements HashAlgorithm {
  getHash(xml: string): string {
    return createHash(name).update(xml, 'utf8').digest('base64');
  }
  getAlgorithmName(): string {
    return uri;
  }
}]));

export interface SignedAssertion {
  id: string;
  issuer: string;
  issueInstant: Date;
  nameId: string;
  /** The NameID's Format attribute, if any. */
  nameIdFormat?: string;
  /** The Audiences of each AudienceRestriction: each restriction must hold (SAML core §2.5.1.4). */
  audienceRestrictions: string[][];
  notBefore?: Date;
  notOnOrAfter?: Date;
  /** From the bearer SubjectConfirmationData (RFC 7522 §3 item 4). */
  recipient?: string;
  confirmationNotBefore?: Date;
  confirmationNotOnOrAfter?: Date;
  /** When the signed element is a samlp:Response: where it was sent, if it says. */
  responseDestination?: string;
}

// XML 1.0 §2.2 Char. xmldom lets NUL, other controls and lone surrogates through, raw or as
// character references; refusing them here means no value read from an assertion can carry
// a character the database cannot store.
const NOT_XML_CHAR = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
const CHARACTER_REFERENCE = /&#(?:x([0-9A-Fa-f]+)|([0-9]+));/g;

function isXmlChar(code: number): boolean {
  return code === 0x9 || code === 0xa || code === 0xd || (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff);
}

function checkCharacters(xml: string): void {
  if (NOT_XML_CHAR.test(xml)) throw new AssertionRejected('a character XML does not allow (NUL, control or lone surrogate) in the assertion');
  for (const [, hex, dec] of xml.matchAll(CHARACTER_REFERENCE)) {
    const code = hex !== undefined ? Number.parseInt(hex, 16) : Number.parseInt(dec!, 10);
    if (!isXmlChar(code)) throw new AssertionRejected('a character reference to a character XML does not allow in the assertion');
  }
}

function parse(xml: string): Document {
  checkCharacters(xml);
  // No DTDs (entity expansion, external entities), no comments or processing instructions
  // (they split text that signatures see whole), before any parser touches the text.
  const body = xml.replace(/^\uFEFF?<\?xml[^?]*\?>/, '');
  if (/<!DOCTYPE|<!ENTITY|<!--|<\?/i.test(body)) throw new AssertionRejected('DTD, comment or processing instruction in the assertion');
  let failure: string | undefined;
  let doc: Document;
  try {
    doc = new DOMParser({
      onError: (level: string, message: string) => {
        if (level !== 'warning') failure ??= message;
      },
    }).parseFromString(xml, 'text/xml');
  } catch (err) {
    // xmldom throws on fatal errors whatever onError does.
    throw new AssertionRejected(`malformed XML: ${err instanceof Error ? err.message.split('\n')[0] : 'unreadable'}`);
  }
  if (failure || !doc.documentElement) throw new AssertionRejected(`malformed XML: ${failure ?? 'no root element'}`);
  return doc;
}

function children(el: Element, ns: string, name: string): Element[] {
  const out: Element[] = [];
  for (let n: Node | null = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 1 && (n as Element).namespaceURI === ns && (n as Element).localName === name) out.push(n as Element);
  }
  return out;
}

function only(el: Element, ns: string, name: string, what: string): Element {
  const found = children(el, ns, name);
  if (found.length !== 1) throw new AssertionRejected(`expected exactly one ${what}, found ${found.length}`);
  return found[0]!;
}

function optional(el: Element, ns: string, name: string): Element | undefined {
  const found = children(el, ns, name);
  if (found.length > 1) throw new AssertionRejected(`more than one ${name}`);
  return found[0];
}

/** Text of an element that holds text only, exactly as written. */
function exactText(el: Element): string {
  for (let n: Node | null = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType !== 3 && n.nodeType !== 4) throw new AssertionRejected(`${el.localName} holds more than text`);
  }
  return el.textContent ?? '';
}

/** Text of an element that holds text only, without surrounding white space (URIs, times). */
function text(el: Element): string {
  return exactText(el).trim();
}

function time(value: string | null, what: string): Date | undefined {
  if (value === null || value === '') return undefined;
  const t = Date.parse(value);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/.test(value) || Number.isNaN(t)) throw new AssertionRejected(`${what} is not a UTC dateTime`);
  return new Date(t);
}

/** A parsed, not yet verified assertion document. */
export interface UnverifiedAssertion {
  xml: string;
  doc: Document;
  /**
   * The Issuer as written, unsigned: only to pick, in memory, whose registered certificates to
   * check the signature with. It must never reach a query (it is not yet trusted).
   */
  claimedIssuer: string;
}

export function parseAssertion(xml: string): UnverifiedAssertion {
  const doc = parse(xml);
  const root = doc.documentElement!;
  const assertion = root.namespaceURI === SAML && root.localName === 'Assertion' ? root
    : root.namespaceURI === SAMLP && root.localName === 'Response' ? only(root, SAML, 'Assertion', 'Assertion in the Response') : undefined;
  if (!assertion) throw new AssertionRejected('the document is neither a saml:Assertion nor a samlp:Response');
  return { xml, doc, claimedIssuer: text(only(assertion, SAML, 'Issuer', 'Issuer')) };
}

function checkSignatureShape(doc: Document): Element {
  const signatures = doc.getElementsByTagNameNS(DSIG, 'Signature');
  if (signatures.length === 0) throw new AssertionRejected('the assertion is not signed');
  if (signatures.length > 1) throw new AssertionRejected('more than one Signature');
  const signature = signatures[0]!;
  const signedInfo = only(signature, DSIG, 'SignedInfo', 'SignedInfo');
  const method = only(signedInfo, DSIG, 'SignatureMethod', 'SignatureMethod').getAttribute('Algorithm') ?? '';
  if (!Object.hasOwn(SIGNATURE_ALGORITHMS, method)) throw new AssertionRejected(`signature algorithm ${method} is not accepted`);
  const reference = only(signedInfo, DSIG, 'Reference', 'Reference');
  const digest = only(reference, DSIG, 'DigestMethod', 'DigestMethod').getAttribute('Algorithm') ?? '';
  if (!Object.hasOwn(DIGEST_ALGORITHMS, digest)) throw new AssertionRejected(`digest algorithm ${digest} is not accepted (SHA-256, SHA-384 or SHA-512 only)`);
  const transforms = optional(reference, DSIG, 'Transforms');
  for (const t of transforms ? children(transforms, DSIG, 'Transform') : []) {
    if (!TRANSFORMS.has(t.getAttribute('Algorithm') ?? '')) throw new AssertionRejected(`transform ${t.getAttribute('Algorithm')} is not accepted`);
  }
  // The signature must sit in, and refer to, the root element (the Assertion or the Response).
  const root = doc.documentElement!;
  const uri = reference.getAttribute('URI') ?? '';
  if (signature.parentNode !== root || uri !== `#${root.getAttribute('ID')}`) {
    throw new AssertionRejected('the signature does not cover the root element');
  }
  return signature;
}

/**
 * A Response around the assertion speaks for it too: it must be a success, of SAML 2.0, and
 * from the assertion's own issuer. Returns its Destination.
 */
function checkResponse(response: Element, assertionIssuer: string): string | undefined {
  if (response.getAttribute('Version') !== '2.0') throw new AssertionRejected('the Response is not of SAML 2.0 (Version)');
  const status = only(only(response, SAMLP, 'Status', 'Status in the Response'), SAMLP, 'StatusCode', 'StatusCode in the Response');
  if (status.getAttribute('Value') !== SUCCESS) throw new AssertionRejected(`the Response reports ${status.getAttribute('Value') ?? 'no status'}, not success`);
  const issuer = optional(response, SAML, 'Issuer');
  if (issuer && text(issuer) !== assertionIssuer) throw new AssertionRejected('the Response\'s Issuer differs from the assertion\'s');
  return response.getAttribute('Destination') ?? undefined;
}

function readAssertion(signedXml: string): SignedAssertion {
  const root = parse(signedXml).documentElement!;
  let assertion: Element;
  let response: Element | undefined;
  if (root.namespaceURI === SAML && root.localName === 'Assertion') assertion = root;
  else if (root.namespaceURI === SAMLP && root.localName === 'Response') {
    response = root;
    assertion = only(root, SAML, 'Assertion', 'Assertion in the signed Response');
  } else throw new AssertionRejected('the signed element is neither an Assertion nor a Response');
  if (assertion.getAttribute('Version') !== '2.0') throw new AssertionRejected('the assertion is not of SAML 2.0 (Version)');
  const issuer = text(only(assertion, SAML, 'Issuer', 'Issuer'));
  const responseDestination = response ? checkResponse(response, issuer) : undefined;

  const id = assertion.getAttribute('ID');
  if (!id) throw new AssertionRejected('Assertion without ID');
  if (id.length > MAX_ASSERTION_ID_LENGTH) throw new AssertionRejected(`Assertion ID longer than ${MAX_ASSERTION_ID_LENGTH} characters`);
  const subject = only(assertion, SAML, 'Subject', 'Subject');
  const nameIdElement = only(subject, SAML, 'NameID', 'NameID');
  // As written: " carol" is not "carol" (the NameID rules refuse surrounding spaces).
  const nameId = exactText(nameIdElement);
  if (!nameId) throw new AssertionRejected('empty NameID');
  const bearer = children(subject, SAML, 'SubjectConfirmation').filter((c) => c.getAttribute('Method') === BEARER);
  if (bearer.length !== 1) throw new AssertionRejected('expected one bearer SubjectConfirmation');
  const data = optional(bearer[0]!, SAML, 'SubjectConfirmationData');
  const conditions = optional(assertion, SAML, 'Conditions');
  const audienceRestrictions = conditions
    ? children(conditions, SAML, 'AudienceRestriction').map((r) => children(r, SAML, 'Audience').map(text))
    : [];
  return {
    id,
    issuer,
    issueInstant: time(assertion.getAttribute('IssueInstant'), 'IssueInstant') ?? (() => { throw new AssertionRejected('no IssueInstant'); })(),
    nameId,
    nameIdFormat: nameIdElement.getAttribute('Format')?.trim() || undefined,
    audienceRestrictions,
    notBefore: conditions ? time(conditions.getAttribute('NotBefore'), 'NotBefore') : undefined,
    notOnOrAfter: conditions ? time(conditions.getAttribute('NotOnOrAfter'), 'NotOnOrAfter') : undefined,
    recipient: data?.getAttribute('Recipient') ?? undefined,
    confirmationNotBefore: data ? time(data.getAttribute('NotBefore'), 'SubjectConfirmationData NotBefore') : undefined,
    confirmationNotOnOrAfter: data ? time(data.getAttribute('NotOnOrAfter'), 'SubjectConfirmationData NotOnOrAfter') : undefined,
    responseDestination,
  };
}

/**
 * Verifies the signature with each registered certificate in turn (never with a key or
 * certificate carried in the document) and returns the claims of the signed element.
 */
export function verifySignedAssertion({ xml, doc }: UnverifiedAssertion, certificates: string[]): SignedAssertion {
  const signature = checkSignatureShape(doc);
  for (const cert of certificates) {
    const verifier = new SignedXml({ publicCert: cert, getCertFromKeyInfo: () => null });
    verifier.HashAlgorithms = verifierDigests;
    verifier.SignatureAlgorithms = verifierSignatures;
    try {
      verifier.loadSignature(signature as never);
    } catch (err) {
      // xml-crypto throws plain errors for a Signature it cannot read (found by fast-check).
      throw new AssertionRejected(`malformed Signature: ${err instanceof Error ? err.message.split('\n')[0] : 'unreadable'}`);
    }
    let valid = false;
    try {
      valid = verifier.checkSignature(xml);
    } catch {
      valid = false;
    }
    if (!valid) continue;
    const [signed, ...more] = verifier.getSignedReferences();
    if (!signed || more.length) throw new AssertionRejected('expected exactly one signed reference');
    return readAssertion(signed);
  }
  throw new AssertionRejected('the signature does not verify with any registered certificate of this identity provider');
}
