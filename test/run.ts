// npm test: provides a PostgreSQL (TEST_DATABASE_URL, or an embedded one of this run's own),
// obtains the system packages the tests drive (support/system-packages.ts),
// then runs every test/**/*.test.ts with node:test. Each test file makes its own database.
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureEmbeddedPostgres, type EmbeddedPostgresHandle } from '../src/db/embedded.ts';
import { freePort } from './support/server.ts';
import { ensureSystemPackages } from './support/system-packages.ts';

const missing = ensureSystemPackages();
if (missing) {
  process.stderr.write(`${missing}\n`);
  process.exit(1);
}

let embedded: EmbeddedPostgresHandle | undefined;
let dataDir: string | undefined;
let url = process.env.TEST_DATABASE_URL;
if (!url) {
  // A cluster per run, on a free port: runs started side by side never stop each other's.
  mkdirSync('.data-test', { recursive: true });
  dataDir = mkdtempSync(join('.data-test', 'run-'));
  embedded = await ensureEmbeddedPostgres({ dataDir, port: await freePort() });
  url = embedded.adminUrl; // test files create and drop databases of their own
}

// The run's temporary files (keys, data and config directories of the servers the tests start,
// and of the processes they spawn) go under one directory of its own, removed at the end: a
// test that does not clean up after itself leaves nothing behind in the machine's /tmp.
const runTmp = mkdtempSync(join(tmpdir(), 'km-test-run-'));
// Others may pass through it but not list it, as through /tmp: the Apache of the gateway tests
// runs as www-data and reads the document root a test makes inside.
chmodSync(runTmp, 0o711);

const files = process.argv.slice(2);
const child = spawn(process.execPath, [
  '--test',
  '--test-concurrency=2',
  '--test-timeout=120000',
  ...(files.length ? files : ['test/**/*.test.ts']),
], { stdio: 'inherit', env: { ...process.env, TEST_DATABASE_URL: url, TMPDIR: runTmp } });

const code = await new Promise<number>((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await embedded?.stop();
if (dataDir) rmSync(dataDir, { recursive: true, force: true });
rmSync(runTmp, { recursive: true, force: true });
process.exit(code);
