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
