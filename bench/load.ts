// One scenario against one server: a warm-up, then a fixed-duration autocannon run during
// which the server's CPU time is read from /proc before and after. CPU per request is the
// figure that matters (DESIGN.md §5); requests/s also depends on the load generator, which
// shares the machine.
import autocannon, { type Client, type Result } from 'autocannon';
import type { StatementCounter } from './database.ts';
import { processCpuMicros, processTreeCpuMicros } from './processes.ts';

export interface Scenario {
  id: string;
  title: string;
  path: string;
  headers: Record<string, string>;
  /** The same body on every request, or one chain of bodies per connection. */
  body: string | Chained;
  /** A response body that proves the request did the real work (a token, an active answer). */
  verifyBody(body: string): boolean;
  /** Connections to use instead of BENCH_CONNECTIONS (argon2 saturates the server with fewer). */
  connections?: number;
  /** What one request is, in the summary below the table ("logins", "refreshes"). */
  unit?: string;
}

/**
 * Requests that each depend on the previous answer on the same connection: refresh-token
 * rotation makes every refresh token single-use, so each connection sends the token its
 * last refresh returned.
 */
export interface Chained {
  /**
   * One fresh chain per connection, called before every autocannon run (the warm-up too),
   * outside the measured time. Runs do not share chains: when a run stops, requests still
   * in flight may have spent the token their chain holds.
   */
  start(target: Target, connections: number): Promise<Chain[]>;
}

export interface Chain {
  /** The body of this connection's next request. */
  body(): string;
  /** Every answer on this connection, in order, before its next request is built. */
  onResponse(status: number, body: string): void;
}

export interface Target {
  name: 'keymanager' | 'bare' | 'keymanager 2 workers';
  baseUrl: string;
  pid: number;
  /** PostgreSQL backends serving this target, when their CPU is readable from here. */
  databasePids?: () => Promise<number[]>;
  /** Statements its database executed, when pg_stat_statements is loaded (the embedded cluster). */
  statements?: StatementCounter;
}

export interface LoadSettings {
  seconds: number;
  warmupSeconds: number;
  connections: number;
}

export interface Measurement {
  scenario: string;
  target: Target['name'];
  connections: number;
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  /** Server process CPU (user + system, every thread) divided by completed requests. */
  serverCpuMicrosPerRequest: number | null;
  /** 1e6 / serverCpuMicrosPerRequest: what one fully used core would serve. */
  requestsPerCoreSecond: number | null;
  /** Server CPU time / wall time: near 1.0 means its event loop was the bottleneck. */
  serverCores: number;
  /** PostgreSQL backend CPU per request; backends that exited during the run are missed. */
  databaseCpuMicrosPerRequest: number | null;
  /** Statements executed in the server's database (BEGIN and COMMIT included) / requests. */
  statementsPerRequest: number | null;
  /** The load generator's own CPU / wall time: near 1.0 means it, not the server, was the limit. */
  loadGeneratorCores: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  mismatches: number;
  statusCodes: Record<string, number>;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /**
   * Scenarios measured in rounds (BENCH_ROUNDS, run.ts): this is the round with the median
   * server CPU per request; here are every round's figures, in the order they ran.
   */
  rounds?: { serverCpuMicrosPerRequest: number | null; requestsPerSecond: number }[];
}

/** The chains for one run of `scenario`, or undefined when every request is the same. */
export async function startChains(scenario: Scenario, target: Target, connections: number): Promise<Chain[] | undefined> {
  if (typeof scenario.body === 'string') return undefined;
  const chains = await scenario.body.start(target, connections);
  if (chains.length !== connections) throw new Error(`${scenario.id}: ${chains.length} chains for ${connections} connections`);
  return chains;
}

function fire(scenario: Scenario, target: Target, connections: number, seconds: number, chains: Chain[] | undefined): PromiseLike<Result> {
  const url = new URL(scenario.path, target.baseUrl);
  // The bench only ever loads servers it started itself on this machine.
  if (url.hostname !== '127.0.0.1') throw new Error(`refusing to load ${url.href}: not 127.0.0.1`);
  let nextChain = 0;
  return autocannon({
    url: url.href,
    method: 'POST',
    headers: scenario.headers,
    connections,
    duration: seconds,
    timeout: 10,
    verifyBody: (body) => scenario.verifyBody(body),
    ...(typeof scenario.body === 'string' ? { body: scenario.body } : {}),
    // Each connection gets a chain of its own. autocannon's per-connection `context` does not
    // fit: it is reset whenever the request list starts over, i.e. after every request here.
    ...(chains ? {
      setupClient: (client: Client) => {
        const chain = chains[nextChain++];
        if (!chain) throw new Error(`${scenario.id}: more connections than chains`);
        client.setRequests([{
          setupRequest: (request) => ({ ...request, body: chain.body() }),
          onResponse: (status, body) => chain.onResponse(status, body),
        }]);
      },
    } : {}),
  });
}

async function databaseCpu(target: Target): Promise<Map<number, number> | undefined> {
  if (!target.databasePids) return undefined;
  const out = new Map<number, number>();
  for (const pid of await target.databasePids()) {
    const cpu = processCpuMicros(pid);
    if (cpu !== undefined) out.set(pid, cpu);
  }
  return out;
}

export async function measure(scenario: Scenario, target: Target, settings: LoadSettings): Promise<Measurement> {
  const connections = scenario.connections ?? settings.connections;
  if (settings.warmupSeconds > 0) {
    await fire(scenario, target, connections, settings.warmupSeconds, await startChains(scenario, target, connections));
  }
  const chains = await startChains(scenario, target, connections);

  // After the chains' logins, so that only the timed requests' statements are counted.
  await target.statements?.reset();
  const dbBefore = await databaseCpu(target);
  const serverBefore = processTreeCpuMicros(target.pid);
  const ownBefore = process.cpuUsage();
  const wallBefore = process.hrtime.bigint();
  const result: Result = await fire(scenario, target, connections, settings.seconds, chains);
  const wallMicros = Number(process.hrtime.bigint() - wallBefore) / 1000;
  const own = process.cpuUsage(ownBefore);
  const serverAfter = processTreeCpuMicros(target.pid);
  const dbAfter = await databaseCpu(target);
  const statements = await target.statements?.count();

  if (serverBefore === undefined || serverAfter === undefined) throw new Error(`${target.name} (pid ${target.pid}) exited during ${scenario.id}`);
  const requests = result.requests.total;
  const serverMicros = serverAfter - serverBefore;
  const perRequest = requests > 0 ? serverMicros / requests : null;
  let dbMicros: number | undefined;
  if (dbBefore && dbAfter) {
    dbMicros = 0;
    // A backend born during the run counts from zero: its start-up is part of the cost.
    for (const [pid, after] of dbAfter) dbMicros += after - (dbBefore.get(pid) ?? 0);
  }
  return {
    scenario: scenario.id,
    target: target.name,
    connections,
    requests,
    seconds: wallMicros / 1e6,
    requestsPerSecond: requests / (wallMicros / 1e6),
    serverCpuMicrosPerRequest: perRequest,
    requestsPerCoreSecond: perRequest ? 1e6 / perRequest : null,
    serverCores: serverMicros / wallMicros,
    databaseCpuMicrosPerRequest: dbMicros !== undefined && requests > 0 ? dbMicros / requests : null,
    statementsPerRequest: statements !== undefined && requests > 0 ? statements / requests : null,
    loadGeneratorCores: (own.user + own.system) / wallMicros,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    mismatches: result.mismatches,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, s]) => [code, s.count])),
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
  };
}

/** Of several runs of one scenario against one server, the one with the median server CPU per request, with every run's figures. */
export function medianRound(runs: Measurement[]): Measurement {
  const median = lowerMedianBy(runs, (m) => m.serverCpuMicrosPerRequest ?? Number.POSITIVE_INFINITY);
  return { ...median, rounds: runs.map(({ serverCpuMicrosPerRequest, requestsPerSecond }) => ({ serverCpuMicrosPerRequest, requestsPerSecond })) };
}

/**
 * The peak rate the paced runs take 70 % of: the median of the rounds' rates, not the rate of
 * the round medianRound picks (the median cost), which may be the slowest or the fastest round:
 * e's paced rate was 1,671 req/s in one run (its rounds: 2,944, 3,345, 2,387) and 2,039–2,303
 * in others of the same build.
 */
export function peakRate(m: Measurement): number {
  return lowerMedianBy(m.rounds ?? [m], (r) => r.requestsPerSecond).requestsPerSecond;
}

/** The item with the median value of `by` (the lower middle one of an even count). */
export function lowerMedianBy<T>(items: readonly T[], by: (item: T) => number): T {
  const sorted = [...items].sort((x, y) => by(x) - by(y));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}
