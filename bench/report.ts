// The bench's output: one table for people, one JSON file for tooling and for comparing runs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Measurement, Scenario } from './load.ts';

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
  const header = ['scenario', 'server', 'conns', 'req/s', 'µs CPU/req', 'req/core-s', 'server cores', 'db µs/req', 'p50 ms', 'p99 ms', 'non-2xx', 'failed'];
  const rows: string[][] = [];
  for (const s of scenarios) {
    for (const m of measurements.filter((x) => x.scenario === s.id)) {
      rows.push([
        `${s.id}  ${s.title}`, m.target, String(m.connections), fmt(m.requestsPerSecond), fmt(m.serverCpuMicrosPerRequest), fmt(m.requestsPerCoreSecond),
        fmt(m.serverCores, 2), fmt(m.databaseCpuMicrosPerRequest), fmt(m.latencyP50Ms, 1), fmt(m.latencyP99Ms, 1),
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
    for (const c of comparisons) {
      out.push(`  ${c.scenario}: ${fmt(c.keymanagerCpuMicrosPerRequest)} µs vs ${fmt(c.bareCpuMicrosPerRequest)} µs  ratio ${fmt(c.cpuRatio, 2)}x`);
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

export interface TargetLine {
  scenario: string;
  measured: string;
  target: string;
  met: boolean | null;
}

/** Issue 13's targets, each with what this run measured and whether it is met. */
export function targets(measurements: Measurement[], calibration: { signatureMicros: number; argon2HashMicros: number } | undefined): TargetLine[] {
  const km = (id: string) => measurements.find((m) => m.scenario === id && m.target === 'keymanager');
  const bare = (id: string) => measurements.find((m) => m.scenario === id && m.target === 'bare');
  const lines: TargetLine[] = [];
  const a = km('a');
  const ratio = (id: string) => {
    const k = km(id)?.serverCpuMicrosPerRequest;
    const b = bare(id)?.serverCpuMicrosPerRequest;
    return k && b ? k / b : null;
  };
  const ra = ratio('a');
  if (ra !== null) lines.push({ scenario: 'a', measured: `${ra.toFixed(2)}x bare`, target: '<= 1.6x bare server CPU', met: ra <= 1.6 });
  if (a?.databaseCpuMicrosPerRequest != null) {
    lines.push({ scenario: 'a', measured: `${a.databaseCpuMicrosPerRequest.toFixed(0)} µs PostgreSQL CPU per token`, target: '<= 100 µs', met: a.databaseCpuMicrosPerRequest <= 100 });
  }
  const rc = ratio('c');
  if (rc !== null) lines.push({ scenario: 'c', measured: `${rc.toFixed(2)}x bare`, target: '<= 1.15x bare server CPU', met: rc <= 1.15 });
  const b = km('b');
  if (b?.serverCpuMicrosPerRequest && a?.serverCpuMicrosPerRequest && calibration) {
    const limit = a.serverCpuMicrosPerRequest + calibration.signatureMicros;
    lines.push({ scenario: 'b', measured: `${b.serverCpuMicrosPerRequest.toFixed(0)} µs`, target: `<= a + one RS256 signature = ${limit.toFixed(0)} µs`, met: b.serverCpuMicrosPerRequest <= limit });
  }
  const e = km('e');
  if (e?.serverCpuMicrosPerRequest && a?.serverCpuMicrosPerRequest) {
    const r = e.serverCpuMicrosPerRequest / a.serverCpuMicrosPerRequest;
    lines.push({ scenario: 'e', measured: `${r.toFixed(2)}x a`, target: '<= 2x a server CPU', met: r <= 2 });
  }
  const d = km('d');
  if (d?.requestsPerCoreSecond && calibration) {
    const limit = 1e6 / calibration.argon2HashMicros;
    const share = d.requestsPerCoreSecond / limit;
    lines.push({ scenario: 'd', measured: `${d.requestsPerCoreSecond.toFixed(1)} logins/core-s = ${(100 * share).toFixed(0)} % of the argon2 limit (${limit.toFixed(1)})`, target: '>= 90 %', met: share >= 0.9 });
  }
  for (const m of measurements.filter((x) => x.target === 'keymanager' && x.scenario !== 'd')) {
    lines.push({ scenario: m.scenario, measured: `p99 ${m.latencyP99Ms.toFixed(1)} ms (at full load, not 70 % of peak)`, target: 'p99 < 20 ms at 70 % of the peak rate', met: null });
  }
  return lines;
}

export function renderTargets(lines: TargetLine[]): string {
  if (!lines.length) return '';
  const out = ['targets (issue 13):'];
  for (const l of lines) out.push(`  ${l.scenario}: ${l.measured}   target ${l.target}   ${l.met === null ? 'not measured as specified' : l.met ? 'MET' : 'NOT MET'}`);
  return out.join('\n');
}
