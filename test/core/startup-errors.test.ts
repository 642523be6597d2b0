// Start-up and runtime failures say what to do, in one line (README "Start-up failures"):
// a port taken, the database unreachable, the issuer following the port, the embedded
// PostgreSQL dying under a running server, and keymgr naming the option it did not know.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, tempDir } from '../support/server.ts';
import { REPO_ROOT, runKeymgr } from '../support/cli.ts';
import { getJson, postForm } from '../support/http.ts';
import { makeClient } from '../support/fixtures.ts';
import { createDatabase } from '../../src/db/database.ts';

const STACK_FRAME = /\bat .+:\d+:\d+/;

/** The environment of a server started in a scratch directory: none of the caller's KM_* or DATABASE_URL. */
function serverEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(KM_|DATABASE_URL$)/.test(k)) env[k] = v;
  return {
    ...env, KM_CONFIG: '/dev/null', KM_TLS: 'off', KM_HOST: '127.0.0.1', KM_MANAGEMENT_HOST: '127.0.0.1',
    KM_KEYS_DIR: tempDir('km-keys-'), KM_DATA_DIR: tempDir('km-data-'), KM_LOG_LEVEL: 'info', ...extra,
  };
}

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the server until it exits; it must, within 60 s. */
async function runServerToExit(env: Record<string, string>): Promise<Exit> {
  const child = spawn(process.execPath, ['src/main.ts'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8'); });
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

function assertOneLine(exit: Exit, line: string): void {
  assert.equal(exit.stderr, `${line}\n`, `stdout: ${exit.stdout.slice(-2000)}`);
  assert.doesNotMatch(exit.stderr, STACK_FRAME);
  assert.equal(exit.code, 2);
  // The JSON log keeps the detail for operators.
  assert.match(exit.stdout, /"msg":"keymanager did not start"/);
}

function occupy(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    // Accepts connections and never answers, as a foreign service would.
    const server = createServer(() => {});
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** A port nothing listens on: connections to it are refused. */
const closedPort = freePort;

describe('a port that is taken', () => {
  let taken: Server;
  let port: number;
  const unreachable = async () => `postgres://km:secret@127.0.0.1:${await closedPort()}/km`;

  before(async () => {
    port = await freePort();
    taken = await occupy(port);
  });
  after(() => taken?.close());

  it('the public port: one line naming KM_PORT, exit code 2', async () => {
    const exit = await runServerToExit(serverEnv({ KM_PORT: String(port), KM_MANAGEMENT_PORT: String(await freePort()), DATABASE_URL: await unreachable() }));
    assertOneLine(exit, `keymanager: port ${port} (KM_PORT) is already in use — is another keymanager running here? Set KM_PORT to another port.`);
  });

  it('the management port: one line naming KM_MANAGEMENT_PORT', async () => {
    const exit = await runServerToExit(serverEnv({ KM_PORT: String(await freePort()), KM_MANAGEMENT_PORT: String(port), DATABASE_URL: await unreachable() }));
    assertOneLine(exit, `keymanager: port ${port} (KM_MANAGEMENT_PORT) is already in use — is another keymanager running here? Set KM_MANAGEMENT_PORT to another port.`);
  });

  it('with several workers: the same one line, once, and no worker started again and again', async () => {
    const exit = await runServerToExit(serverEnv({
      KM_WORKERS: '2', KM_PORT: String(port), KM_MANAGEMENT_PORT: String(await freePort()), DATABASE_URL: await unreachable(),
    }));
    assertOneLine(exit, `keymanager: port ${port} (KM_PORT) is already in use — is another keymanager running here? Set KM_PORT to another port.`);
    assert.doesNotMatch(exit.stdout, /worker died/);
  });

  it('the embedded PostgreSQL port: one line naming KM_EMBEDDED_POSTGRES_PORT', async () => {
    const exit = await runServerToExit(serverEnv({ KM_PORT: String(await freePort()), KM_MANAGEMENT_PORT: String(await freePort()), KM_EMBEDDED_POSTGRES_PORT: String(port) }));
    assertOneLine(exit, `keymanager: port ${port} (KM_EMBEDDED_POSTGRES_PORT) is already in use — is another keymanager running here? Set KM_EMBEDDED_POSTGRES_PORT to another port.`);
  });
});

describe('DATABASE_URL that cannot be used', () => {
  const listeners = async () => ({ KM_PORT: String(await freePort()), KM_MANAGEMENT_PORT: String(await freePort()) });

  it('refused: names DATABASE_URL without its password, and the cause', async () => {
    const db = await closedPort();
    const exit = await runServerToExit(serverEnv({ ...await listeners(), DATABASE_URL: `postgres://km:s3cret@127.0.0.1:${db}/km?sslmode=disable` }));
    assertOneLine(exit, `keymanager: cannot reach the database at DATABASE_URL postgres://km@127.0.0.1:${db}/km: connection refused (ECONNREFUSED)`);
    assert.doesNotMatch(exit.stdout + exit.stderr, /s3cret/);
  });

  it('a host that does not exist', async () => {
    const exit = await runServerToExit(serverEnv({ ...await listeners(), DATABASE_URL: 'postgres://km:s3cret@db.invalid:5432/km' }));
    assertOneLine(exit, 'keymanager: cannot reach the database at DATABASE_URL postgres://km@db.invalid:5432/km: host not found (ENOTFOUND)');
  });

  it('a wrong password: PostgreSQL\'s answer, with its SQLSTATE', async () => {
    const url = new URL(process.env.TEST_DATABASE_URL!);
    url.password = 'not-the-password';
    const shown = new URL(url.href);
    shown.password = '';
    const exit = await runServerToExit(serverEnv({ ...await listeners(), DATABASE_URL: url.href }));
    assertOneLine(exit, `keymanager: the database at DATABASE_URL ${shown.href} refused the connection: password authentication failed for user "${url.username}" (28P01)`);
  });

  it('with several workers: the supervisor says it once', async () => {
    const db = await closedPort();
    const exit = await runServerToExit(serverEnv({ ...await listeners(), KM_WORKERS: '2', DATABASE_URL: `postgres://km:s3cret@127.0.0.1:${db}/km` }));
    assertOneLine(exit, `keymanager: cannot reach the database at DATABASE_URL postgres://km@127.0.0.1:${db}/km: connection refused (ECONNREFUSED)`);
  });

  it('keymgr says the same, as keymgr', async () => {
    const db = await closedPort();
    const r = await runKeymgr(['client', 'list'], { DATABASE_URL: `postgres://km:s3cret@127.0.0.1:${db}/km` });
    assert.equal(r.stderr, `keymgr: cannot reach the database at DATABASE_URL postgres://km@127.0.0.1:${db}/km: connection refused (ECONNREFUSED)\n`);
    assert.equal(r.code, 2);
  });
});

describe('the issuer follows KM_PORT when KM_ISSUER is not set', () => {
  let database: TestDatabase;
  before(async () => { database = await createTestDatabase(); });
  after(async () => { await database?.drop(); });

  it('the metadata names the port the server listens on', async () => {
    const server = await startTestServer(database.url, { issuer: undefined });
    try {
      const port = new URL(server.url).port;
      const metadata = await getJson(`${server.url}/.well-known/openid-configuration`);
      assert.equal(metadata.json.issuer, `http://127.0.0.1:${port}`);
      assert.equal(metadata.json.token_endpoint, `http://127.0.0.1:${port}/token`);
    } finally {
      await server.stop();
    }
  });

  it('in production it warns, once, that the metadata names this machine', async () => {
    const db = await closedPort();
    const exit = await runServerToExit(serverEnv({
      KM_ENV: 'production', KM_TLS: 'on', KM_PORT: String(await freePort()), KM_MANAGEMENT_PORT: String(await freePort()),
      DATABASE_URL: `postgres://km@127.0.0.1:${db}/km`,
    }));
    assert.equal(exit.stdout.match(/KM_ISSUER is not set/g)?.length, 1, exit.stdout);
  });
});

describe('the embedded PostgreSQL killed under a running server', () => {
  let server: ChildProcess;
  let dataDir: string;
  let managementUrl: string;
  let publicUrl: string;
  let log = '';

  before(async () => {
    dataDir = tempDir('km-data-');
    const [port, managementPort, postgresPort] = [await freePort(), await freePort(), await freePort()];
    publicUrl = `http://127.0.0.1:${port}`;
    managementUrl = `http://127.0.0.1:${managementPort}`;
    server = spawn(process.execPath, ['src/main.ts'], {
      cwd: REPO_ROOT,
      env: serverEnv({ KM_PORT: String(port), KM_MANAGEMENT_PORT: String(managementPort), KM_EMBEDDED_POSTGRES_PORT: String(postgresPort), KM_DATA_DIR: dataDir }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout!.on('data', (c: Buffer) => { log += c.toString('utf8'); });
    server.stderr!.on('data', (c: Buffer) => { log += c.toString('utf8'); });
    await until('the server ready', async () => (await readyz()) === 200);
  });
  after(() => {
    if (server?.exitCode === null) server.kill('SIGKILL');
    else if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const readyz = () => fetch(`${managementUrl}/readyz`).then((r) => r.status, () => 0);

  it('is started again: /readyz answers 503 meanwhile, then 200, and tokens are issued again', async () => {
    const credentials = JSON.parse(readFileSync(join(dataDir, 'embedded-postgres.json'), 'utf8')) as { user: string; password: string; database: string };
    const postgresPort = Number(readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[3]);
    const db = createDatabase({
      url: `postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${postgresPort}/${credentials.database}`,
      poolSize: 1, applicationName: 'keymanager-test',
    });
    const client = await makeClient(db, { scope: ['read'] });
    await db.destroy();
    const token = () => postForm(`${publicUrl}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: client.basic });
    assert.equal((await token()).status, 200);

    const postmaster = Number(readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(postmaster, 'SIGKILL');
    const statuses: number[] = [];
    await until('/readyz answering 200 again', async () => {
      statuses.push(await readyz());
      return statuses.at(-1) === 200 && statuses.includes(503);
    });
    await until('a token issued again', async () => (await token().catch(() => undefined))?.status === 200);
    assert.match(log, /the embedded PostgreSQL stopped under the running server; starting it again/);
    // Logged once the restart returns, which may be a moment after the database answers again.
    await until('the restart logged', () => /the embedded PostgreSQL is running again/.test(log));
    const now = Number(readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]);
    assert.notEqual(now, postmaster);
  });

  it('still stops cleanly, cluster included', async () => {
    const exited = new Promise<number | null>((resolve) => server.once('exit', (c) => resolve(c)));
    server.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.equal(existsSync(join(dataDir, 'postgres', 'postmaster.pid')), false, 'the cluster is still running');
  });
});

describe('keymgr names what it did not understand', () => {
  let database: TestDatabase;
  before(async () => { database = await createTestDatabase(); });
  after(async () => { await database?.drop(); });

  it('a mistyped option, even where a required one is then missing', async () => {
    const r = await runKeymgr(['client', 'create', '--nme', 'shop'], { DATABASE_URL: database.url });
    assert.equal(r.code, 1);
    assert.equal(r.stderr.split('\n')[0], "error: unknown option '--nme'");
    assert.equal(r.stderr.split('\n')[1], '(Did you mean --name?)');
    const json = await runKeymgr(['client', 'create', '--nme', 'shop', '--json'], { DATABASE_URL: database.url });
    assert.deepEqual(JSON.parse(json.stderr), { error: "unknown option '--nme'\n(Did you mean --name?)" });
  });

  it('a required option that is missing is still named', async () => {
    const r = await runKeymgr(['client', 'create', '--json'], { DATABASE_URL: database.url });
    assert.equal(r.code, 1);
    assert.deepEqual(JSON.parse(r.stderr), { error: "required option '--name <name>' not specified" });
  });

  it('tls_client_auth without, or with both, certificate flags names the flags', async () => {
    const message = 'keymgr: --auth-method tls_client_auth needs exactly one of --tls-subject-dn <dn> or --tls-san-dns <name>: what the client certificate must carry (RFC 8705 §2.1.2)\n';
    const none = await runKeymgr(['client', 'create', '--name', 'gw', '--auth-method', 'tls_client_auth'], { DATABASE_URL: database.url });
    assert.equal(none.stderr, message);
    assert.equal(none.code, 1);
    const both = await runKeymgr(['client', 'create', '--name', 'gw', '--auth-method', 'tls_client_auth', '--tls-subject-dn', 'CN=gw', '--tls-san-dns', 'gw.example'], { DATABASE_URL: database.url });
    assert.equal(both.stderr, message);
    const stray = await runKeymgr(['client', 'create', '--name', 'gw', '--tls-san-dns', 'gw.example'], { DATABASE_URL: database.url });
    assert.equal(stray.stderr, 'keymgr: --tls-subject-dn and --tls-san-dns go with --auth-method tls_client_auth only\n');
  });
});

async function until(what: string, condition: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
