// keymgr finds the server's database from anywhere in the project (README "CLI reference"):
// run in a subdirectory it uses the project root's keymanager.toml, data directory and keys,
// and it never makes a database of its own — outside a project, or before the server ever
// ran, it refuses and says why.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, tempDir } from '../support/server.ts';
import { REPO_ROOT, type KeymgrResult } from '../support/cli.ts';

const KEYMGR = join(REPO_ROOT, 'src', 'cli', 'keymgr.ts');

/** This process's environment without any keymanager setting: only the directory decides. */
function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(KM_|DATABASE_URL$)/.test(k)) env[k] = v;
  return { ...env, ...extra };
}

async function keymgrIn(cwd: string, args: string[], extra: Record<string, string> = {}): Promise<KeymgrResult> {
  const child = spawn(process.execPath, [KEYMGR, ...args], { cwd, env: cleanEnv(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8'); });
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
  const code = await new Promise<number>((resolve) => child.once('close', (c) => resolve(c ?? 128)));
  let json: unknown;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code, stdout, stderr, json };
}

function ok(r: KeymgrResult): void {
  assert.equal(r.code, 0, `keymgr exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}

const until = async (what: string, condition: () => Promise<boolean>) => {
  const deadline = Date.now() + 60_000;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
};

describe('keymgr in a subdirectory of a project with keymanager.toml and the embedded PostgreSQL', () => {
  let project: string;
  let subdirectory: string;
  let server: ChildProcess;
  let managementUrl: string;

  before(async () => {
    project = tempDir('km-project-');
    subdirectory = join(project, 'deploy', 'scripts');
    mkdirSync(subdirectory, { recursive: true });
    const [port, managementPort, postgresPort] = [await freePort(), await freePort(), await freePort()];
    managementUrl = `http://127.0.0.1:${managementPort}`;
    writeFileSync(join(project, 'keymanager.toml'), [
      'tls = false', 'host = "127.0.0.1"', `port = ${port}`, `management_port = ${managementPort}`,
      `embedded_postgres_port = ${postgresPort}`, 'data_dir = "state"', 'keys_dir = "secrets/keys"', 'log_level = "warn"',
    ].join('\n'));
    server = spawn(process.execPath, [join(REPO_ROOT, 'src', 'main.ts')], { cwd: project, env: cleanEnv(), stdio: 'ignore' });
    await until('the server ready', () => fetch(`${managementUrl}/readyz`).then((r) => r.status === 200, () => false));
  });
  after(() => {
    if (server?.exitCode === null) server.kill('SIGKILL');
    // Should a failed test leave the cluster up, stop it before its directory goes.
    try {
      process.kill(Number(readFileSync(join(project, 'state', 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0]), 'SIGINT');
    } catch {
      // not running
    }
    if (project) rmSync(project, { recursive: true, force: true });
  });

  it('sees the clients made at the root, and the root sees those made there', async () => {
    const atRoot = await keymgrIn(project, ['client', 'create', '--name', 'from-root', '--json']);
    ok(atRoot);
    const below = await keymgrIn(subdirectory, ['client', 'create', '--name', 'from-below', '--json']);
    ok(below);
    for (const cwd of [project, subdirectory]) {
      const list = await keymgrIn(cwd, ['client', 'list', '--json']);
      ok(list);
      assert.deepEqual((list.json as { client_id: string }[]).map((c) => c.client_id).sort(), [atRoot.json.client_id, below.json.client_id].sort(), cwd);
    }
  });

  it('reads the keys directory of the project (keys_dir relative to the root)', async () => {
    const atRoot = await keymgrIn(project, ['keys', 'list', '--json']);
    ok(atRoot);
    assert.ok((atRoot.json as unknown[]).length > 0, 'the server made a signing key under secrets/keys');
    const below = await keymgrIn(subdirectory, ['keys', 'list', '--json']);
    assert.deepEqual(below.json, atRoot.json);
  });

  it('leaves nothing in the subdirectory', () => {
    assert.deepEqual(readdirSync(subdirectory), []);
    assert.ok(existsSync(join(project, 'state', 'postgres', 'PG_VERSION')));
  });

  it('finds the same database with the server stopped', async () => {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    await exited;
    const list = await keymgrIn(subdirectory, ['client', 'list', '--json']);
    ok(list);
    assert.deepEqual((list.json as { name: string }[]).map((c) => c.name).sort(), ['from-below', 'from-root']);
    // It started the cluster for the command and stopped it again.
    assert.equal(existsSync(join(project, 'state', 'postgres', 'postmaster.pid')), false);
  });
});

describe('keymgr never makes a database of its own', () => {
  let database: TestDatabase;
  before(async () => { database = await createTestDatabase(); });
  after(async () => { await database?.drop(); });

  it('outside any project it refuses, saying where it looked, and leaves nothing behind', async () => {
    const nowhere = tempDir('km-nowhere-');
    const r = await keymgrIn(nowhere, ['client', 'list']);
    assert.equal(r.stderr, `keymgr: ${nowhere} is not inside a keymanager project (no keymanager.toml or keymanager package.json here or above); run keymgr in the project directory, or set DATABASE_URL\n`);
    assert.equal(r.code, 2);
    assert.deepEqual(readdirSync(nowhere), []);
  });

  it('outside any project, hashing a password needs no project', async () => {
    const child = spawn(process.execPath, [KEYMGR, 'management', 'hash-password', '--json'], { cwd: tempDir('km-nowhere-'), env: cleanEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.end('correct horse battery staple');
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8'); });
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    assert.equal(code, 0);
    assert.match((JSON.parse(stdout) as { password_hash: string }).password_hash, /^\$argon2id\$/);
  });

  it('outside any project, DATABASE_URL says which database', async () => {
    const r = await keymgrIn(tempDir('km-nowhere-'), ['client', 'list', '--json'], { DATABASE_URL: database.url });
    ok(r);
    assert.deepEqual(r.json, []);
  });

  it('in a project whose server never ran, it refuses instead of creating the embedded cluster', async () => {
    const project = tempDir('km-project-');
    writeFileSync(join(project, 'keymanager.toml'), 'data_dir = "state"\n');
    mkdirSync(join(project, 'sub'));
    const r = await keymgrIn(join(project, 'sub'), ['client', 'list']);
    assert.equal(r.stderr, `keymgr: no database in ${join(project, 'state')} (data_dir): start the server once to create it, or set DATABASE_URL\n`);
    assert.equal(r.code, 2);
    assert.deepEqual(readdirSync(project).sort(), ['keymanager.toml', 'sub']);
  });

  it('in a subdirectory of this repository, relative paths resolve against the repository root', async () => {
    const relative = join('.data-test', `never-${process.pid}`);
    const r = await keymgrIn(join(REPO_ROOT, 'src', 'cli'), ['client', 'list'], { KM_DATA_DIR: relative });
    assert.equal(r.stderr, `keymgr: no database in ${join(REPO_ROOT, relative)} (data_dir): start the server once to create it, or set DATABASE_URL\n`);
    assert.equal(existsSync(join(REPO_ROOT, 'src', 'cli', '.data-test')), false);
  });
});
