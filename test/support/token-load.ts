// Client-credentials requests at full speed against several instances, every outcome kept:
// for the tests that take the database away under load.
import assert from 'node:assert/strict';
import { basicHeader } from './http.ts';
import type { TestClient } from './fixtures.ts';

/** Longer than any request may take while the database is away: past it, the request hung. */
export const REQUEST_DEADLINE_MS = 30_000;

export interface Outcome {
  instance: string;
  /** performance.now() when the request was sent, and when its answer (or failure) came. */
  sentAt: number;
  doneAt: number;
  /** 0 when no complete HTTP answer came (connection refused or cut, or the deadline passed). */
  status: number;
  body: string;
  token?: string;
  error?: string;
}

export interface TokenLoad {
  readonly outcomes: readonly Outcome[];
  /** Outcomes of `instance` matching `filter`. */
  count(instance: string, filter: (o: Outcome) => boolean): number;
  stop(): Promise<void>;
}

/** `loops` requests at a time per instance, each loop taking the clients in turn. */
export function startTokenLoad(instances: { name: string; url: string }[], clients: TestClient[], loops: number): TokenLoad {
  const outcomes: Outcome[] = [];
  let stopped = false;
  const loop = async (instance: { name: string; url: string }, offset: number) => {
    for (let i = offset; !stopped; i++) {
      const client = clients[i % clients.length]!;
      const sentAt = performance.now();
      try {
        const res = await fetch(`${instance.url}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicHeader(...client.basic) },
          body: 'grant_type=client_credentials&scope=read',
          signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
        });
        const body = await res.text();
        const token = res.status === 200 ? (JSON.parse(body) as { access_token?: string }).access_token : undefined;
        outcomes.push({ instance: instance.name, sentAt, doneAt: performance.now(), status: res.status, body, ...(token ? { token } : {}) });
      } catch (err) {
        outcomes.push({ instance: instance.name, sentAt, doneAt: performance.now(), status: 0, body: '', error: String((err as Error).cause ?? err) });
        // Refused at once while nothing listens: not a reason to spin.
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  };
  const running = instances.flatMap((instance) => Array.from({ length: loops }, (_, n) => loop(instance, n)));
  return {
    outcomes,
    count: (instance, filter) => outcomes.filter((o) => o.instance === instance && filter(o)).length,
    async stop() {
      stopped = true;
      await Promise.all(running);
    },
  };
}

/** Waits for a condition the test can observe, with a generous deadline. */
export async function until(what: string, condition: () => boolean | Promise<boolean>, deadlineMs = 60_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The status of /readyz, or 0 when no answer came. */
export async function readyz(url: string): Promise<number> {
  try {
    const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}
