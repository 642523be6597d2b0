// What the targets are measured against, on this machine in this run: the CPU time of
// one signature with the configured algorithm (b ≤ a + one signature) and of one argon2id hash
// with the server's parameters (d's limit: 1 / one hash's CPU time, logins per core-second).
import argon2 from 'argon2';
import type { SigningAlgorithm } from '../src/config/index.ts';
import { jwsSignature, signingKeyLabel, signingKeyMaterial } from '../src/keys/signing-key-material.ts';
import { generateSigningKey } from '../src/keys/signing-keys.ts';

export interface Calibration {
  signingAlgorithm: SigningAlgorithm;
  signatureMicros: number;
  argon2HashMicros: number;
}

const cpuMicros = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

export async function calibrate(signingAlgorithm: SigningAlgorithm): Promise<Calibration> {
  // The signature alone, made by the server's own function (jwsSignature: node:crypto's
  // one-shot sign) with a key the server's own way (generateSigningKey), over as many bytes as
  // a JWT access token's header and claims. Signing a whole JWT through jose (WebCrypto, on the
  // thread pool) costs about 55 µs more for RS256 here: that was the reference until the server
  // stopped signing that way, and would flatter b now.
  const jwk = await generateSigningKey(signingAlgorithm);
  const { privateKey } = signingKeyMaterial(jwk, signingAlgorithm, signingKeyLabel(jwk.kid, 0));
  const signingInput = Buffer.alloc(420, 'e');
  const signature = () => jwsSignature(signingAlgorithm, privateKey, signingInput);
  for (let i = 0; i < 20; i++) signature();
  let start = cpuMicros();
  const signatures = 500;
  for (let i = 0; i < signatures; i++) signature();
  const signatureMicros = (cpuMicros() - start) / signatures;

  // OWASP parameters, as the server's defaults (README: m=19456, t=2, p=1).
  const params = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;
  await argon2.hash('warm-up password', params);
  start = cpuMicros();
  const hashes = 10;
  for (let i = 0; i < hashes; i++) await argon2.hash(`bench password ${i}`, params);
  const argon2HashMicros = (cpuMicros() - start) / hashes;
  return { signingAlgorithm, signatureMicros, argon2HashMicros };
}
