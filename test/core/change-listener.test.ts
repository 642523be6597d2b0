// The change listener's own connection (src/db/notifications.ts) under concurrent use: syncs of
// many revocations at once, its pings and its acknowledgements share one connection, and each
// statement waits for the one before — pg's own queueing of overlapping statements is
// deprecated (pg 9 refuses them), and says so in the server's log.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
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

  it('sync() waits for the other instances while its own listener is down', async () => {
    const own = listenForChanges(database.url, () => {});
    listeners.push(own);
    await until(() => own.listening, 'the listener');
    // Another instance's listener, played by a session of the listeners' name that pings like
    // one and acknowledges a sync only when the test says so.
    const other = new pg.Client({ connectionString: database.url, application_name: 'keymanager-listener' });
    await other.connect();
    const syncs: string[] = [];
    other.on('notification', (n) => {
      if (n.payload?.startsWith('sync:')) syncs.push(n.payload.slice('sync:'.length));
    });
    await other.query('LISTEN km_changes');
    const otherPid = (await other.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    let pinging = Promise.resolve();
    const pings = setInterval(() => { pinging = pinging.then(() => other.query('select 1')).then(() => {}); }, 200);
    try {
      // The listeners are cut, this instance's among them (each reconnects half a second later).
      await other.query(`select pg_terminate_backend(pid) from pg_stat_activity
                          where application_name = 'keymanager-listener' and datname = current_database() and pid <> $1`, [otherPid]);
      await until(() => !own.listening, 'the listener to be found cut');
      let settled = false;
      const confirmed = own.sync(5000).finally(() => { settled = true; });
      await until(() => syncs.length === 1 || settled, 'the sync notice to reach the other instance');
      assert.equal(settled, false, 'sync() answered without waiting for the other instance');
      await pinging;
      await other.query('select pg_notify($1, $2)', ['km_acks', `${syncs[0]}:${otherPid}`]);
      assert.equal(await confirmed, true);
    } finally {
      clearInterval(pings);
      await pinging;
      await other.end();
    }
  });
});
