// Node's compile cache (README "Start-up and the compile cache"): `npm start` keeps it in the
// project's node_modules/.cache/node-compile-cache (an absolute path: keymgr and the tests'
// servers run from other directories and must not make a node_modules there), and a started server has written what it loaded
// (the TypeScript already stripped) before it is ever stopped, so that a server that is killed
// still leaves the next start a warm cache.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, tempDir } from '../support/server.ts';
import { REPO_ROOT } from '../support/cli.ts';
import { until } from '../support/token-load.ts';

const healthy = (url: string) => fetch(`${url}/healthz`).then((r) => r.status === 200, () => false);

/** Every file under dir, at any depth (the cache keeps one directory per Node version). */
const filesUnder = (dir: string): string[] => readdirSync(dir, { recursive: true, encoding: 'utf8' })
  .map((name) => join(dir, name)).filter((path) => statSync(path).isFile());

const exited = (child: ChildProcess) => new Promise<void>((resolve) => {
  if (child.exitCode !== null || child.signalCode !== null) resolve();
  else child.once('exit', () => resolve());
});

describe('the compile cache', () => {
  let database: TestDatabase;
  const children: ChildProcess[] = [];

  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all(children.map(exited));
    await database?.drop();
  });

  const serverEnv = async (extra: Record<string, string>) => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.NODE_COMPILE_CACHE;
    return {
      url,
      env: {
        ...env, DATABASE_URL: database.url, KM_TLS: 'off', KM_HOST: '127.0.0.1', KM_PORT: String(port), KM_ISSUER: url,
        KM_MANAGEMENT_PORT: String(await freePort()), KM_KEYS_DIR: tempDir('km-keys-'), KM_DATA_DIR: tempDir('km-data-'), KM_LOG_LEVEL: 'warn',
        ...extra,
      },
    };
  };

  it('npm start runs the server with NODE_COMPILE_CACHE=<the project>/node_modules/.cache/node-compile-cache', async () => {
    const { url, env } = await serverEnv({});
    const npm = spawn('npm', ['start'], { cwd: REPO_ROOT, env, stdio: 'ignore' });
    children.push(npm);
    await until('the server to answer', () => healthy(url));
    // npm's shell execs node: the server is npm's only child.
    const [serverPid, ...others] = execFileSync('ps', ['--ppid', String(npm.pid), '-o', 'pid='], { encoding: 'utf8' }).trim().split(/\s+/);
    assert.deepEqual(others, []);
    const environment = readFileSync(`/proc/${serverPid}/environ`, 'utf8').split('\0');
    assert.equal(readFileSync(`/proc/${serverPid}/cmdline`, 'utf8').split('\0').slice(-2, -1)[0], 'src/main.ts');
    assert.deepEqual(environment.filter((v) => v.startsWith('NODE_COMPILE_CACHE=')), [`NODE_COMPILE_CACHE=${join(REPO_ROOT, 'node_modules/.cache/node-compile-cache')}`]);
    process.kill(Number(serverPid), 'SIGTERM');
    await exited(npm);
  });

  it('a started server has written the cache of src/main.ts, stripped of its types, while it still runs', async () => {
    const cacheDir = tempDir('km-compile-cache-');
    const { url, env } = await serverEnv({ NODE_COMPILE_CACHE: cacheDir });
    const server = spawn(process.execPath, ['src/main.ts'], { cwd: REPO_ROOT, env, stdio: 'ignore' });
    children.push(server);
    await until('the server to answer', () => healthy(url));
    // Type stripping keeps comments, so main.ts's first line is in its cache entry as written.
    const firstLine = readFileSync(join(REPO_ROOT, 'src/main.ts'), 'utf8').split('\n')[0]!;
    assert.match(firstLine, /^\/\/ Composition root/);
    const entries = filesUnder(cacheDir).filter((path) => readFileSync(path).includes(firstLine));
    assert.equal(entries.length, 1);
    assert.equal(server.exitCode, null);
    server.kill('SIGTERM');
    await exited(server);
  });
});
