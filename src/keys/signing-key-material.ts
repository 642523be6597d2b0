// What a stored signing key must be to sign with its alg, and how it signs (RFC 7518 §3,
// RFC 8037 §3.1). node:crypto signs with whatever key it is given, and oidc-provider takes the
// key's word for its type: a key file edited by hand must stop the start (or be refused by a
// reload or a rotation), not make tokens whose header names another algorithm than their
// signature's, or that do not verify with what /jwks publishes.
import { constants, createHash, createPrivateKey, createPublicKey, sign, verify, type JsonWebKey, type KeyObject, type SignKeyObjectInput } from 'node:crypto';
import type { JWK } from 'jose';
import type { SigningAlgorithm } from '../config/index.ts';
import { KeyFileError } from './key-file.ts';

/** How each algorithm's signature is made and checked: hash and node:crypto options, if any. */
const JWS: Record<SigningAlgorithm, { hash: string | null; options?: Omit<SignKeyObjectInput, 'key'> }> = {
  RS256: { hash: 'sha256' },
  // RFC 7518 §3.5: the salt is as long as the hash.
  PS256: { hash: 'sha256', options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } },
  // RFC 7518 §3.4: R and S concatenated, not DER.
  ES256: { hash: 'sha256', options: { dsaEncoding: 'ieee-p1363' } },
  // RFC 8037 §3.1: Ed25519 hashes internally.
  EdDSA: { hash: null },
};

/** The JWS signature bytes of `data` (the encoded header and payload, joined by a dot). */
export function jwsSignature(alg: SigningAlgorithm, privateKey: KeyObject, data: Uint8Array): Buffer {
  const { hash, options } = JWS[alg];
  // The key object itself wherever possible: node:crypto tells an options object from a key by
  // catching two exceptions, each with its stack trace (about 15 µs per JWT in bench b). ES256
  // gets its encoding here instead (an ES256 signature 34 → 18 µs); PS256's padding has no
  // other way in.
  if (alg === 'ES256') return p1363FromDer(sign(hash, data, privateKey), P256_SCALAR_BYTES);
  return sign(hash, data, options ? { key: privateKey, ...options } : privateKey);
}

const P256_SCALAR_BYTES = 32;

/**
 * An ECDSA signature as OpenSSL makes it (DER: a SEQUENCE of the INTEGERs r and s) as JWS
 * carries it (RFC 7518 §3.4): r and s as unsigned big-endian numbers of `size` bytes each,
 * one after the other. DER writes each in as few bytes as it takes, plus a zero byte when the
 * top bit is set, so either may be shorter or one byte longer than `size`.
 */
function p1363FromDer(der: Buffer, size: number): Buffer {
  const malformed = () => new Error('ECDSA signature: not the DER encoding of two integers');
  // For curves up to P-384 the SEQUENCE is shorter than 128 bytes: one length byte.
  if (der[0] !== 0x30 || der[1] !== der.length - 2) throw malformed();
  const out = Buffer.alloc(2 * size);
  let at = 2;
  for (let half = 0; half < 2; half++) {
    if (der[at] !== 0x02 || at + 2 > der.length) throw malformed();
    const end = at + 2 + der[at + 1]!;
    let start = at + 2;
    while (start < end && der[start] === 0) start++;
    if (end > der.length || end - start > size) throw malformed();
    der.copy(out, (half + 1) * size - (end - start), start, end);
    at = end;
  }
  if (at !== der.length) throw malformed();
  return out;
}

/** The key each algorithm signs with (RFC 7518 §3.3: RSA keys of at least 2048 bits). */
function fitsAlgorithm(key: KeyObject, alg: SigningAlgorithm): boolean {
  const details = key.asymmetricKeyDetails ?? {};
  switch (alg) {
    case 'RS256':
    case 'PS256': return key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048;
    case 'ES256': return key.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1';
    case 'EdDSA': return key.asymmetricKeyType === 'ed25519';
  }
}

const KEY_OF: Record<SigningAlgorithm, string> = {
  RS256: 'an RSA key of at least 2048 bits',
  PS256: 'an RSA key of at least 2048 bits',
  ES256: 'an EC P-256 key',
  EdDSA: 'an Ed25519 key',
};

/** How messages name a key: its kid (on one line), or its place in the file when it has none. */
export function signingKeyLabel(kid: unknown, position: number): string {
  const name = typeof kid === 'string' && kid ? kid.replace(/[\0-\x1f\x7f]/g, '?').slice(0, 100) : `#${position + 1}`;
  return `signing key ${name} (signing-keys.json in the keys directory)`;
}

/** The key pair of a stored private JWK, checked to be one that signs `alg` verifiably. */
export function signingKeyMaterial(jwk: JWK, alg: SigningAlgorithm, label: string): { privateKey: KeyObject; publicKey: KeyObject } {
  // The message names the key and what is wrong, never a member's value: it goes to stderr and the log.
  const refuse = (why: string) => new KeyFileError(`${label}: ${why}`);
  if (jwk.use !== undefined && jwk.use !== 'sig') throw refuse(`use is not "sig": not a signing key`);
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('sign'))) throw refuse('key_ops does not include "sign"');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' });
  } catch {
    // node's message may quote a member's value: say which members a private key needs instead.
    throw refuse("not a valid private key: members missing or damaged (RSA needs n, e, d, p, q, dp, dq, qi; EC crv, x, y, d; OKP crv, x, d)");
  }
  if (!fitsAlgorithm(privateKey, alg)) throw refuse(`${alg} needs ${KEY_OF[alg]}`);
  const publicKey = createPublicKey(privateKey);
  // The public members are what /jwks publishes; a file whose private members belong to
  // another key would sign tokens that nobody can verify.
  const probe = Buffer.from('keymanager signing key check');
  const { hash, options } = JWS[alg];
  if (!verify(hash, probe, { key: publicKey, ...options }, jwsSignature(alg, privateKey, probe))) {
    throw refuse('its private and public members are not of one key pair: what it signed would not verify with /jwks');
  }
  return { privateKey, publicKey };
}

/** RFC 7638 thumbprint: the kid oidc-provider gives a key that has none, made here for every use. */
export function jwkThumbprint(publicKey: KeyObject): string {
  // node exports exactly the required members of RSA, EC and OKP public keys.
  const members = Object.entries(publicKey.export({ format: 'jwk' })).sort(([a], [b]) => (a < b ? -1 : 1));
  return createHash('sha256').update(JSON.stringify(Object.fromEntries(members))).digest('base64url');
}
