// Scenario r: does the server's memory stay flat under a long run? Each connection loops over
// a (a client-credentials token), c (introspection of the token it just got: a new one each
// time, so the token cache keeps churning) and e (one refresh of its own chain), at full speed,
// for BENCH_SOAK_SECONDS, while the server's RSS is sampled.
//
// "Flat" (the rule the report applies): the least-squares slope of RSS over the second half of
// the run, extrapolated to 10 minutes, is below FLAT_LIMIT_BYTES. The first half is left out as
// warm-up (JIT, bounded caches filling to their limits, the heap settling); the fit over dozens
// of samples averages out the garbage collector's saw-tooth, which a first/last comparison
// would not. The limit is 10 % of the 150 MB idle-RSS budget: at the ~2,500 requests/s of this
// mix on a 2-core machine it catches a leak of about 10 bytes per request.
import autocannon, { type Client, type Result } from 'autocannon';
import { processTreeCpuMicros, processTreeRssBytes } from './processes.ts';
import type { Chain, Scenario, Target } from './load.ts';

export const FLAT_LIMIT_BYTES = 15 * 1024 * 1024;

export interface RssSample {
  /** Seconds since the soak started. */
  at: number;
  bytes: number;
}

export interface Soak {
  seconds: number;
  connections: number;
  requests: number;
  requestsPerSecond: number;
  serverCpuMicrosPerRequest: number | null;
  failed: number;
  statusCodes: Record<string, number>;
  samples: RssSample[];
  /** RSS when the load started, and the highest seen. */
  startBytes: number;
  maxBytes: number;
  /** Medians of the first and of the last quarter of the samples. */
  firstQuarterMedianBytes: number;
  lastQuarterMedianBytes: number;
  /** Least-squares slope over the second half, as bytes per 10 minutes. */
  secondHalfSlopeBytesPer10Min: number;
}

/** The least-squares slope of bytes over seconds. */
function slope(samples: RssSample[]): number {
  const n = samples.length;
  if (n < 2) return 0;
  const mx = samples.reduce((s, p) => s + p.at, 0) / n;
  const my = samples.reduce((s, p) => s + p.bytes, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of samples) {
    num += (p.at - mx) * (p.bytes - my);
    den += (p.at - mx) ** 2;
  }
  return den ? num / den : 0;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : 0;
};

export interface SoakRequests {
  token: Scenario;
  /** Introspection: its headers are used, its body is made from the token just issued. */
  introspect: Scenario;
  refresh: Scenario;
}

export async function runSoak(target: Target, requests: SoakRequests, seconds: number, connections: number, log: (m: string) => void): Promise<Soak> {
  if (typeof requests.refresh.body === 'string') throw new Error('the refresh scenario has no chains');
  const chains: Chain[] = await requests.refresh.body.start(target, connections);
  const url = new URL(requests.token.path, target.baseUrl);
  if (url.hostname !== '127.0.0.1') throw new Error(`refusing to load ${url.href}: not 127.0.0.1`);
  let mismatches = 0;
  let nextChain = 0;
  const startBytes = processTreeRssBytes(target.pid) ?? 0;
  const samples: RssSample[] = [{ at: 0, bytes: startBytes }];
  const every = Math.min(5, seconds / 20);
  const started = performance.now();
  const sampler = setInterval(() => {
    const bytes = processTreeRssBytes(target.pid);
    const at = (performance.now() - started) / 1000;
    if (bytes !== undefined) samples.push({ at, bytes });
    if (bytes !== undefined && Math.floor(at / 60) !== Math.floor((at - every) / 60)) log(`  ${Math.round(at)} s: RSS ${(bytes / 2 ** 20).toFixed(0)} MB`);
  }, every * 1000);
  const cpuBefore = processTreeCpuMicros(target.pid);
  let result: Result;
  try {
    result = await autocannon({
      url: url.href,
      method: 'POST',
      connections,
      duration: seconds,
      timeout: 10,
      setupClient: (client: Client) => {
        const chain = chains[nextChain++];
        if (!chain) throw new Error('soak: more connections than chains');
        let token = '';
        client.setRequests([
          {
            method: 'POST', path: requests.token.path, headers: requests.token.headers, body: requests.token.body as string,
            onResponse: (status, body) => {
              const t = status === 200 ? /"access_token":"([^"]+)"/.exec(body)?.[1] : undefined;
              if (t) token = t;
              else mismatches++;
            },
          },
          {
            method: 'POST', path: requests.introspect.path, headers: requests.introspect.headers,
            setupRequest: (request) => ({ ...request, body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString() }),
            onResponse: (status, body) => { if (status === 200 && !requests.introspect.verifyBody(body)) mismatches++; },
          },
          {
            method: 'POST', path: requests.refresh.path, headers: requests.refresh.headers,
            setupRequest: (request) => ({ ...request, body: chain.body() }),
            onResponse: (status, body) => {
              chain.onResponse(status, body);
              if (status === 200 && !requests.refresh.verifyBody(body)) mismatches++;
            },
          },
        ]);
      },
    });
  } finally {
    clearInterval(sampler);
  }
  const cpuAfter = processTreeCpuMicros(target.pid);
  const endBytes = processTreeRssBytes(target.pid);
  const wall = (performance.now() - started) / 1000;
  if (endBytes !== undefined) samples.push({ at: wall, bytes: endBytes });
  if (cpuBefore === undefined || cpuAfter === undefined) throw new Error(`${target.name} (pid ${target.pid}) exited during the soak`);
  const requestsDone = result.requests.total;
  const quarter = Math.max(1, Math.floor(samples.length / 4));
  return {
    seconds: wall,
    connections,
    requests: requestsDone,
    requestsPerSecond: requestsDone / wall,
    serverCpuMicrosPerRequest: requestsDone ? (cpuAfter - cpuBefore) / requestsDone : null,
    failed: result.non2xx + result.errors + result.timeouts + mismatches,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, s]) => [code, s.count])),
    samples,
    startBytes,
    maxBytes: Math.max(...samples.map((s) => s.bytes)),
    firstQuarterMedianBytes: median(samples.slice(0, quarter).map((s) => s.bytes)),
    lastQuarterMedianBytes: median(samples.slice(-quarter).map((s) => s.bytes)),
    secondHalfSlopeBytesPer10Min: slope(samples.filter((s) => s.at >= wall / 2)) * 600,
  };
}
