// The public listener's TLS material. In development a self-signed certificate for localhost
// is generated on first start; in production the operator supplies both files.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface TlsMaterial {
  cert: string;
  key: string;
  generated: boolean;
}

export async function loadOrCreateTlsMaterial(certFile: string, keyFile: string, allowGenerate: boolean): Promise<TlsMaterial> {
  if (existsSync(certFile) && existsSync(keyFile)) {
    return { cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8'), generated: false };
  }
  if (!allowGenerate) {
    throw new Error(`TLS certificate ${certFile} or key ${keyFile} is missing (production does not generate one; set KM_TLS_CERT and KM_TLS_KEY)`);
  }
  const notAfter = new Date(Date.now() + 365 * 86400 * 1000);
  // Loaded only here: the generator and its ASN.1 libraries cost a running server ~10 MB.
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] },
    ],
  });
  mkdirSync(dirname(certFile), { recursive: true, mode: 0o700 });
  mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
  writeFileSync(keyFile, pems.private, { mode: 0o600 });
  writeFileSync(certFile, pems.cert, { mode: 0o644 });
  return { cert: pems.cert, key: pems.private, generated: true };
}
