// Scenario o: PostgreSQL stopped and started again under load. Two keymanager instances on
// the same database are sent client-credentials requests at full speed; PostgreSQL is shut
// down (fast: its sessions are ended), stays down BENCH_OUTAGE_SECONDS, and is started again.
// Counted: tokens issued, 503 temporarily_unavailable answers, anything else (must be none),
// requests sent after PostgreSQL was back that failed (must be none), and the time from its
// return to each instance's first token and /readyz 200. Then every token handed out is
// looked for in the database (tokens lost: must be 0) and introspected at both instances.
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { createDatabase } from '../src/db/database.ts';
import type { Cluster } from './database.ts';
import { formRequest, type Credentials } from './targets.ts';

export interface OutageInstance {
  name: string;
  issued: number;
  unavailable: number;
  /** Milliseconds from PostgreSQL accepting connections again to this instance's first token. */
  firstTokenAfterMs: number | null;
  /** The same, to its first /readyz 200. */
  readyAfterMs: number | null;
  /** Whether /readyz answered 503 while PostgreSQL was away. */
  readyzSaw503: boolean;
}

export interface Outage {
  connectionsPerInstance: number;
  downSeconds: number;
  instances: OutageInstance[];
  tokensIssued: number;
  unavailable: number;
  /** Answers other than 200 and the exact 503, and requests that got no answer: status (or error) → count. */
  otherFailures: Record<string, number>;
  /** Requests sent once PostgreSQL accepted connections again that did not get a token. */
  failedAfterReturn: number;
  tokensLost: number;
  /** Introspections (each token at each instance) that did not answer active. */
  notActive: number;
}

const UNAVAILABLE = JSON.stringify({ error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable' });
/** Longer than any request may take while the database is away: past it, a request hung. */
const REQUEST_DEADLINE_MS = 30_000;

interface Sent {
  instance: string;
  sentAt: number;
  doneAt: number;
  status: number | string;
  token?: string;
}

export async function runOutage({ instances, clients, gateway, databaseUrl, cluster, connections, downSeconds, log }: {
  instances: { name: string; baseUrl: string }[];
  clients: Credentials[];
  gateway: Credentials;
  databaseUrl: string;
  cluster: Cluster;
  connections: number;
  downSeconds: number;
  log: (m: string) => void;
}): Promise<Outage> {
  const sent: Sent[] = [];
  const readiness: { instance: string; at: number; status: number }[] = [];
  let stopped = false;
  const loop = async (instance: { name: string; baseUrl: string }, n: number) => {
    for (let i = n; !stopped; i++) {
      const sentAt = performance.now();
      try {
        const res = await fetch(`${instance.baseUrl}/token`, {
          method: 'POST', ...formRequest(clients[i % clients.length]!, { grant_type: 'client_credentials', scope: 'read' }), signal: AbortSignal.timeout(REQUEST_DEADLINE_MS),
        });
        const body = await res.text();
        const token = res.status === 200 ? (JSON.parse(body) as { access_token?: string }).access_token : undefined;
        sent.push({ instance: instance.name, sentAt, doneAt: performance.now(), status: res.status === 503 && body !== UNAVAILABLE ? '503 other body' : res.status, ...(token ? { token } : {}) });
      } catch (err) {
        sent.push({ instance: instance.name, sentAt, doneAt: performance.now(), status: String(((err as Error).cause as { code?: string } | undefined)?.code ?? (err as Error).name) });
        await sleep(10);
      }
    }
  };
  const probe = async (instance: { name: string; baseUrl: string }) => {
    while (!stopped) {
      const status = await fetch(`${instance.baseUrl}/readyz`, { signal: AbortSignal.timeout(REQUEST_DEADLINE_MS) })
        .then(async (r) => { await r.arrayBuffer(); return r.status; }, () => 0);
      readiness.push({ instance: instance.name, at: performance.now(), status });
      await sleep(100);
    }
  };
  const running = [...instances.flatMap((instance) => Array.from({ length: connections }, (_, n) => loop(instance, n))), ...instances.map(probe)];

  let backAt = 0;
  try {
    await sleep(3000);
    log(`  stopping PostgreSQL for ${downSeconds} s`);
    await cluster.stop();
    const downAt = performance.now();
    await sleep(downSeconds * 1000);
    await cluster.start();
    backAt = performance.now();
    log(`  PostgreSQL accepted connections again after ${((backAt - downAt) / 1000).toFixed(1)} s`);
    const deadline = Date.now() + 60_000;
    while (instances.some((i) => !readiness.some((r) => r.instance === i.name && r.at > backAt && r.status === 200)) && Date.now() < deadline) await sleep(50);
    await sleep(3000);
  } finally {
    stopped = true;
    await Promise.all(running);
  }

  const issuedTokens = sent.filter((s) => s.token).map((s) => s.token!);
  const otherFailures: Record<string, number> = {};
  for (const s of sent) if (s.status !== 200 && s.status !== 503) otherFailures[String(s.status)] = (otherFailures[String(s.status)] ?? 0) + 1;
  log(`  ${issuedTokens.length} tokens issued; checking each is stored and active at both instances`);
  return {
    connectionsPerInstance: connections,
    downSeconds,
    instances: instances.map(({ name }) => {
      const firstToken = sent.filter((s) => s.instance === name && s.sentAt > backAt && s.token).reduce((m, s) => Math.min(m, s.doneAt), Infinity);
      const readyzSaw503 = readiness.some((r) => r.instance === name && r.at < backAt && r.status === 503);
      const ready = readiness.find((r) => r.instance === name && r.at > backAt && r.status === 200);
      return {
        name,
        issued: sent.filter((s) => s.instance === name && s.token).length,
        unavailable: sent.filter((s) => s.instance === name && s.status === 503).length,
        firstTokenAfterMs: Number.isFinite(firstToken) ? firstToken - backAt : null,
        readyAfterMs: ready ? ready.at - backAt : null,
        readyzSaw503,
      };
    }),
    tokensIssued: issuedTokens.length,
    unavailable: sent.filter((s) => s.status === 503).length,
    otherFailures,
    failedAfterReturn: sent.filter((s) => s.sentAt > backAt && !s.token).length,
    tokensLost: issuedTokens.length - await countStored(databaseUrl, issuedTokens),
    notActive: await countNotActive(instances, gateway, issuedTokens),
  };
}

async function countStored(databaseUrl: string, tokens: string[]): Promise<number> {
  const db = createDatabase({ url: databaseUrl, poolSize: 1, applicationName: 'keymanager-bench' });
  try {
    let stored = 0;
    for (let i = 0; i < tokens.length; i += 10_000) {
      const digests = tokens.slice(i, i + 10_000).map((t) => createHash('sha256').update(t).digest('hex'));
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from tokens where id_sha256 = any(${digests})`.execute(db);
      stored += rows[0]!.n;
    }
    return stored;
  } finally {
    await db.destroy();
  }
}

async function countNotActive(instances: { baseUrl: string }[], gateway: Credentials, tokens: string[]): Promise<number> {
  const checks = tokens.flatMap((token) => instances.map((i) => ({ token, baseUrl: i.baseUrl })));
  let notActive = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    for (let check = checks.pop(); check; check = checks.pop()) {
      const res = await fetch(`${check.baseUrl}/introspect`, { method: 'POST', ...formRequest(gateway, { token: check.token }) });
      if (res.status !== 200 || (await res.json() as { active?: boolean }).active !== true) notActive++;
    }
  }));
  return notActive;
}

export function outageFailures(o: Outage): string[] {
  const failures = [
    ...Object.entries(o.otherFailures).map(([status, n]) => `${n} answered ${status}`),
    ...(o.failedAfterReturn ? [`${o.failedAfterReturn} failed after PostgreSQL was back`] : []),
    ...(o.tokensLost ? [`${o.tokensLost} tokens lost`] : []),
    ...(o.notActive ? [`${o.notActive} introspections not active`] : []),
    ...o.instances.filter((i) => i.readyAfterMs === null || !i.readyzSaw503).map((i) => `/readyz of ${i.name} did not follow`),
  ];
  return failures.map((f) => `o outage: ${f}`);
}

export function renderOutage(o: Outage): string {
  const ms = (v: number | null) => (v === null ? 'never' : `${(v / 1000).toFixed(2)} s`);
  const failed = Object.entries(o.otherFailures).map(([status, n]) => `${n}× ${status}`).join(', ') || 'none';
  return [
    `outage (o): ${o.instances.length} instances × ${o.connectionsPerInstance} connections, PostgreSQL down ${o.downSeconds} s (fast shutdown, then started again)`,
    `  tokens issued ${o.tokensIssued} (${o.instances.map((i) => `${i.name} ${i.issued}`).join(', ')}); 503 temporarily_unavailable ${o.unavailable}; other failures ${failed}`,
    `  tokens lost ${o.tokensLost}; introspections not active at one of the instances ${o.notActive} (of ${o.tokensIssued * o.instances.length})`,
    `  recovery, from PostgreSQL accepting connections: first token ${o.instances.map((i) => `${i.name} ${ms(i.firstTokenAfterMs)}`).join(', ')}; `
      + `/readyz 200 ${o.instances.map((i) => `${i.name} ${ms(i.readyAfterMs)}`).join(', ')}; requests failed after its return ${o.failedAfterReturn}`,
  ].join('\n');
}
