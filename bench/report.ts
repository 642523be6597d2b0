// The bench's output: one table for people, one JSON file for tooling and for comparing runs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Measurement, Scenario } from './load.ts';
import type { PacedRun } from './paced.ts';
import type { LoadedRows, PurgeUnderLoad } from './scale.ts';
import { FLAT_LIMIT_BYTES, type Soak } from './soak.ts';

export interface Comparison {
  scenario: string;
  keymanagerCpuMicrosPerRequest: number | null;
  bareCpuMicrosPerRequest: number | null;
  /** keymanager / bare server CPU per request: how much our code and Postgres cost on top. */
  cpuRatio: number | null;
}

export function compare(scenarios: Scenario[], measurements: Measurement[]): Comparison[] {
  return scenarios.flatMap((s) => {
    const km = measurements.find((m) => m.scenario === s.id && m.target === 'keymanager');
    const bare = measurements.find((m) => m.scenario === s.id && m.target === 'bare');
    if (!km || !bare) return [];
    const a = km.serverCpuMicrosPerRequest;
    const b = bare.serverCpuMicrosPerRequest;
    return [{ scenario: s.id, keymanagerCpuMicrosPerRequest: a, bareCpuMicrosPerRequest: b, cpuRatio: a && b ? a / b : null }];
  });
}

/** Requests that failed, were refused or did not carry the expected answer. */
export function failures(m: Measurement): number {
  return m.non2xx + m.errors + m.timeouts + m.mismatches;
}

const fmt = (v: number | null, digits = 0) => (v === null ? '-' : v.toFixed(digits));

export function renderTable(scenarios: Scenario[], measurements: Measurement[], comparisons: Comparison[]): string {
  const header = ['scenario', 'server', 'conns', 'req/s', 'µs CPU/req', 'req/core-s', 'server cores', 'db µs/req', 'stmts/req', 'p50 ms', 'p99 ms', 'non-2xx', 'failed'];
  const rows: string[][] = [];
  for (const s of scenarios) {
    for (const m of measurements.filter((x) => x.scenario === s.id)) {
      rows.push([
        `${s.id}  ${s.title}`, m.target, String(m.connections), fmt(m.requestsPerSecond), fmt(m.serverCpuMicrosPerRequest), fmt(m.requestsPerCoreSecond),
        fmt(m.serverCores, 2), fmt(m.databaseCpuMicrosPerRequest), fmt(m.statementsPerRequest, 2), fmt(m.latencyP50Ms, 1), fmt(m.latencyP99Ms, 1),
        String(m.non2xx), String(failures(m) - m.non2xx),
      ]);
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  // Text left, numbers right, so that columns of figures line up.
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  if (comparisons.length) {
    out.push('', 'server CPU per request, keymanager vs bare oidc-provider (in-memory adapter):');
    const roundsOf = (scenario: string, target: string) =>
      measurements.find((m) => m.scenario === scenario && m.target === target)?.rounds?.map((r) => fmt(r.serverCpuMicrosPerRequest)).join(', ');
    for (const c of comparisons) {
      const [km, bare] = [roundsOf(c.scenario, 'keymanager'), roundsOf(c.scenario, 'bare')];
      const medians = km && bare ? `  (median of rounds: keymanager ${km} µs; bare ${bare} µs)` : '';
      out.push(`  ${c.scenario}: ${fmt(c.keymanagerCpuMicrosPerRequest)} µs vs ${fmt(c.bareCpuMicrosPerRequest)} µs  ratio ${fmt(c.cpuRatio, 2)}x${medians}`);
    }
  }
  // Introspection by bearer (f) against introspection with Basic (c), both keymanager, same run.
  const basicCpu = measurements.find((m) => m.scenario === 'c' && m.target === 'keymanager')?.serverCpuMicrosPerRequest;
  const bearerCpu = measurements.find((m) => m.scenario === 'f' && m.target === 'keymanager')?.serverCpuMicrosPerRequest;
  if (basicCpu && bearerCpu) {
    out.push('', `introspection by bearer vs by Basic (keymanager): f ${fmt(bearerCpu)} µs vs c ${fmt(basicCpu)} µs  ratio ${fmt(bearerCpu / basicCpu, 2)}x`);
  }
  // Grants that act for a user: the bare provider has no such path, so their own units.
  const counted = scenarios.filter((s) => s.unit);
  if (counted.length) {
    out.push('', 'user grants, keymanager (per core-second = 1e6 / server µs CPU per request):');
    for (const s of counted) {
      for (const m of measurements.filter((x) => x.scenario === s.id)) {
        out.push(`  ${s.id}: ${fmt(m.requestsPerSecond)} ${s.unit}/s, ${fmt(m.requestsPerCoreSecond, 1)} ${s.unit} per core-second, `
          + `p50 ${fmt(m.latencyP50Ms, 1)} ms, p99 ${fmt(m.latencyP99Ms, 1)} ms, ${m.connections} connections${m.target === 'keymanager' ? '' : ` (${m.target})`}`);
      }
    }
  }
  return out.join('\n');
}

export function writeJson(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** Failed requests of a paced run (same meaning as for a full-speed run). */
export function pacedFailures(r: PacedRun): number {
  return r.non2xx + r.errors + r.timeouts + r.mismatches;
}

const MB = 2 ** 20;
const mb = (bytes: number) => `${(bytes / MB).toFixed(0)} MB`;

export function renderPaced(runs: PacedRun[]): string {
  if (!runs.length) return '';
  const out = ['at 70 % of the peak rate (open loop: evenly spaced requests, latency from when each was due):'];
  for (const r of runs) {
    out.push(`  ${r.scenario} ${r.target}: ${r.rate.toFixed(0)} req/s asked, ${r.achievedRate.toFixed(0)} done, at most ${r.peakConcurrency} of ${r.connections} connections busy, `
      + `p50 ${r.latencyP50Ms.toFixed(1)} ms, p99 ${r.latencyP99Ms.toFixed(1)} ms${r.p99Rounds ? ` (median of ${r.p99Rounds.map((p) => p.toFixed(1)).join(' / ')})` : ''}, max ${r.latencyMaxMs.toFixed(1)} ms, `
      + `${fmt(r.serverCpuMicrosPerRequest)} µs CPU/req, ${pacedFailures(r)} failed${r.reference ? ` (${r.reference}, for reference)` : ''}`);
  }
  return out.join('\n');
}

export interface Memory {
  /** keymanager's RSS after start and setup, before any load. */
  idleBytes: number | null;
  /** The same for the KM_WORKERS=2 server of w: supervisor plus workers. */
  idleWorkersBytes: number | null;
  /** keymanager's RSS once every scenario before the soak and the scale load has run. */
  afterLoadBytes: number | null;
}

export function renderMemory(memory: Memory, soak: Soak | undefined): string {
  const out = [`RSS of keymanager: idle ${memory.idleBytes === null ? '-' : mb(memory.idleBytes)}`
    + (memory.afterLoadBytes === null ? '' : `, after the scenarios ${mb(memory.afterLoadBytes)}`)
    + (memory.idleWorkersBytes === null ? '' : `; KM_WORKERS=2 idle ${mb(memory.idleWorkersBytes)} (supervisor + workers)`)];
  if (soak) {
    out.push(`soak (r): ${soak.seconds.toFixed(0)} s of a, c, e in turn, ${soak.connections} connections, ${soak.requestsPerSecond.toFixed(0)} req/s, `
      + `${fmt(soak.serverCpuMicrosPerRequest)} µs CPU/req, ${soak.failed} failed; RSS ${mb(soak.startBytes)} at the start, max ${mb(soak.maxBytes)}, `
      + `median ${mb(soak.firstQuarterMedianBytes)} over the first quarter and ${mb(soak.lastQuarterMedianBytes)} over the last; `
      + `second-half trend ${(soak.secondHalfSlopeBytesPer10Min / MB).toFixed(1)} MB per 10 minutes`);
  }
  return out.join('\n');
}

export interface Scale {
  rows: number;
  load: LoadedRows;
  purge: PurgeUnderLoad | undefined;
}

export function renderScale(scale: Scale): string {
  const { load, purge } = scale;
  const out = [`scale (s): ${load.rows.toLocaleString('en')} live token rows loaded in ${load.seconds.toFixed(0)} s, VACUUM ANALYZE and CHECKPOINT ${load.vacuumSeconds.toFixed(0)} s, `
    + `tokens now ${(load.tableBytes / 2 ** 30).toFixed(2)} GiB with its indexes; payload bytes per kind ${JSON.stringify(load.payloadBytes)}`];
  if (purge) {
    out.push(`  purge: ${purge.expired.rows.toLocaleString('en')} expired rows loaded in ${purge.expired.seconds.toFixed(0)} s; keymgr purge ran ${purge.purgeSeconds.toFixed(1)} s `
      + `(deleting ${purge.deletingSeconds === null ? '-' : purge.deletingSeconds.toFixed(1)} s), deleted ${purge.deleted ?? '-'} rows in ${purge.locks.transactions} transaction(s) seen, `
      + `longest holding a lock on tokens ≥ ${purge.locks.longestMs.toFixed(0)} ms; keymanager waiting for a lock in ${purge.locks.serverLockWaits} of ${purge.locks.samples} samples`
      + (purge.deletes ? `; ${purge.deletes.calls} DELETE statement(s), longest ${purge.deletes.maxMs.toFixed(0)} ms, ${(purge.deletes.totalMs / 1000).toFixed(1)} s in all` : '')
      + (purge.purgeCpuSeconds === null ? '' : `; the purge's PostgreSQL session used ${purge.purgeCpuSeconds.toFixed(1)} s of CPU`)
      + (purge.wal ? `; WAL written meanwhile ${(purge.wal.bytes / 1e6).toFixed(0)} MB, ${purge.wal.fullPageImages.toLocaleString('en')} full-page images` : ''));
    const tx = purge.locks.transactionMs;
    if (tx.length >= 4) {
      const tenth = Math.max(1, Math.floor(tx.length / 10));
      const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
      out.push(`  purge transactions as seen (50 ms samples): the first tenth ${mean(tx.slice(0, tenth)).toFixed(0)} ms on average, the last tenth ${mean(tx.slice(-tenth)).toFixed(0)} ms`);
    }
    const top = (waits: Record<string, number>) => Object.entries(waits).sort((x, y) => y[1] - x[1]).slice(0, 4).map(([w, n]) => `${w} ${n}`).join(', ') || '-';
    out.push(`  while it deleted, samples of what the purge's session was doing: ${top(purge.locks.purgeWaits)}; keymanager's busy sessions: ${top(purge.locks.serverWaits)}`);
    out.push(`  a at ${purge.rate.toFixed(0)} req/s (70 % of ${purge.peak.toFixed(0)}, its full speed with the expired rows in): without the purge p50 ${purge.baseline.latencyP50Ms.toFixed(1)} ms, p99 ${purge.baseline.latencyP99Ms.toFixed(1)} ms; `
      + `while it deleted (${purge.during.requests} requests) p50 ${purge.during.latencyP50Ms.toFixed(1)} ms, p99 ${purge.during.latencyP99Ms.toFixed(1)} ms, max ${purge.during.latencyMaxMs.toFixed(1)} ms`);
  }
  return out.join('\n');
}

export interface TargetLine {
  scenario: string;
  measured: string;
  target: string;
  /** null: not judged (not run, or not measurable here); `measured` says which. */
  met: boolean | null;
}

export interface TargetInputs {
  measurements: Measurement[];
  calibration: { signingAlgorithm: string; signatureMicros: number; argon2HashMicros: number } | undefined;
  paced: PacedRun[];
  memory: Memory;
  soak: Soak | undefined;
  /** How to run what was not run: shown instead of a figure. */
  soakHow: string;
  scale: Scale | undefined;
  scaleHow: string;
}

export const PACED_SHARE = 0.7;
export const P99_LIMIT_MS = 20;
export const IDLE_RSS_LIMIT_BYTES = 150 * MB;
/** The issue's "10-minute run". */
export const SOAK_TARGET_SECONDS = 600;
export const SCALE_COST_LIMIT = 1.15;
export const PURGE_P99_LIMIT = 2;
/**
 * "Holds no long lock": no purge transaction keeps its locks on tokens for a second or more.
 * Every lock is held to the end of its transaction, and anything that then asks for a
 * conflicting lock (a migration's ALTER TABLE, TRUNCATE, VACUUM FULL) waits that long, with
 * every later request on the table queued behind it.
 */
export const PURGE_LOCK_LIMIT_MS = 1000;

/** Issue 13's targets, in the order of its table, each with this run's figure and whether it is met. */
export function targets(inputs: TargetInputs): TargetLine[] {
  const { measurements, calibration, paced, memory, soak, scale } = inputs;
  const km = (id: string) => measurements.find((m) => m.scenario === id && m.target === 'keymanager');
  const bare = (id: string) => measurements.find((m) => m.scenario === id && m.target === 'bare');
  const lines: TargetLine[] = [];
  const notRun = (scenario: string, target: string, how = 'not run') => lines.push({ scenario, measured: how, target, met: null });
  const ratio = (id: string) => {
    const k = km(id)?.serverCpuMicrosPerRequest;
    const b = bare(id)?.serverCpuMicrosPerRequest;
    return k && b ? k / b : null;
  };
  const a = km('a');

  const ra = ratio('a');
  const aTarget = '<= 1.6x bare server CPU';
  if (ra !== null) lines.push({ scenario: 'a', measured: `${ra.toFixed(2)}x bare`, target: aTarget, met: ra <= 1.6 });
  else notRun('a', aTarget);
  const aDb = '<= 100 µs PostgreSQL CPU per token';
  if (a?.databaseCpuMicrosPerRequest != null) {
    lines.push({ scenario: 'a', measured: `${a.databaseCpuMicrosPerRequest.toFixed(0)} µs PostgreSQL CPU per token`, target: aDb, met: a.databaseCpuMicrosPerRequest <= 100 });
  } else notRun('a', aDb, a ? '- (PostgreSQL CPU is read only from the embedded cluster)' : 'not run');

  const b = km('b');
  const bTarget = `<= a + one ${calibration?.signingAlgorithm ?? 'RS256'} signature`;
  if (b?.serverCpuMicrosPerRequest && a?.serverCpuMicrosPerRequest && calibration) {
    const limit = a.serverCpuMicrosPerRequest + calibration.signatureMicros;
    lines.push({ scenario: 'b', measured: `${b.serverCpuMicrosPerRequest.toFixed(0)} µs`, target: `${bTarget} = ${limit.toFixed(0)} µs`, met: b.serverCpuMicrosPerRequest <= limit });
  } else notRun('b', bTarget, b ? 'not run (needs a in the same run)' : 'not run');

  const rc = ratio('c');
  const cTarget = '<= 1.15x bare server CPU';
  if (rc !== null) lines.push({ scenario: 'c', measured: `${rc.toFixed(2)}x bare`, target: cTarget, met: rc <= 1.15 });
  else notRun('c', cTarget);

  const d = km('d');
  const dTarget = '>= 90 % of the argon2 limit';
  if (d?.requestsPerCoreSecond && calibration) {
    const limit = 1e6 / calibration.argon2HashMicros;
    const share = d.requestsPerCoreSecond / limit;
    lines.push({ scenario: 'd', measured: `${d.requestsPerCoreSecond.toFixed(1)} logins/core-s = ${(100 * share).toFixed(0)} % of the argon2 limit (${limit.toFixed(1)})`, target: dTarget, met: share >= 0.9 });
  } else notRun('d', dTarget);

  const e = km('e');
  const eTarget = '<= 2x a server CPU';
  if (e?.serverCpuMicrosPerRequest && a?.serverCpuMicrosPerRequest) {
    const r = e.serverCpuMicrosPerRequest / a.serverCpuMicrosPerRequest;
    lines.push({ scenario: 'e', measured: `${r.toFixed(2)}x a`, target: eTarget, met: r <= 2 });
  } else notRun('e', eTarget, e ? 'not run (needs a in the same run)' : 'not run');
  const eStatements = '<= 4 statements per refresh';
  if (e?.statementsPerRequest != null) {
    lines.push({ scenario: 'e', measured: `${e.statementsPerRequest.toFixed(2)} statements per refresh (BEGIN and COMMIT included)`, target: eStatements, met: e.statementsPerRequest <= 4 });
  } else notRun('e', eStatements, e ? '- (statements are counted only in the embedded cluster)' : 'not run');

  const p99Target = `p99 < ${P99_LIMIT_MS} ms at 70 % of the peak rate`;
  for (const id of ['a', 'c', 'e']) {
    const r = paced.find((p) => p.scenario === id && p.target === 'keymanager');
    if (r) lines.push({ scenario: 'all', measured: `${id}: p99 ${r.latencyP99Ms.toFixed(1)} ms${r.p99Rounds ? ` (median round of ${r.p99Rounds.map((p) => p.toFixed(1)).join(' / ')})` : ''} (p50 ${r.latencyP50Ms.toFixed(1)} ms) at ${r.rate.toFixed(0)} req/s`, target: p99Target, met: r.latencyP99Ms < P99_LIMIT_MS });
    else notRun('all', p99Target, `${id}: not run`);
  }
  const rssTarget = `idle RSS < ${mb(IDLE_RSS_LIMIT_BYTES)}`;
  if (memory.idleBytes !== null) lines.push({ scenario: 'all', measured: `idle RSS ${mb(memory.idleBytes)}`, target: rssTarget, met: memory.idleBytes < IDLE_RSS_LIMIT_BYTES });
  else notRun('all', rssTarget, '-');
  const flatTarget = `RSS flat over a 10-minute run (second-half trend < ${mb(FLAT_LIMIT_BYTES)} per 10 min)`;
  if (soak) {
    const short = soak.seconds < SOAK_TARGET_SECONDS - 1;
    const trend = soak.secondHalfSlopeBytesPer10Min;
    lines.push({
      scenario: 'all',
      measured: `RSS trend ${(trend / MB).toFixed(1)} MB per 10 min over the second half of ${soak.seconds.toFixed(0)} s (${mb(soak.startBytes)} → ${mb(soak.lastQuarterMedianBytes)})${short ? ', shorter than the 10 minutes asked: not judged' : ''}`,
      target: flatTarget,
      met: short ? null : trend < FLAT_LIMIT_BYTES,
    });
  } else notRun('all', flatTarget, `not run (${inputs.soakHow})`);

  const scaleCost = `a, c, e within 15 % of their empty-table cost (server + PostgreSQL CPU per request)`;
  for (const id of ['a', 'c', 'e']) {
    const empty = km(id);
    const big = km(`s:${id}`);
    if (!scale || !empty?.serverCpuMicrosPerRequest || !big?.serverCpuMicrosPerRequest) {
      notRun('scale', scaleCost, `${id}: not run (${inputs.scaleHow})`);
      continue;
    }
    // The cost to the machine: PostgreSQL's share is where a bigger table would show first.
    const cost = (m: Measurement) => m.serverCpuMicrosPerRequest! + (m.databaseCpuMicrosPerRequest ?? 0);
    const withDb = empty.databaseCpuMicrosPerRequest != null && big.databaseCpuMicrosPerRequest != null;
    const r = cost(big) / cost(empty);
    lines.push({
      scenario: 'scale',
      measured: `${id}: ${cost(big).toFixed(0)} µs with ${scale.rows.toLocaleString('en')} rows vs ${cost(empty).toFixed(0)} µs empty = ${r.toFixed(2)}x`
        + (withDb ? ` (server ${big.serverCpuMicrosPerRequest.toFixed(0)} vs ${empty.serverCpuMicrosPerRequest.toFixed(0)}, PostgreSQL ${big.databaseCpuMicrosPerRequest!.toFixed(0)} vs ${empty.databaseCpuMicrosPerRequest!.toFixed(0)})` : ' (server only)'),
      target: scaleCost,
      met: r <= SCALE_COST_LIMIT,
    });
  }
  const purgeP99 = 'purging 1,000,000 expired rows: p99 of a at 70 % of peak < 2x the p99 without the purge';
  const purgeLock = `purge holds no lock on tokens for ${PURGE_LOCK_LIMIT_MS} ms or more`;
  const purge = scale?.purge;
  if (purge) {
    const r = purge.baseline.latencyP99Ms > 0 ? purge.during.latencyP99Ms / purge.baseline.latencyP99Ms : null;
    // A baseline already behind (requests queueing for longer than the p99 target) has no
    // meaningful p99 to double: the machine could not hold the rate even without the purge.
    const overloaded = purge.baseline.latencyP50Ms > P99_LIMIT_MS;
    lines.push({
      scenario: 'scale',
      measured: `${purge.expired.rows.toLocaleString('en')} rows: p99 ${purge.during.latencyP99Ms.toFixed(1)} ms while purging vs ${purge.baseline.latencyP99Ms.toFixed(1)} ms without = ${r === null ? '-' : `${r.toFixed(2)}x`}`
        + (overloaded ? `, but the rate overloaded the server even without the purge (p50 ${purge.baseline.latencyP50Ms.toFixed(0)} ms): not judged` : ''),
      target: purgeP99,
      met: r === null || purge.during.requests === 0 || overloaded ? null : r < PURGE_P99_LIMIT,
    });
    const longest = Math.max(purge.locks.longestMs, purge.deletes?.maxMs ?? 0);
    lines.push({
      scenario: 'scale',
      measured: `longest purge transaction holding a lock on tokens ${longest.toFixed(0)} ms (${purge.locks.transactions} seen; purge took ${purge.purgeSeconds.toFixed(1)} s)`,
      target: purgeLock,
      met: longest < PURGE_LOCK_LIMIT_MS,
    });
  } else {
    notRun('scale', purgeP99, `not run (${scale ? 'BENCH_SCALE_EXPIRED_ROWS=0' : inputs.scaleHow})`);
    notRun('scale', purgeLock, `not run (${scale ? 'BENCH_SCALE_EXPIRED_ROWS=0' : inputs.scaleHow})`);
  }
  return lines;
}

export function renderTargets(lines: TargetLine[]): string {
  if (!lines.length) return '';
  const out = ['targets (issue 13):'];
  for (const l of lines) {
    const verdict = l.met === null ? (l.measured.includes('not run') ? 'NOT RUN' : 'not judged') : l.met ? 'MET' : 'NOT MET';
    out.push(`  ${l.scenario}: ${l.measured}   target ${l.target}   ${verdict}`);
  }
  out.push('  (the correctness halves of a and c — each token committed before its response, a revocation seen by every instance — are proved by the tests, not by the bench)');
  return out.join('\n');
}
