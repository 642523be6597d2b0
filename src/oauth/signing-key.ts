// The engine's signing keys, handed to it as ExternalSigningKey instances (oidc-provider's
// public API for keys it does not hold itself) so that a JWT is signed in this process with
// node:crypto's one-shot sign, on the thread that asks for it.
//
// Why not the engine's own path: it signs through WebCrypto, which queues every signature on
// libuv's thread pool and wakes the event loop when it is done: two thread hand-offs and
// jose's own encoding per token, about 50 µs of CPU on top of the signature itself (bench b).
// The signature is the same either way (same key, same algorithm, same bytes signed), and so
// is /jwks. It holds up the event loop while it runs (about 0.2 ms for RSA 2048, far less for
// ES256 and EdDSA); more cores are used through workers (KM_WORKERS).
import { constants, createPrivateKey, createPublicKey, sign, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { ExternalSigningKey } from 'oidc-provider';
import { StartupError } from '../config/startup-errors.ts';
import { signingAlgorithmOf, type SigningAlgorithm } from '../keys/signing-keys.ts';

/** JWS signature bytes (RFC 7518 §3) for each algorithm a key may carry. */
const SIGNERS: Record<SigningAlgorithm, (key: KeyObject, data: Uint8Array) => Buffer> = {
  RS256: (key, data) => sign('sha256', data, key),
  // RFC 7518 §3.5: the salt is as long as the hash.
  PS256: (key, data) => sign('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
  // RFC 7518 §3.4: R and S concatenated, not DER.
  ES256: (key, data) => sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }),
  // RFC 8037 §3.1: Ed25519 hashes internally.
  EdDSA: (key, data) => sign(null, data, key),
};

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

class InProcessSigningKey extends ExternalSigningKey {
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  readonly #sign: (key: KeyObject, data: Uint8Array) => Buffer;
  readonly #alg: SigningAlgorithm;
  // The engine names a key that has no kid (RFC 7638 thumbprint), so this one can be set.
  #kid: string | undefined;

  constructor(jwk: JWK) {
    super();
    const alg = signingAlgorithmOf(jwk);
    this.#privateKey = createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' });
    // node:crypto would sign with whatever the key is: a key file edited by hand must not make
    // tokens whose header names another algorithm than their signature's.
    if (!fitsAlgorithm(this.#privateKey, alg)) throw new StartupError(`signing key ${jwk.kid} (signing-keys.json in the keys directory): ${alg} needs ${KEY_OF[alg]}`);
    this.#publicKey = createPublicKey(this.#privateKey);
    this.#sign = SIGNERS[alg];
    this.#alg = alg;
    this.#kid = jwk.kid;
  }

  override get alg(): SigningAlgorithm {
    return this.#alg;
  }

  override get kid(): string | undefined {
    return this.#kid;
  }

  override set kid(value: string | undefined) {
    this.#kid = value;
  }

  override keyObject(): KeyObject {
    return this.#publicKey;
  }

  override sign(data: Uint8Array): Buffer {
    return this.#sign(this.#privateKey, data);
  }
}

/** The key set as the engine is to be given it (jwks.keys), in the same order. */
export function engineSigningKeys(jwks: JWK[]): ExternalSigningKey[] {
  return jwks.map((jwk) => new InProcessSigningKey(jwk));
}
