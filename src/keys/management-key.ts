// The key that signs management tokens (GET /management/login): its own RSA key, never one of
// the OAuth signing keys, so that neither kind of token can pass for the other. A private
// JWK in keys/management-token-key.json, created on first start; instances sharing keys/
// share it, and of two instances starting together one key wins.
import { randomUUID } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KeyFileError, readKeyFile } from './key-file.ts';
import { exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';

export const MANAGEMENT_TOKEN_ALG = 'RS256';

export interface ManagementKey {
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** Bits of the modulus as stored (it may differ from the configured size: keys are not regenerated). */
  bits: number;
}

export function managementKeyPath(keysDir: string): string {
  return join(keysDir, 'management-token-key.json');
}

export async function loadOrCreateManagementKey(keysDir: string, bits: number): Promise<{ key: ManagementKey; created: boolean }> {
  const path = managementKeyPath(keysDir);
  let created = false;
  if (!existsSync(path)) {
    const { privateKey } = await generateKeyPair(MANAGEMENT_TOKEN_ALG, { modulusLength: bits, extractable: true });
    const jwk = { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: MANAGEMENT_TOKEN_ALG, use: 'sig' };
    mkdirSync(keysDir, { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(jwk, null, 2), { mode: 0o600 });
    try {
      linkSync(tmp, path); // fails if another instance got there first: theirs is kept
      created = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    } finally {
      unlinkSync(tmp);
    }
  }
  const jwk = readKeyFile(path) as JWK & { kid: string };
  const unusable = () => new KeyFileError(`${path}: expected a private RSA JWK with a kid (delete the file to have a new key made; management tokens signed with the old one stop working)`);
  if (typeof jwk !== 'object' || jwk === null || typeof jwk.kid !== 'string' || !jwk.kid) throw unusable();
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = jwk;
  // jose's own message is not needed: the file is the operator's to fix or remove.
  const [privateKey, publicKey] = await Promise.all([importJWK(jwk, MANAGEMENT_TOKEN_ALG), importJWK(publicJwk, MANAGEMENT_TOKEN_ALG)]).catch(() => { throw unusable(); });
  if ((privateKey as CryptoKey).type !== 'private') throw unusable();
  return {
    created,
    key: {
      kid: jwk.kid,
      privateKey: privateKey as CryptoKey,
      publicKey: publicKey as CryptoKey,
      bits: Buffer.from(jwk.n ?? '', 'base64url').length * 8,
    },
  };
}
