// Scenario g: the revocation feed's delivery time. One subscriber follows GET /revocations
// while tokens are revoked one after another; for each, the time from /revoke's answer to
// the event's arrival (matched by the token's SHA-256). Reported as p50/p99/max.
import { createHash } from 'node:crypto';
import { createParser } from 'eventsource-parser';
import type { Credentials } from './targets.ts';

export interface FeedLatency {
  revocations: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

const basic = ({ clientId, clientSecret }: Credentials) =>
  `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`;

export async function measureFeedLatency(baseUrl: string, gateway: Credentials, owner: Credentials, count: number, log: (m: string) => void): Promise<FeedLatency> {
  log(`g revocation feed delivery → keymanager (${count} revocations)`);
  const arrived = new Map<string, number>();
  const abort = new AbortController();
  const res = await fetch(`${baseUrl}/revocations`, { headers: { authorization: basic(gateway), accept: 'text/event-stream' }, signal: abort.signal });
  if (res.status !== 200 || !res.body) throw new Error(`GET /revocations answered ${res.status}`);
  const parser = createParser({
    onEvent(e) {
      if (e.event === 'revocation') arrived.set((JSON.parse(e.data) as { sha256: string }).sha256, performance.now());
    },
  });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const pump = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch { /* aborted */ }
  })();

  const form = (params: Record<string, string>) => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(owner) },
    body: new URLSearchParams(params).toString(),
  });
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const issued = await (await fetch(`${baseUrl}/token`, form({ grant_type: 'client_credentials', scope: 'read' }))).json() as { access_token: string };
    const digest = createHash('sha256').update(issued.access_token).digest('hex');
    const revoked = await fetch(`${baseUrl}/revoke`, form({ token: issued.access_token }));
    const answeredAt = performance.now();
    if (revoked.status !== 200) throw new Error(`/revoke answered ${revoked.status}`);
    const deadline = answeredAt + 10_000;
    while (!arrived.has(digest)) {
      if (performance.now() > deadline) throw new Error('a revocation did not arrive within 10 s');
      await new Promise((r) => setImmediate(r));
    }
    // Arrival can precede /revoke's answer reaching us: the event may beat the HTTP response.
    latencies.push(Math.max(0, arrived.get(digest)! - answeredAt));
  }
  abort.abort();
  await pump;
  latencies.sort((x, y) => x - y);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return { revocations: count, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: latencies.at(-1)! };
}

export function renderFeedLatency(l: FeedLatency): string {
  return `revocation feed (g): ${l.revocations} revocations, from /revoke's answer to the event: p50 ${l.p50Ms.toFixed(1)} ms, p99 ${l.p99Ms.toFixed(1)} ms, max ${l.maxMs.toFixed(1)} ms`;
}
