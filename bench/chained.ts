// A load loop for requests that depend on the previous answer, which autocannon cannot
// express: each connection refreshes with the refresh token its last refresh returned
// (rotation makes every refresh token single-use). Bounded by time, loopback only.
import { Agent, request } from 'node:http';
import type { Result } from 'autocannon';

export interface ChainStep {
  /** The body to send, given what this chain carries now. */
  body(state: string): string;
  /** The state for the next request, or undefined when the answer broke the chain. */
  next(status: number, body: string): string | undefined;
}

function post(agent: Agent, url: URL, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) }, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

function percentile(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : 0;
}

/** Runs one chain per initial state for `seconds`; a broken chain stops and counts as failed. */
export async function runChains(url: URL, headers: Record<string, string>, step: ChainStep, initial: string[], seconds: number): Promise<Result> {
  if (url.hostname !== '127.0.0.1') throw new Error(`refusing to load ${url.href}: not 127.0.0.1`);
  const agent = new Agent({ keepAlive: true, maxSockets: initial.length });
  const deadline = Date.now() + seconds * 1000;
  const latencies: number[] = [];
  const statusCodeStats: Record<string, { count: number }> = {};
  let non2xx = 0;
  let errors = 0;
  let mismatches = 0;
  const started = Date.now();
  await Promise.all(initial.map(async (first) => {
    let state: string | undefined = first;
    while (state !== undefined && Date.now() < deadline) {
      const t0 = performance.now();
      try {
        const res = await post(agent, url, headers, step.body(state));
        latencies.push(performance.now() - t0);
        (statusCodeStats[res.status] ??= { count: 0 }).count++;
        if (res.status < 200 || res.status > 299) non2xx++;
        state = step.next(res.status, res.body);
        if (state === undefined && res.status === 200) mismatches++;
      } catch {
        errors++;
        state = undefined;
      }
    }
  }));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const total = latencies.length;
  const hist = (v: number) => ({ average: v, min: v, max: v, p50: v, p90: v, p99: v, total: v });
  return {
    duration: (Date.now() - started) / 1000,
    errors,
    timeouts: 0,
    mismatches,
    non2xx,
    statusCodeStats,
    latency: { ...hist(0), p50: percentile(latencies, 50), p90: percentile(latencies, 90), p99: percentile(latencies, 99), average: total ? latencies.reduce((a, b) => a + b, 0) / total : 0 },
    requests: { ...hist(0), total, sent: total },
  };
}
