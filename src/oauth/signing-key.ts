// The engine's signing keys, handed to it as ExternalSigningKey instances (oidc-provider's
// public API for keys it does not hold itself) so that a JWT is signed in this process with
// node:crypto's one-shot sign, on the thread that asks for it.
//
// Why not the engine's own path: it signs through WebCrypto, which queues every signature on
// libuv's thread pool and wakes the event loop when it is done: two thread hand-offs and
// jose's own encoding per token, about 50 µs of CPU on top of the signature itself (bench b).
// The signature is the same either way (same key, same algorithm, same bytes signed), and so
// is /jwks (but for a key stored without alg, now published as the RS256 key it always signed
// as). It holds up the event loop while it runs (about 0.2 ms for RSA 2048, far less for
// ES256 and EdDSA); more cores are used through workers (KM_WORKERS).
import type { KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { ExternalSigningKey } from 'oidc-provider';
import { jwsSignature, signingKeyLabel, signingKeyMaterial } from '../keys/signing-key-material.ts';
import { signingAlgorithmOf, type SigningAlgorithm } from '../keys/signing-keys.ts';

class InProcessSigningKey extends ExternalSigningKey {
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  readonly #alg: SigningAlgorithm;
  // The engine names a key that has no kid (RFC 7638 thumbprint), so this one can be set.
  #kid: string | undefined;

  constructor(jwk: JWK, position: number) {
    super();
    const label = signingKeyLabel(jwk.kid, position);
    this.#alg = signingAlgorithmOf(jwk, label);
    // Checked again here, whoever built the key set: node:crypto signs with whatever it is given.
    const { privateKey, publicKey } = signingKeyMaterial(jwk, this.#alg, label);
    this.#privateKey = privateKey;
    this.#publicKey = publicKey;
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
    return jwsSignature(this.#alg, this.#privateKey, data);
  }
}

/** The key set as the engine is to be given it (jwks.keys), in the same order. */
export function engineSigningKeys(jwks: JWK[]): ExternalSigningKey[] {
  return jwks.map((jwk, position) => new InProcessSigningKey(jwk, position));
}
