// workers (KM_WORKERS): several processes serve the same ports; each issues and introspects
// tokens the others see; each holds at most max_connections and closes the rest at once; a
// worker that dies is replaced; SIGTERM stops them all, then the supervisor, which says "stopped".
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, tempDir } from '../support/server.ts';
import { REPO_ROOT } from '../support/cli.ts';
import { postForm } from '../support/http.ts';
import { makeClient, type TestClient } from '../support/fixtures.ts';
import { scrapeMetrics, valueOf } from '../support/prometheus.ts';
import { connect, type Socket } from 'node:net';

/** Each worker's max_connections here. */
const MAX_CONNECTIONS = 16;

const childrenOf = (pid: number): number[] => {
  try {
    return execFileSync('ps', ['--ppid', String(pid), '-o', 'pid='], { encoding: 'utf8' }).split('\n').map((l) => Number(l.trim())).filter(Boolean);
  } catch {
    return [];
  }
};

const until = async (what: string, condition: () => boolean | Promise<boolean>) => {
  const deadline = Date.now() + 30_000;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

describe('several worker processes (KM_WORKERS=2)', () => {
  let database: TestDatabase;
  let primary: ChildProcess;
  let url: string;
  let managementUrl: string;
  let client: TestClient;
  let output = '';
  let exitCode: number | null | undefined;

  before(async () => {
    database = await createTestDatabase();
    client = await makeClient(database.db, { scope: ['read'] });
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const managementPort = await freePort();
    managementUrl = `http://127.0.0.1:${managementPort}`;
    primary = spawn(process.execPath, ['src/main.ts'], {
      cwd: REPO_ROOT,
      env: {
        ...process.env, DATABASE_URL: database.url, KM_WORKERS: '2', KM_TLS: 'off', KM_HOST: '127.0.0.1', KM_PORT: String(port),
        KM_ISSUER: url, KM_MANAGEMENT_PORT: String(managementPort), KM_MAX_CONNECTIONS: String(MAX_CONNECTIONS), KM_KEYS_DIR: tempDir('km-keys-'), KM_DATA_DIR: tempDir('km-data-'), KM_LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    primary.stdout!.on('data', (c: Buffer) => { output += c.toString(); });
    primary.stderr!.on('data', (c: Buffer) => { output += c.toString(); });
    primary.once('exit', (code) => { exitCode = code; });
    await until('both workers listening', async () => childrenOf(primary.pid!).length === 2
      && (await fetch(`${url}/healthz`).then((r) => r.status, () => 0)) === 200);
  });
  after(async () => {
    if (exitCode === undefined) primary?.kill('SIGKILL');
    await database?.drop();
  });

  const issue = () => postForm(`${url}/token`, { grant_type: 'client_credentials', scope: 'read' }, { basic: client.basic });

  it('serves from both: every token issued is active wherever it is introspected', async () => {
    const tokens: string[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await issue();
      assert.equal(r.status, 200, r.text);
      tokens.push(r.json.access_token);
    }
    for (const token of tokens) assert.equal((await postForm(`${url}/introspect`, { token }, { basic: client.basic })).json.active, true);
  });

  it('each worker holds at most max_connections; a further connection is closed at once and counted, not queued', async () => {
    const dropped = async () => valueOf(await scrapeMetrics(managementUrl), 'km_connections_dropped_total', { listener: 'public' });
    const before = await dropped();
    // Connections that send nothing (request_timeout is 30 s): more than both workers may hold.
    const sockets: { socket: Socket; closed: boolean }[] = [];
    for (let i = 0; i < 3 * MAX_CONNECTIONS; i++) {
      const socket = connect(Number(new URL(url).port), '127.0.0.1');
      const entry = { socket, closed: false };
      socket.on('error', () => {});
      socket.on('close', () => { entry.closed = true; });
      sockets.push(entry);
    }
    try {
      // Node's supervisor hands connections round and round; at most 2 × 16 are kept.
      await until('the connections over the limit to be closed', () => sockets.filter((s) => s.closed).length >= sockets.length - 2 * MAX_CONNECTIONS);
      await until('the drops to be counted', async () => (await dropped()) - before === sockets.filter((s) => s.closed).length);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal((await dropped()) - before, sockets.filter((s) => s.closed).length);
    } finally {
      for (const s of sockets) s.socket.destroy();
    }
    // Room again once they are gone.
    await until('the service answering', async () => (await issue().catch(() => undefined))?.status === 200);
  });

  it('a worker that dies is replaced, and requests go on being served', async () => {
    const [victim] = childrenOf(primary.pid!);
    process.kill(victim!, 'SIGKILL');
    await until('a replacement worker', () => {
      const now = childrenOf(primary.pid!);
      return now.length === 2 && !now.includes(victim!);
    });
    // A connection to the killed worker may fail outright: that is not an answer yet.
    await until('the service answering', async () => (await issue().catch(() => undefined))?.status === 200);
  });

  it('SIGTERM stops every worker, then the supervisor, which says "stopped"', async () => {
    const workers = childrenOf(primary.pid!);
    primary.kill('SIGTERM');
    await until('the supervisor to exit', () => exitCode !== undefined);
    assert.equal(exitCode, 0, output.slice(-2000));
    for (const pid of workers) {
      let alive = true;
      try {
        process.kill(pid, 0);
      } catch {
        alive = false;
      }
      assert.equal(alive, false, `worker ${pid} still running`);
    }
    assert.match(output.trim().split('\n').at(-1) ?? '', /"msg":"stopped"/);
  });
});
