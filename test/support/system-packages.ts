// The programs the tests drive that npm cannot provide: Debian's chromium (the browser test
// of the sign-in pages, through playwright-core) and xmlsec1 (one of the two independent
// signers of SAML test assertions). `npm test` obtains them itself, so that the README's two
// commands are all a fresh machine needs: installed with apt-get when missing and running as
// root, otherwise the run stops with one line naming what is missing. No test is skipped.
import { execFileSync, spawnSync } from 'node:child_process';

interface SystemPackage {
  command: string;
  debianPackage: string;
}

export const SYSTEM_PACKAGES: SystemPackage[] = [
  { command: 'chromium', debianPackage: 'chromium' },
  { command: 'xmlsec1', debianPackage: 'xmlsec1' },
];

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** Installs what is missing, or returns the one line to print when that is not possible. */
export function ensureSystemPackages(): string | undefined {
  const missing = SYSTEM_PACKAGES.filter((p) => !onPath(p.command)).map((p) => p.debianPackage);
  if (missing.length === 0) return undefined;
  const manual = `npm test needs ${missing.join(' and ')}: install with 'apt-get install -y ${missing.join(' ')}' (as root), then run npm test again`;
  if (process.getuid?.() !== 0 || !onPath('apt-get')) return manual;
  process.stderr.write(`npm test: installing Debian packages ${missing.join(', ')}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // Another apt run may hold the lock (a second test run starting at the same time): wait.
  const lock = ['-o', 'DPkg::Lock::Timeout=300'];
  try {
    execFileSync('apt-get', [...lock, 'update', '-qq'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync('apt-get', [...lock, 'install', '-y', '-qq', ...missing], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  } catch {
    return `${manual} (apt-get install failed; see above)`;
  }
  const still = SYSTEM_PACKAGES.filter((p) => !onPath(p.command)).map((p) => p.debianPackage);
  return still.length ? `npm test: ${still.join(' and ')} still missing after apt-get install` : undefined;
}
