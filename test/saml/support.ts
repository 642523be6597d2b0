// SAML test fixtures, made at test time: RSA keys and self-signed certificates from `openssl`,
// assertions from a template, and two independent signers — samlify acting as an IdP, and
// Debian's `xmlsec1` signing a template — plus xml-crypto for forged and attack variants.
import { execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SamlLib, setSchemaValidator } from 'samlify';
import { SignedXml } from 'xml-crypto';

// samlify parses what it signs with a schema validator set; only the signer side uses samlify.
setSchemaValidator({ validate: async () => 'skipped' });

export const SAML2_BEARER = 'urn:ietf:params:oauth:grant-type:saml2-bearer';
export const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
export const HMAC_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#hmac-sha256';
export const EXC_C14N = 'http://www.w3.org/2001/10/xml-exc-c14n#';
export const ENVELOPED = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';
export const SHA256 = 'http://www.w3.org/2001/04/xmlenc#sha256';
export const SHA384 = 'http://www.w3.org/2001/04/xmldsig-more#sha384';
export const SHA512 = 'http://www.w3.org/2001/04/xmlenc#sha512';
export const SHA1 = 'http://www.w3.org/2000/09/xmldsig#sha1';
export const TRANSIENT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:transient';
export const PERSISTENT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';

export interface KeyPair {
  dir: string;
  keyPath: string;
  certPath: string;
  key: string;
  cert: string;
  /** The certificate's base64 body, as KeyInfo carries it. */
  certBody: string;
}

const tempDirs: string[] = [];

export function tempDir(prefix = 'km-saml-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** A fresh RSA key and a self-signed certificate for it, made by `openssl` in a temp dir. */
export function makeKeyPair(cn = 'test-idp'): KeyPair {
  const dir = tempDir();
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath,
    '-days', '2', '-subj', `/CN=${cn}`, '-sha256'], { stdio: 'ignore' });
  const key = readFileSync(keyPath, 'utf8');
  const cert = readFileSync(certPath, 'utf8');
  const certBody = cert.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
  return { dir, keyPath, certPath, key, cert, certBody };
}

/** A fresh EC key (P-256 or P-384) and a self-signed certificate for it. */
export function makeEcKeyPair(cn = 'ec-idp', curve = 'P-256'): KeyPair {
  const dir = tempDir();
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', `ec_paramgen_curve:${curve}`, '-nodes', '-keyout', keyPath, '-out', certPath,
    '-days', '2', '-subj', `/CN=${cn}`, '-sha256'], { stdio: 'ignore' });
  const key = readFileSync(keyPath, 'utf8');
  const cert = readFileSync(certPath, 'utf8');
  const certBody = cert.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, '');
  return { dir, keyPath, certPath, key, cert, certBody };
}

export const newId = () => `_${randomBytes(16).toString('hex')}`;
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

export interface AssertionFields {
  id?: string;
  issuer: string;
  nameId: string;
  /** Defaults to the token endpoint. */
  audience?: string;
  recipient?: string;
  /** Seconds relative to now. */
  issueInstant?: number;
  notBefore?: number | null;
  notOnOrAfter?: number | null;
  confirmationNotOnOrAfter?: number | null;
  /** Inserted right after Issuer (e.g. an xmlsec1 signature template). */
  afterIssuer?: string;
  /** Raw XML for the NameID's content (already escaped). */
  nameIdXml?: string;
  /** NameID Format; unspecified by default. */
  nameIdFormat?: string;
}

export interface Endpoint {
  issuer: string;
  tokenEndpoint: string;
}

/** A SAML 2.0 assertion as an IdP would write it for this server, unsigned. */
export function assertionXml(server: Endpoint, f: AssertionFields): string {
  const now = Date.now();
  const id = f.id ?? newId();
  const notBefore = f.notBefore === undefined ? -10 : f.notBefore;
  const notOnOrAfter = f.notOnOrAfter === undefined ? 300 : f.notOnOrAfter;
  const confirmation = f.confirmationNotOnOrAfter === undefined ? 300 : f.confirmationNotOnOrAfter;
  const conditionAttrs = [notBefore !== null ? ` NotBefore="${iso(now + notBefore * 1000)}"` : '', notOnOrAfter !== null ? ` NotOnOrAfter="${iso(now + notOnOrAfter * 1000)}"` : ''].join('');
  const recipient = f.recipient ?? server.tokenEndpoint;
  return `<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${id}" Version="2.0" IssueInstant="${iso(now + (f.issueInstant ?? -5) * 1000)}">`
    + `<saml:Issuer>${escapeXml(f.issuer)}</saml:Issuer>`
    + (f.afterIssuer ?? '')
    + '<saml:Subject>'
    + `<saml:NameID Format="${escapeXml(f.nameIdFormat ?? 'urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified')}">${f.nameIdXml ?? escapeXml(f.nameId)}</saml:NameID>`
    + '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
    + `<saml:SubjectConfirmationData Recipient="${escapeXml(recipient)}"${confirmation !== null ? ` NotOnOrAfter="${iso(now + confirmation * 1000)}"` : ''}/>`
    + '</saml:SubjectConfirmation>'
    + '</saml:Subject>'
    + `<saml:Conditions${conditionAttrs}>`
    + `<saml:AudienceRestriction><saml:Audience>${escapeXml(f.audience ?? server.tokenEndpoint)}</saml:Audience></saml:AudienceRestriction>`
    + '</saml:Conditions>'
    + `<saml:AuthnStatement AuthnInstant="${iso(now - 5000)}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`
    + '</saml:Assertion>';
}

/** Wraps an assertion (signed or not) in a samlp:Response. */
export function responseXml(server: Endpoint, issuer: string, inner: string, id = newId()): string {
  return `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${id}" Version="2.0" IssueInstant="${iso(Date.now() - 5000)}" Destination="${escapeXml(server.tokenEndpoint)}">`
    + `<saml:Issuer>${escapeXml(issuer)}</saml:Issuer>`
    + '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
    + inner
    + '</samlp:Response>';
}

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** The assertion parameter (RFC 7522 §2.1): base64url, no padding, no line breaks. */
export const encode = (xml: string) => Buffer.from(xml, 'utf8').toString('base64url');

/** Signer 1: samlify's libsaml signs the root element (Assertion or Response), signature after its Issuer. */
export function signWithSamlify(xml: string, pair: KeyPair): string {
  const rootName = /^<([\w:]+)/.exec(xml)![1]!.split(':').pop();
  return SamlLib.constructSAMLSignature({
    rawSamlMessage: xml,
    isMessageSigned: true,
    privateKey: pair.key,
    signingCert: pair.certBody,
    signatureAlgorithm: RSA_SHA256,
    isBase64Output: false,
    signatureConfig: {
      prefix: 'ds',
      location: { reference: `/*[local-name(.)='${rootName}']/*[local-name(.)='Issuer']`, action: 'after' },
    },
  });
}

/** The empty signature template xmlsec1 fills in: exc-c14n, rsa-sha256, one Reference to the root. */
export function xmlsecTemplate(id: string, withKeyInfo = true, digestAlgorithm = SHA256, signatureAlgorithm = RSA_SHA256): string {
  return '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">'
    + '<ds:SignedInfo>'
    + `<ds:CanonicalizationMethod Algorithm="${EXC_C14N}"/>`
    + `<ds:SignatureMethod Algorithm="${signatureAlgorithm}"/>`
    + `<ds:Reference URI="#${id}">`
    + `<ds:Transforms><ds:Transform Algorithm="${ENVELOPED}"/><ds:Transform Algorithm="${EXC_C14N}"/></ds:Transforms>`
    + `<ds:DigestMethod Algorithm="${digestAlgorithm}"/><ds:DigestValue></ds:DigestValue>`
    + '</ds:Reference>'
    + '</ds:SignedInfo>'
    + '<ds:SignatureValue></ds:SignatureValue>'
    + (withKeyInfo ? '<ds:KeyInfo><ds:X509Data><ds:X509Certificate></ds:X509Certificate></ds:X509Data></ds:KeyInfo>' : '')
    + '</ds:Signature>';
}

/** Signer 2: Debian's xmlsec1 signs an assertion that carries an empty signature template. */
export function signWithXmlsec(server: Endpoint, f: AssertionFields, pair: KeyPair, digestAlgorithm = SHA256, signatureAlgorithm = RSA_SHA256): string {
  const id = f.id ?? newId();
  const template = assertionXml(server, { ...f, id, afterIssuer: xmlsecTemplate(id, true, digestAlgorithm, signatureAlgorithm) });
  const dir = tempDir('km-xmlsec-');
  writeFileSync(join(dir, 'in.xml'), template);
  execFileSync('xmlsec1', ['--sign', '--privkey-pem', `${pair.keyPath},${pair.certPath}`,
    '--id-attr:ID', 'urn:oasis:names:tc:SAML:2.0:assertion:Assertion',
    '--output', join(dir, 'out.xml'), join(dir, 'in.xml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  return readFileSync(join(dir, 'out.xml'), 'utf8');
}

export interface XmlCryptoOptions {
  /** xpath of each element to reference; defaults to the root. */
  references?: string[];
  signatureAlgorithm?: string;
  /** Where the Signature goes: after the root's Issuer by default. */
  location?: { reference: string; action: 'append' | 'prepend' | 'before' | 'after' };
  /** Certificate to put in KeyInfo. */
  keyInfoCert?: string;
  /** DigestMethod of every Reference; SHA-256 by default. */
  digestAlgorithm?: string;
}

/** HMAC-SHA256 "signature" for xml-crypto, which ships none: keyed with whatever key is given. */
class HmacSha256 {
  getSignature(signedInfo: string, key: string | Buffer): string {
    return createHmac('sha256', key).update(signedInfo).digest('base64');
  }
  verifySignature(signedInfo: string, key: string | Buffer, signature: string): boolean {
    return this.getSignature(signedInfo, key) === signature;
  }
  getAlgorithmName(): string {
    return HMAC_SHA256;
  }
}

/** xml-crypto as a low-level signer, for variants neither IdP would write. */
export function signWithXmlCrypto(xml: string, privateKey: string | Buffer, o: XmlCryptoOptions = {}): string {
  const rootName = /^<([\w:]+)/.exec(xml)![1]!.split(':').pop();
  const sig = new SignedXml({
    privateKey,
    signatureAlgorithm: o.signatureAlgorithm ?? RSA_SHA256,
    canonicalizationAlgorithm: EXC_C14N,
    getKeyInfoContent: o.keyInfoCert ? () => `<ds:X509Data><ds:X509Certificate>${o.keyInfoCert}</ds:X509Certificate></ds:X509Data>` : () => null,
  });
  (sig.SignatureAlgorithms as Record<string, unknown>)[HMAC_SHA256] = HmacSha256;
  for (const xpath of o.references ?? ['/*']) {
    sig.addReference({ xpath, transforms: [ENVELOPED, EXC_C14N], digestAlgorithm: o.digestAlgorithm ?? SHA256 });
  }
  sig.computeSignature(xml, {
    prefix: 'ds',
    location: o.location ?? { reference: `/*[local-name(.)='${rootName}']/*[local-name(.)='Issuer']`, action: 'after' },
  });
  return sig.getSignedXml();
}
