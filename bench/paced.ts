// Latency at a fixed request rate (issue 13: p99 < 20 ms at 70 % of the peak rate), measured
// open-loop: request i is due at start + i / rate whether or not earlier ones have been
// answered, and its latency runs from when it was due, not from when a connection was free
// to send it. A server that falls behind therefore shows its backlog in the figures instead
// of slowing the load down (coordinated omission).
//
// Not autocannon's overallRate/connectionRate: that limiter gives each connection a budget per
// one-second tick, spent back to back at full speed, then idles until the next tick. At 70 % of
// the peak a run is then ~0.7 s of full load and ~0.3 s of nothing each second, so its p99 is
// the full-load p99. Its latency correction also takes the expected interval as ceil(1 / rate)
// milliseconds — 1 ms whatever the rate — and records made-up samples from that.
import { connect, type Socket } from 'node:net';
import { lowerMedianBy, type Chain, type Scenario, type Target } from './load.ts';
import { processTreeCpuMicros } from './processes.ts';

export interface PacedSettings {
  /** Requests per second to send, evenly spaced. */
  rate: number;
  /**
   * The most connections open at once. Each is opened only when a request is due and every
   * open one is busy; a request due while all are busy waits for one (and counts the wait).
   */
  connections: number;
  /** Stop scheduling after this many seconds, or when `until` settles, whichever is first. */
  seconds: number;
  until?: Promise<unknown>;
}

export interface PacedSample {
  /** When the request was due, ms after the run started. */
  dueMs: number;
  /** From when it was due to its complete answer. */
  latencyMs: number;
}

/**
 * Paced runs may open this many times the connections of the full-speed run: open-loop
 * clients are many, and a cap at the full-speed run's count would queue requests in the load
 * generator that the server could have taken at once.
 */
export const PACED_CONNECTION_FACTOR = 4;

export interface PacedRun {
  scenario: string;
  target: Target['name'];
  connections: number;
  /** The most requests in flight at once: the connections actually used. */
  peakConcurrency: number;
  /** Requests per second asked for, and what was sent (completed / time scheduled). */
  rate: number;
  achievedRate: number;
  requests: number;
  seconds: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  /** The five slowest requests: when in the run they were due tells a stall from a trend. */
  slowest: PacedSample[];
  serverCpuMicrosPerRequest: number | null;
  loadGeneratorCores: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  mismatches: number;
  statusCodes: Record<string, number>;
  /** For a run of the bare provider: at which rate it was paced, and why. */
  reference?: string;
  /** When measured in rounds: every round's p99, in the order they ran (this run is the median one). */
  p99Rounds?: number[];
}

/** The round with the median p99 (the lower middle one of an even count), all rounds' p99 attached. */
export function medianPacedRound(runs: PacedRun[]): PacedRun {
  const median = lowerMedianBy(runs, (r) => r.latencyP99Ms);
  return runs.length > 1 ? { ...median, p99Rounds: runs.map((r) => r.latencyP99Ms) } : median;
}

const TIMEOUT_MS = 10_000;

/** The q-quantile of ascending `sorted` (nearest rank), 0 when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** Latencies of the samples due in [fromMs, toMs) after the run started, ascending. */
export function latenciesBetween(samples: PacedSample[], fromMs: number, toMs: number): Float64Array {
  return Float64Array.from(samples.filter((s) => s.dueMs >= fromMs && s.dueMs < toMs), (s) => s.latencyMs).sort();
}

/**
 * One keep-alive HTTP/1.1 connection that sends a request and waits for its answer. Written
 * for this load rather than node:http, whose client costs several times more CPU per request:
 * at the rates of c (over 10,000 requests/s) that would take the server's share of a 2-core
 * machine. It understands what the servers under test send (Content-Length bodies) and fails
 * the request on anything else.
 */
class Connection {
  private socket: Socket | undefined;
  private received: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (r: { status: number; body: string }) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | undefined;

  private readonly port: number;

  constructor(port: number) {
    this.port = port;
  }

  send(bytes: Buffer): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new TimeoutError()), TIMEOUT_MS);
      this.waiting = { resolve, reject, timer };
      this.connection().write(bytes);
    });
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connection(): Socket {
    if (this.socket) return this.socket;
    const socket = connect(this.port, '127.0.0.1');
    socket.setNoDelay(true);
    // Events of a socket already replaced (closed after `connection: close`) are no concern.
    socket.on('data', (chunk) => socket === this.socket && this.onData(chunk));
    socket.on('error', (err) => socket === this.socket && this.fail(err));
    socket.on('close', () => socket === this.socket && this.fail(new Error('connection closed')));
    this.received = Buffer.alloc(0);
    this.socket = socket;
    return socket;
  }

  private onData(chunk: Buffer): void {
    this.received = this.received.length ? Buffer.concat([this.received, chunk]) : chunk;
    const headEnd = this.received.indexOf('\r\n\r\n');
    if (headEnd < 0) return;
    const head = this.received.toString('latin1', 0, headEnd);
    const length = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head)?.[1];
    if (length === undefined) {
      this.fail(new Error(`an answer without Content-Length: ${head.split('\r\n')[0]}`));
      return;
    }
    const end = headEnd + 4 + Number(length);
    if (this.received.length < end) return;
    const status = Number(head.slice(9, 12));
    const body = this.received.toString('utf8', headEnd + 4, end);
    this.received = this.received.subarray(end);
    if (/\r\nconnection:[ \t]*close/i.test(head)) this.close();
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) {
      clearTimeout(waiting.timer);
      waiting.resolve({ status, body });
    }
  }

  /** Ends the request in flight, if any; the next send opens a new connection. */
  private fail(err: Error): void {
    this.close();
    const waiting = this.waiting;
    this.waiting = undefined;
    if (waiting) {
      clearTimeout(waiting.timer);
      waiting.reject(err);
    }
  }
}

class TimeoutError extends Error {}

interface Lane {
  connection: Connection;
  chain: Chain | undefined;
}

/**
 * Sends `scenario` to `target` at `settings.rate` requests per second. `chains` (one per
 * connection) as for a full-speed run. Returns the summary and every request's due time and
 * latency, so that a caller can look at a window of the run (while a purge ran, say).
 */
export async function runPaced(scenario: Scenario, target: Target, settings: PacedSettings, chains: Chain[] | undefined): Promise<{ run: PacedRun; samples: PacedSample[]; startedAt: number }> {
  const url = new URL(scenario.path, target.baseUrl);
  if (url.hostname !== '127.0.0.1') throw new Error(`refusing to load ${url.href}: not 127.0.0.1`);
  if (!(settings.rate > 0)) throw new Error(`${scenario.id}: no rate to pace at (${settings.rate})`);
  // A chained scenario's connection keeps its own chain, as in autocannon.
  const lanes: Lane[] = Array.from({ length: settings.connections }, (_, i) => ({
    connection: new Connection(Number(url.port)),
    chain: chains?.[i],
  }));
  const head = `POST ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`
    + Object.entries(scenario.headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const requestBytes = (body: string) => Buffer.from(`${head}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  const fixed = typeof scenario.body === 'string' ? requestBytes(scenario.body) : undefined;
  // A stack: the connection freed last is used next, so extra ones open only under concurrency.
  const idle = [...lanes].reverse();
  const due: number[] = [];
  let nextDue = 0;
  const samples: PacedSample[] = [];
  const counts = { non2xx: 0, errors: 0, timeouts: 0, mismatches: 0 };
  const statusCodes: Record<string, number> = {};
  let inFlight = 0;
  let peakConcurrency = 0;
  let scheduled = 0;
  let stopped = false;
  let finish: () => void = () => {};
  const finished = new Promise<void>((resolve) => { finish = resolve; });

  const interval = 1000 / settings.rate;
  const start = performance.now();
  const end = start + settings.seconds * 1000;

  const send = (lane: Lane, dueAt: number) => {
    inFlight++;
    peakConcurrency = Math.max(peakConcurrency, inFlight);
    const bytes = fixed ?? requestBytes(lane.chain!.body());
    const done = () => {
      samples.push({ dueMs: dueAt - start, latencyMs: performance.now() - dueAt });
      inFlight--;
      idle.push(lane);
      pump();
    };
    lane.connection.send(bytes).then(({ status, body }) => {
      statusCodes[status] = (statusCodes[status] ?? 0) + 1;
      if (status < 200 || status > 299) counts.non2xx++;
      else if (!scenario.verifyBody(body)) counts.mismatches++;
      lane.chain?.onResponse(status, body);
      done();
    }, (err: unknown) => {
      if (err instanceof TimeoutError) counts.timeouts++;
      else counts.errors++;
      done();
    });
  };

  const pump = () => {
    while (nextDue < due.length && idle.length) send(idle.pop()!, due[nextDue++]!);
    if (nextDue > 4096) {
      due.splice(0, nextDue);
      nextDue = 0;
    }
    if (stopped && nextDue >= due.length && inFlight === 0) finish();
  };

  const stop = () => {
    stopped = true;
    pump();
  };
  settings.until?.then(stop, stop);

  const ownBefore = process.cpuUsage();
  const serverBefore = processTreeCpuMicros(target.pid);
  // Timers fire about once a millisecond at best: each tick queues every request that has come
  // due since the last one, so a late tick delays requests (and is counted in their latency)
  // rather than dropping them.
  const tick = () => {
    if (stopped) return;
    const now = performance.now();
    const until = Math.min(now, end);
    while (start + scheduled * interval <= until) due.push(start + interval * scheduled++);
    if (now >= end) {
      stop();
      return;
    }
    pump();
    setTimeout(tick, Math.max(0, start + scheduled * interval - performance.now()));
  };
  tick();
  await finished;
  const wallMicros = (performance.now() - start) * 1000;
  const serverAfter = processTreeCpuMicros(target.pid);
  const own = process.cpuUsage(ownBefore);
  for (const lane of lanes) lane.connection.close();
  if (serverBefore === undefined || serverAfter === undefined) throw new Error(`${target.name} (pid ${target.pid}) exited during ${scenario.id}`);

  const latencies = Float64Array.from(samples, (s) => s.latencyMs).sort();
  const scheduledSeconds = (scheduled * interval) / 1000;
  return {
    samples,
    startedAt: start,
    run: {
      scenario: scenario.id,
      target: target.name,
      connections: settings.connections,
      peakConcurrency,
      rate: settings.rate,
      achievedRate: scheduledSeconds > 0 ? samples.length / scheduledSeconds : 0,
      requests: samples.length,
      seconds: wallMicros / 1e6,
      latencyP50Ms: quantile(latencies, 0.5),
      latencyP99Ms: quantile(latencies, 0.99),
      latencyMaxMs: latencies.length ? latencies[latencies.length - 1]! : 0,
      slowest: [...samples].sort((x, y) => y.latencyMs - x.latencyMs).slice(0, 5),
      serverCpuMicrosPerRequest: samples.length ? (serverAfter - serverBefore) / samples.length : null,
      loadGeneratorCores: (own.user + own.system) / wallMicros,
      ...counts,
      statusCodes,
    },
  };
}
