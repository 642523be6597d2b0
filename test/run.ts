// npm test: provides a PostgreSQL (TEST_DATABASE_URL, or an embedded one under .data-test),
// then runs every test/**/*.test.ts with node:test. Each test file makes its own database.
import { spawn } from 'node:child_process';
import { loadConfig } from '../src/config/index.ts';
import { ensureEmbeddedPostgres, type EmbeddedPostgresHandle } from '../src/db/embedded.ts';

let embedded: EmbeddedPostgresHandle | undefined;
let url = process.env.TEST_DATABASE_URL;
if (!url) {
  const config = loadConfig({ env: {}, overrides: { dataDir: process.env.KM_TEST_DATA_DIR ?? '.data-test', embeddedPostgresPort: 54319 } });
  embedded = await ensureEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPostgresPort });
  url = embedded.url;
}

const files = process.argv.slice(2);
const child = spawn(process.execPath, [
  '--test',
  '--test-concurrency=2',
  '--test-timeout=120000',
  ...(files.length ? files : ['test/**/*.test.ts']),
], { stdio: 'inherit', env: { ...process.env, TEST_DATABASE_URL: url } });

const code = await new Promise<number>((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await embedded?.stop();
process.exit(code);
