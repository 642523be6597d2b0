// The read-through caches (client rows, introspected tokens: noticeDroppedCache in
// src/db/notifications.ts) send one read for a key however many requests miss it at once: a
// hot token whose entry expires under thousands of introspections a second, or a cache just
// emptied by a notice, must not turn into a burst of identical statements that every one of
// those requests waits behind. Sharing never crosses a notice: a request that arrives after
// one reads afresh, as it would with no read under way. Nor does it cover what the cache does
// not keep (a refresh token, an unknown key): that may change with no notice, so a request that
// joined such a read reads again itself.
//
// The reads here are the store's own, against the test's PostgreSQL; each is held at a gate
// until the test lets it go, so that "at once" does not depend on timing.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { makeClient, type TestClient } from '../support/fixtures.ts';
import { waitFor } from '../support/wait.ts';
import { listenForChanges, noticeDroppedCache, type ChangeListener } from '../../src/db/notifications.ts';
import { findClientById } from '../../src/store/clients.ts';
import type { ClientRow } from '../../src/db/types.ts';

describe('read-through caches: requests that miss at once share one read', () => {
  let database: TestDatabase;
  let changes: ChangeListener;
  let client: TestClient;

  before(async () => {
    database = await createTestDatabase();
    changes = listenForChanges(database.url, () => {});
    await waitFor('the change listener', async () => changes.listening);
    client = await makeClient(database.db);
    // The new client's own notice must be handled before the tests start: arriving during the
    // first one, it would (rightly) keep that test's read out of the cache.
    assert.equal(await changes.sync(), true);
  });
  after(async () => {
    await changes?.close();
    await database?.drop();
  });

  /**
   * A cache of client rows whose reads wait at a gate: `reads` counts the statements sent. By
   * default the gate is before the statement; with `gateAfterRead` the statement has run (and
   * seen the row as it then was) when the read reaches the gate.
   */
  function gatedCache({ topics = ['clients'], keep = true, gateAfterRead = false } = {}) {
    const gates: (() => void)[] = [];
    const state = { reads: 0, failNext: false };
    const gate = () => new Promise<void>((resolve) => gates.push(resolve));
    const find = noticeDroppedCache<ClientRow>(changes, {
      topics: new Set(topics),
      max: 100,
      read: async (id) => {
        if (!gateAfterRead) await gate();
        state.reads++;
        if (state.failNext) {
          state.failNext = false;
          throw new Error('the database is unreachable');
        }
        const row = await findClientById(database.db, id);
        if (gateAfterRead) await gate();
        return row;
      },
      keepFor: () => (keep ? 60_000 : undefined),
    });
    const open = async () => {
      while (gates.length) gates.shift()!();
      // Let the released reads reach the database and come back.
      await new Promise((r) => setImmediate(r));
    };
    return { find, state, gates, open };
  }

  it('twenty requests that miss together send one read and all get its row', async () => {
    const { find, state, gates, open } = gatedCache();
    const answers = Array.from({ length: 20 }, () => find(client.id));
    assert.equal(gates.length, 1);
    await open();
    const rows = await Promise.all(answers);
    assert.equal(state.reads, 1);
    for (const row of rows) assert.equal(row?.client_id, client.id);
    // And it was kept: the next request sends nothing (a read would be waiting at a gate).
    const next = find(client.id);
    assert.equal(gates.length, 0, 'the next request sent a read');
    assert.equal((await next)?.client_id, client.id);
    assert.equal(state.reads, 1);
  });

  it('a request that arrives after a notice does not share a read started before it', async () => {
    const { find, state, gates, open } = gatedCache();
    const before = find(client.id);
    assert.equal(gates.length, 1);
    // An admin renames the client with plain SQL while that read is under way; its notice
    // reaches this instance before the next request.
    await sql`update clients set name = 'renamed while read' where client_id = ${client.id}`.execute(database.db);
    assert.equal(await changes.sync(), true);
    const afterNotice = find(client.id);
    assert.equal(gates.length, 2, 'the request after the notice started a read of its own');
    await open();
    assert.equal((await afterNotice)?.name, 'renamed while read');
    await before;
    assert.equal(state.reads, 2);
    // The row read after the notice is the one kept.
    const next = find(client.id);
    assert.equal(gates.length, 0, 'the next request sent a read');
    assert.equal((await next)?.name, 'renamed while read');
    assert.equal(state.reads, 2);
  });

  it('a read that fails fails every request that shared it, and the next request reads again', async () => {
    const { find, state, gates, open } = gatedCache();
    await sql`update clients set name = 'failure case' where client_id = ${client.id}`.execute(database.db);
    assert.equal(await changes.sync(), true);
    state.failNext = true;
    const shared = Promise.allSettled(Array.from({ length: 5 }, () => find(client.id)));
    assert.equal(gates.length, 1);
    await open();
    const settled = await shared;
    assert.deepEqual(settled.map((s) => s.status), Array(5).fill('rejected'));
    for (const s of settled) assert.equal((s as PromiseRejectedResult).reason.message, 'the database is unreachable');
    const again = find(client.id);
    assert.equal(gates.length, 1, 'a new read, not the failed one');
    await open();
    assert.equal((await again)?.name, 'failure case');
    assert.equal(state.reads, 2);
  });

  it('a request that joins a read whose answer is not kept reads again: what is not kept may change with no notice', async () => {
    // Like the token cache and a refresh token: it keeps none, and its rotation or its grant's
    // revocation sends no notice. Here, a cache that keeps nothing and hears no client notices.
    const { find, state, gates, open } = gatedCache({ topics: ['tokens'], keep: false, gateAfterRead: true });
    await sql`update clients set name = 'before the change' where client_id = ${client.id}`.execute(database.db);
    const first = find(client.id);
    await waitFor('the first read to have run', async () => gates.length === 1);
    // The change commits while the first read is still under way; then the second request comes.
    await sql`update clients set name = 'after the change' where client_id = ${client.id}`.execute(database.db);
    let answered = false;
    const second = find(client.id).finally(() => { answered = true; });
    await open();
    assert.equal((await first)?.name, 'before the change');
    await waitFor('the second request to answer or to read', async () => answered || gates.length === 1);
    await open();
    assert.equal((await second)?.name, 'after the change', 'the request that came after the change got the row from before it');
    assert.equal(state.reads, 2);
  });
});
