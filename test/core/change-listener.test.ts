// The change listener's own connection (src/db/notifications.ts) under concurrent use: syncs of
// many revocations at once, its pings and its acknowledgements share one connection, and each
// statement waits for the one before — pg's own queueing of overlapping statements is
// deprecated (pg 9 refuses them), and says so in the server's log.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { listenForChanges, type ChangeListener } from '../../src/db/notifications.ts';

const until = async (condition: () => boolean, what: string, ms = 10_000) => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('change listener connection', () => {
  let database: TestDatabase;
  const listeners: ChangeListener[] = [];
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);

  before(async () => {
    database = await createTestDatabase();
    process.on('warning', onWarning);
  });
  after(async () => {
    process.off('warning', onWarning);
    for (const l of listeners) await l.close();
    await database?.drop();
  });

  it('fifty syncs at once on two instances all confirm, across pings, with no overlapping statements', async () => {
    const logged: string[] = [];
    for (let i = 0; i < 2; i++) listeners.push(listenForChanges(database.url, (m) => logged.push(m)));
    await until(() => listeners.every((l) => l.listening), 'both listeners');
    // Two rounds a ping interval (500 ms) apart, so that pings fall among the syncs.
    for (let round = 0; round < 2; round++) {
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => listeners[i % 2]!.sync()));
      assert.deepEqual(results, Array(50).fill(true));
      await new Promise((r) => setTimeout(r, 600));
    }
    assert.deepEqual(warnings.map((w) => w.message), []);
    assert.deepEqual(logged, []);
    assert.ok(listeners.every((l) => l.listening));
  });
});
