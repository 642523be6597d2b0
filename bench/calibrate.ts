// What the targets are measured against, on this machine in this run: the CPU time of
// one RS256 signature (b ≤ a + one signature) and of one argon2id hash with the server's
// parameters (d's limit: 1 / one hash's CPU time, logins per core-second).
import argon2 from 'argon2';
import { generateKeyPair, SignJWT } from 'jose';

export interface Calibration {
  signatureMicros: number;
  argon2HashMicros: number;
}

const cpuMicros = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

export async function calibrate(): Promise<Calibration> {
  const { privateKey } = await generateKeyPair('RS256');
  const jwt = () => new SignJWT({ scope: 'read write' }).setProtectedHeader({ alg: 'RS256' }).setIssuedAt().setExpirationTime('1h').sign(privateKey);
  for (let i = 0; i < 20; i++) await jwt();
  let start = cpuMicros();
  const signatures = 300;
  for (let i = 0; i < signatures; i++) await jwt();
  const signatureMicros = (cpuMicros() - start) / signatures;

  // OWASP parameters, as the server's defaults (README: m=19456, t=2, p=1).
  const params = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;
  await argon2.hash('warm-up password', params);
  start = cpuMicros();
  const hashes = 10;
  for (let i = 0; i < hashes; i++) await argon2.hash(`bench password ${i}`, params);
  const argon2HashMicros = (cpuMicros() - start) / hashes;
  return { signatureMicros, argon2HashMicros };
}
