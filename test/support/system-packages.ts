// The programs the tests drive that npm cannot provide: Debian's chromium (the browser test
// of the sign-in pages, through playwright-core), xmlsec1 (one of the two independent
// signers of SAML test assertions), Apache httpd with the two stock OAuth modules that
// stand in front of keymanager as gateways (test/gateway), and the commands the README's
// walk-throughs use, which test/docs runs as written (curl, jq, openssl, psql). `npm test` obtains them itself, so
// that the README's two commands are all a fresh machine needs: installed with apt-get when
// missing and running as root, otherwise the run stops with one line naming what is missing.
// No test is skipped.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';

/** A package is present when its command is on PATH, or when its file exists (for what lives outside PATH). */
type SystemPackage = { debianPackage: string } & ({ command: string } | { file: string });

/** Debian's httpd binary: in /usr/sbin, which is not on every user's PATH. */
export const APACHE_BINARY = '/usr/sbin/apache2';
/** Where Debian's apache2-bin and the libapache2-mod-* packages put their modules. */
export const APACHE_MODULES_DIR = '/usr/lib/apache2/modules';

export const SYSTEM_PACKAGES: SystemPackage[] = [
  { command: 'chromium', debianPackage: 'chromium' },
  { command: 'xmlsec1', debianPackage: 'xmlsec1' },
  { file: APACHE_BINARY, debianPackage: 'apache2' },
  { file: `${APACHE_MODULES_DIR}/mod_auth_openidc.so`, debianPackage: 'libapache2-mod-auth-openidc' },
  { file: `${APACHE_MODULES_DIR}/mod_oauth2.so`, debianPackage: 'libapache2-mod-oauth2' },
  { command: 'curl', debianPackage: 'curl' },
  { command: 'jq', debianPackage: 'jq' },
  { command: 'openssl', debianPackage: 'openssl' },
  { command: 'psql', debianPackage: 'postgresql-client' },
];

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function isPresent(p: SystemPackage): boolean {
  return 'command' in p ? onPath(p.command) : existsSync(p.file);
}

/** Installs what is missing, or returns the one line to print when that is not possible. */
export function ensureSystemPackages(): string | undefined {
  const missing = SYSTEM_PACKAGES.filter((p) => !isPresent(p)).map((p) => p.debianPackage);
  if (missing.length === 0) return undefined;
  const manual = `npm test needs ${missing.join(' and ')}: install with 'apt-get install -y ${missing.join(' ')}' (as root), then run npm test again`;
  if (process.getuid?.() !== 0 || !onPath('apt-get')) return manual;
  process.stderr.write(`npm test: installing Debian packages ${missing.join(', ')}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // Another apt run may hold the lock (a second test run starting at the same time): wait.
  const lock = ['-o', 'DPkg::Lock::Timeout=300'];
  // Installing apache2 would start it as a system service on port 80: the tests run their own
  // httpd. Debian's invoke-rc.d asks /usr/sbin/policy-rc.d first; exit 101 means "do not
  // start". Put one in place for the install if the machine has none (containers usually do).
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy) writeFileSync(policy, '#!/bin/sh\n# npm test: no services started while it installs packages\nexit 101\n', { mode: 0o755 });
  try {
    execFileSync('apt-get', [...lock, 'update', '-qq'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync('apt-get', [...lock, 'install', '-y', '-qq', ...missing], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  } catch {
    return `${manual} (apt-get install failed; see above)`;
  } finally {
    if (ownPolicy) rmSync(policy, { force: true });
  }
  const still = SYSTEM_PACKAGES.filter((p) => !isPresent(p)).map((p) => p.debianPackage);
  return still.length ? `npm test: ${still.join(' and ')} still missing after apt-get install` : undefined;
}
