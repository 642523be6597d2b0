// A real Apache httpd (Debian's) in front of keymanager, the way an operator runs a stock
// gateway: one generated httpd.conf in a temporary ServerRoot, listening on a free loopback
// port, serving a small static "backend" under each location that the module under test
// protects. Every instance is started in the foreground as a child of the test process and
// stopped by its pid; a start that fails throws with Apache's own error log in the message.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, tempDir } from '../../support/server.ts';
import { APACHE_BINARY, APACHE_MODULES_DIR } from '../../support/system-packages.ts';

/** What the backend behind the gateway answers, so that a test can tell it was reached. */
export const BACKEND_BODY = 'backend content: the gateway let this request through\n';
/** The file every protected location serves: GET <location>/resource.txt. */
export const BACKEND_FILE = 'resource.txt';

export interface ProtectedLocation {
  /** An absolute path such as /api: the backend answers at <path>/resource.txt. */
  path: string;
  /** Directives inside its <Location>: the module's AuthType, how it verifies, what it requires. */
  directives: string[];
}

export interface ApacheSite {
  /** Module files loaded on top of the base set, e.g. ['mod_auth_openidc.so']. */
  modules: string[];
  /** Files written (mode 0644) into the instance's conf directory, e.g. a CA bundle: name → content. */
  files?: Record<string, string>;
  /** Server-wide directives, given the conf directory that holds `files`. */
  serverConfig?: (confDir: string) => string[];
  locations: ProtectedLocation[];
  /** LogLevel arguments; module debug output lands in the error log that failure messages show. */
  logLevel?: string;
}

export interface RunningApache {
  /** http://127.0.0.1:PORT */
  url: string;
  /** The backend resource behind a protected location. */
  backendUrl(path: string): string;
  /** The generated configuration, for failure messages. */
  config: string;
  errorLog(): string;
  /** The last lines of the error log, for failure messages. */
  errorLogTail(lines?: number): string;
  stop(): Promise<void>;
}

// What every site needs besides its OAuth module: one MPM, the core authn/authz providers
// (AuthType, Require valid-user) and mod_headers to show who the module authenticated.
const BASE_MODULES: [string, string][] = [
  ['mpm_event_module', 'mod_mpm_event.so'],
  ['authn_core_module', 'mod_authn_core.so'],
  ['authz_core_module', 'mod_authz_core.so'],
  ['authz_user_module', 'mod_authz_user.so'],
  ['headers_module', 'mod_headers.so'],
  ['mime_module', 'mod_mime.so'],
];

// The module name each LoadModule line needs, by file.
const MODULE_NAMES: Record<string, string> = {
  'mod_auth_openidc.so': 'auth_openidc_module',
  'mod_oauth2.so': 'oauth2_module',
};

function loadModuleLines(files: string[]): string[] {
  const extra = files.map((file): [string, string] => {
    const name = MODULE_NAMES[file];
    if (!name) throw new Error(`apache.ts: unknown module file ${file}`);
    return [name, file];
  });
  return [...BASE_MODULES, ...extra].map(([name, file]) => `LoadModule ${name} ${join(APACHE_MODULES_DIR, file)}`);
}

/** A directive argument in double quotes, as httpd's config parser reads it. */
export function quoted(value: string): string {
  if (/["\\\n]/.test(value)) throw new Error(`apache.ts: value cannot be quoted: ${JSON.stringify(value)}`);
  return `"${value}"`;
}

function renderConfig(root: string, port: number, site: ApacheSite): string {
  const asRoot = process.getuid?.() === 0;
  return [
    `ServerRoot ${quoted(root)}`,
    `DefaultRuntimeDir ${quoted(join(root, 'run'))}`,
    `PidFile ${quoted(join(root, 'run', 'httpd.pid'))}`,
    `ErrorLog ${quoted(join(root, 'logs', 'error.log'))}`,
    `LogLevel ${site.logLevel ?? 'warn'}`,
    `Listen 127.0.0.1:${port}`,
    'ServerName 127.0.0.1',
    // Root drops to nobody for the workers (httpd refuses to serve as root); others stay themselves.
    ...(asRoot ? ['User #65534', 'Group #65534'] : []),
    // Few processes and threads: this is a test, on a two-core machine.
    'StartServers 1',
    'ServerLimit 1',
    'ThreadsPerChild 8',
    'ThreadLimit 8',
    'MaxRequestWorkers 8',
    'MinSpareThreads 1',
    'MaxSpareThreads 8',
    'KeepAlive Off',
    ...loadModuleLines(site.modules),
    `TypesConfig ${quoted('/etc/mime.types')}`,
    `DocumentRoot ${quoted(join(root, 'htdocs'))}`,
    `<Directory ${quoted(join(root, 'htdocs'))}>`,
    '  Require all granted',
    '</Directory>',
    ...(site.serverConfig?.(join(root, 'conf')) ?? []),
    ...site.locations.flatMap((location) => [
      `<Location ${quoted(location.path)}>`,
      ...location.directives.map((line) => `  ${line}`),
      // Who the module says the caller is (REMOTE_USER), shown to the test on success.
      '  Header set X-Remote-User "expr=%{REMOTE_USER}"',
      '</Location>',
    ]),
    '',
  ].join('\n');
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const running = new Set<ChildProcess>();

/** httpd runs in a process group of its own (detached): SIGKILL takes its workers with it. */
function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
}

// A test process that dies without its after() hooks must not leave httpd behind.
process.once('exit', () => {
  for (const child of running) killGroup(child);
});

/** Thrown when the free port was taken between choosing it and httpd binding it: worth another try. */
class PortTakenError extends Error {}

export async function startApache(site: ApacheSite): Promise<RunningApache> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(site);
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt === 3) throw err;
    }
  }
}

async function startOnce(site: ApacheSite): Promise<RunningApache> {
  const root = tempDir('km-apache-');
  for (const dir of ['run', 'logs', 'conf', 'htdocs']) mkdirSync(join(root, dir), { recursive: true });
  // The workers run as nobody when the tests run as root: they must be able to read what they serve and use.
  for (const dir of [root, join(root, 'conf'), join(root, 'htdocs')]) chmodSync(dir, 0o755);
  for (const { path } of site.locations) {
    if (!/^(\/[\w-]+)+$/.test(path)) throw new Error(`apache.ts: bad location ${path}`);
    mkdirSync(join(root, 'htdocs', path), { recursive: true, mode: 0o755 });
    writeFileSync(join(root, 'htdocs', path, BACKEND_FILE), BACKEND_BODY, { mode: 0o644 });
  }
  for (const [name, content] of Object.entries(site.files ?? {})) {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`apache.ts: bad file name ${name}`);
    writeFileSync(join(root, 'conf', name), content, { mode: 0o644 });
  }

  const port = await freePort();
  const config = renderConfig(root, port, site);
  const configFile = join(root, 'httpd.conf');
  writeFileSync(configFile, config);
  const errorLogFile = join(root, 'logs', 'error.log');
  const errorLog = () => (existsSync(errorLogFile) ? readFileSync(errorLogFile, 'utf8') : '');

  const child = spawn(APACHE_BINARY, ['-d', root, '-f', configFile, '-DFOREGROUND'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    // Debian's apache2 reads APACHE_* only through apache2ctl's envvars; this config names none.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' },
  });
  running.add(child);
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString('utf8')));
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = signal ? `signal ${signal}` : `exit code ${code}`;
      running.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      exited = `spawn error: ${err.message}`;
      running.delete(child);
      resolve();
    });
  });

  const fail = (why: string) => {
    const error = new (/Address already in use/.test(output + errorLog()) ? PortTakenError : Error)(`Apache httpd ${why}\n--- output ---\n${output}\n--- error log ---\n${errorLog()}\n--- httpd.conf ---\n${config}`);
    rmSync(root, { recursive: true, force: true });
    return error;
  };
  // Up when the port answers and httpd has written its pid file (after binding): the port is ours.
  const pidFile = join(root, 'run', 'httpd.pid');
  const ours = () => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() === String(child.pid);
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) throw fail(`did not start (${exited})`);
    if (ours() && await portOpen(port)) break;
    if (Date.now() > deadline) {
      killGroup(child);
      await exit;
      throw fail('did not listen within 15 s');
    }
    await sleep(50);
  }

  return {
    url: `http://127.0.0.1:${port}`,
    backendUrl: (path: string) => `http://127.0.0.1:${port}${path}/${BACKEND_FILE}`,
    config,
    errorLog,
    errorLogTail: (lines = 150) => errorLog().split('\n').slice(-lines - 1).join('\n'),
    async stop() {
      if (!exited) {
        // SIGTERM: httpd stops its workers and removes its pid file; SIGKILL if it hangs.
        child.kill('SIGTERM');
        const timer = setTimeout(() => killGroup(child), 10_000);
        await exit;
        clearTimeout(timer);
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** What a request through the gateway got back, and for failed assertions what Apache logged. */
export interface GatewayReply {
  status: number;
  body: string;
  challenge: string | null;
  remoteUser: string | null;
  explain: string;
}

/** A request to a protected location, with the token as a bearer when one is given. */
export async function callGateway(apache: RunningApache, path: string, token?: string): Promise<GatewayReply> {
  const res = await fetch(apache.backendUrl(path), { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  const body = await res.text();
  const challenge = res.headers.get('www-authenticate');
  return {
    status: res.status, body, challenge, remoteUser: res.headers.get('x-remote-user'),
    explain: `${path}: ${res.status} ${challenge ?? ''}\n${body}\n--- Apache error log (end) ---\n${apache.errorLogTail()}`,
  };
}
