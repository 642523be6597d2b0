// Waiting on an observable condition instead of for a time: a busy machine makes a test slower,
// never wrong. The deadline is generous; it only ends a wait for something that never happens.
import assert from 'node:assert/strict';
import { listenForChanges } from '../../src/db/notifications.ts';

export const GENEROUS_DEADLINE_MS = 30_000;

/** Polls `check` until it returns a value other than undefined or false; fails with `what` at the deadline. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, deadlineMs = GENEROUS_DEADLINE_MS): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    assert.ok(Date.now() < deadline, `waited ${deadlineMs} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Until every running instance on the database has handled the change notices sent so far: a
 * change written with SQL or a store function (not through an endpoint, which waits itself)
 * then counts at the next request.
 */
export async function syncEveryInstance(databaseUrl: string): Promise<void> {
  const listener = listenForChanges(databaseUrl, () => {});
  try {
    await waitFor('a change listener', async () => listener.listening || undefined);
    assert.equal(await listener.sync(), true);
  } finally {
    await listener.close();
  }
}
