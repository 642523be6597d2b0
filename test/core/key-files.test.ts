// keys/README.md's modes, as the server makes them on a first start: every file holding a
// secret 0600, the public TLS certificate 0644, the directories it creates 0700, and a keys
// directory that already exists left as it was.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, tempDir, type TestServer } from '../support/server.ts';

const modeOf = (path: string) => (statSync(path).mode & 0o777).toString(8);

describe('key files and directories have the modes keys/README.md states', () => {
  let database: TestDatabase;
  const servers: TestServer[] = [];

  before(async () => {
    // The usual umask, so that "0755 as git made it" below means what the README says.
    process.umask(0o022);
    database = await createTestDatabase();
  });
  after(async () => {
    for (const s of servers) await s.stop();
    await database?.drop();
  });

  async function firstStart(keysDir: string): Promise<void> {
    const port = await freePort();
    servers.push(await startTestServer(database.url, { keysDir, tls: true, port, issuer: `https://localhost:${port}` }));
  }

  it('a keys directory the server creates: 0700, files with secrets 0600, the certificate 0644', async () => {
    const keysDir = join(tempDir('km-modes-'), 'keys');
    await firstStart(keysDir);
    assert.deepEqual(readdirSync(keysDir).sort(), ['cookie-keys.json', 'management-token-key.json', 'signing-keys.json', 'tls']);
    assert.equal(modeOf(keysDir), '700');
    assert.equal(modeOf(join(keysDir, 'tls')), '700');
    for (const file of ['signing-keys.json', 'cookie-keys.json', 'management-token-key.json', 'tls/server.key']) {
      assert.equal(modeOf(join(keysDir, file)), '600', file);
    }
    assert.equal(modeOf(join(keysDir, 'tls/server.crt')), '644');
  });

  it('an existing keys directory keeps its mode; what the server creates in it is as above', async () => {
    const keysDir = join(tempDir('km-modes-'), 'keys');
    mkdirSync(keysDir, { mode: 0o755 });
    await firstStart(keysDir);
    assert.equal(modeOf(keysDir), '755');
    assert.equal(modeOf(join(keysDir, 'tls')), '700');
    assert.equal(modeOf(join(keysDir, 'signing-keys.json')), '600');
  });
});
