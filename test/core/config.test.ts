// Configuration: defaults ← keymanager.toml (KM_CONFIG) ← KM_* environment ← overrides, one
// frozen object, and a wrong value refused with one line that names the key.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, SETTINGS, workerCount, type Config } from '../../src/config/index.ts';
import { REPO_ROOT } from '../support/cli.ts';

interface ReadmeRow {
  toml: string;
  /** The environment variable, or undefined where the README says `—`. */
  env: string | undefined;
  defaultText: string;
}

/** The rows of the README's configuration table (TOML key | environment | default | meaning). */
function readmeConfigurationTable(): ReadmeRow[] {
  const lines = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8').split('\n');
  const start = lines.findIndex((l) => l.startsWith('| TOML key | environment | default |'));
  assert.ok(start >= 0, 'README has the configuration table');
  const rows: ReadmeRow[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    const [toml, env, defaultText] = line.split(' | ').map((c) => c.replace(/^\| /, '').trim());
    const unquote = (c: string) => c.replace(/^`(.*)`$/, '$1');
    // `[[management.users]]` is the array of tables `management.users`.
    rows.push({ toml: unquote(toml!).replace(/^\[\[(.*)\]\]$/, '$1'), env: env === '—' ? undefined : unquote(env!), defaultText: defaultText! });
  }
  return rows;
}

/**
 * What a README default means as a value: a backticked word or number, `on`/`off`, `—`
 * (unset), `none` (empty list), a path (relative to the project root), and the two defaults
 * the README states in words.
 */
function readmeDefault(toml: string, text: string): { expected?: unknown; derived?: (c: Config) => boolean } {
  if (toml === 'issuer') return { expected: /`([^`]+)`$/.exec(text)![1] };
  if (toml === 'workers') {
    assert.equal(text, '1 in development, every available core in production');
    return { derived: (c) => c.workers === undefined && workerCount(c) === 1 };
  }
  if (text === '—') return { expected: undefined };
  if (text === 'none') return { expected: [] };
  const word = /^`([^`]+)`$/.exec(text)?.[1];
  assert.ok(word !== undefined, `${toml}: a default the test can read (${text})`);
  if (word === 'on' || word === 'off') return { expected: word === 'on' };
  if (/^\d+$/.test(word)) return { expected: Number(word) };
  if (toml.endsWith('_dir')) return { expected: join(dir, word) };
  return { expected: word };
}

let dir: string;
let emptyToml: string;

function tomlFile(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

/** Asserts that loading throws a one-line ConfigError naming `key`; returns its message. */
function assertRefused(env: NodeJS.ProcessEnv, key: string): string {
  let caught: unknown;
  try {
    loadConfig({ env });
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.ok(caught.message.includes(key), `"${caught.message}" does not name ${key}`);
  assert.ok(!caught.message.includes('\n'), `"${caught.message}" is more than one line`);
  return caught.message;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'km-config-'));
  // Pointing KM_CONFIG at an empty file keeps a developer's own keymanager.toml out of the tests.
  emptyToml = tomlFile('empty.toml', '');
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('loadConfig precedence', () => {
  it('has the documented defaults', () => {
    const config = loadConfig({ env: { KM_CONFIG: emptyToml }, root: dir });
    assert.equal(config.env, 'development');
    assert.equal(config.issuer, 'https://localhost:9443');
    assert.equal(config.port, 9443);
    assert.equal(config.managementPort, 9164);
    assert.equal(config.tls, true);
    assert.equal(config.dataDir, join(dir, '.data'));
    assert.equal(config.keysDir, join(dir, 'keys'));
    assert.equal(config.databaseUrl, undefined);
    assert.equal(config.accessTokenTtl, 3600);
    assert.equal(config.refreshTokenTtl, 86400);
    assert.equal(config.authorizationCodeTtl, 60);
    assert.equal(config.clockSkew, 30);
  });

  it('has every default the README configuration table states, and the table names every setting', () => {
    const config = loadConfig({ env: { KM_CONFIG: emptyToml }, root: dir }) as unknown as Record<string, unknown>;
    const rows = readmeConfigurationTable();
    const byToml = new Map(Object.entries(SETTINGS).map(([name, setting]) => [setting.toml, name]));
    assert.deepEqual(rows.map((r) => r.toml).sort(), [...byToml.keys()].sort(), 'the README table and the settings name the same keys');
    for (const { toml, env, defaultText } of rows) {
      const name = byToml.get(toml)!;
      assert.equal((SETTINGS as Record<string, { env?: string }>)[name]!.env, env, `${toml}: the environment variable the README names`);
      const { expected, derived } = readmeDefault(toml, defaultText);
      if (derived) assert.equal(derived(config as unknown as Config), true, `${toml}: ${defaultText}`);
      else assert.deepEqual(config[name], expected, `${toml}: README says ${defaultText}`);
    }
  });

  it('takes the TOML file over the defaults', () => {
    const path = tomlFile('file.toml', [
      'issuer = "https://auth.example.com"',
      'port = 8443',
      'tls = false',
      'access_token_ttl = 600',
      'clock_skew = 5',
      'database_url = "postgres://file@db.example/km"',
    ].join('\n'));
    const config = loadConfig({ env: { KM_CONFIG: path } });
    assert.equal(config.issuer, 'https://auth.example.com');
    assert.equal(config.port, 8443);
    assert.equal(config.tls, false);
    assert.equal(config.accessTokenTtl, 600);
    assert.equal(config.clockSkew, 5);
    assert.equal(config.databaseUrl, 'postgres://file@db.example/km');
    // Untouched settings keep their defaults.
    assert.equal(config.managementPort, 9164);
  });

  it('takes the environment over the TOML file', () => {
    const path = tomlFile('both.toml', 'port = 8443\naccess_token_ttl = 600\nissuer = "https://file.example"\n');
    const config = loadConfig({
      env: { KM_CONFIG: path, KM_PORT: '7443', KM_ISSUER: 'https://env.example', DATABASE_URL: 'postgresql://env@db.example/km', KM_TLS: 'off' },
    });
    assert.equal(config.port, 7443);
    assert.equal(config.issuer, 'https://env.example');
    assert.equal(config.databaseUrl, 'postgresql://env@db.example/km');
    assert.equal(config.tls, false);
    assert.equal(config.accessTokenTtl, 600, 'a key the environment does not set still comes from the file');
  });

  it('treats an empty environment variable as unset', () => {
    const path = tomlFile('port.toml', 'port = 8443\n');
    assert.equal(loadConfig({ env: { KM_CONFIG: path, KM_PORT: '' } }).port, 8443);
  });

  it('applies overrides last', () => {
    const path = tomlFile('over.toml', 'port = 8443\n');
    const config = loadConfig({ env: { KM_CONFIG: path, KM_PORT: '7443' }, overrides: { port: 6443 } });
    assert.equal(config.port, 6443);
  });

  it('returns a frozen object', () => {
    const config = loadConfig({ env: { KM_CONFIG: emptyToml } });
    assert.ok(Object.isFrozen(config));
    assert.throws(() => {
      (config as { port: number }).port = 1;
    }, TypeError);
    assert.equal(config.port, 9443);
  });

  it('declares an environment variable for every scalar setting (the management user list is TOML only)', () => {
    for (const [name, setting] of Object.entries(SETTINGS) as [string, { env?: string }][]) {
      if (name === 'managementUsers') assert.equal(setting.env, undefined);
      else assert.match(setting.env ?? '', /^(KM_[A-Z_]+|DATABASE_URL)$/, name);
    }
  });
});

describe('loadConfig refuses wrong values with a ConfigError naming the key', () => {
  it('a port that is not a number', () => {
    assertRefused({ KM_CONFIG: emptyToml, KM_PORT: 'abc' }, 'KM_PORT');
    assertRefused({ KM_CONFIG: emptyToml, KM_PORT: '70000' }, 'KM_PORT');
    assertRefused({ KM_CONFIG: emptyToml, KM_MANAGEMENT_PORT: '-1' }, 'KM_MANAGEMENT_PORT');
  });

  it('an issuer that is not an absolute URL', () => {
    assertRefused({ KM_CONFIG: emptyToml, KM_ISSUER: 'not-a-url' }, 'KM_ISSUER');
    // RFC 8414 §2: the issuer has no query or fragment.
    assertRefused({ KM_CONFIG: emptyToml, KM_ISSUER: 'https://auth.example?x=1' }, 'KM_ISSUER');
    assertRefused({ KM_CONFIG: emptyToml, KM_ISSUER: 'https://auth.example#f' }, 'KM_ISSUER');
  });

  it('a lifetime that is not a positive number of seconds', () => {
    assertRefused({ KM_CONFIG: emptyToml, KM_ACCESS_TOKEN_TTL: '0' }, 'KM_ACCESS_TOKEN_TTL');
    assertRefused({ KM_CONFIG: emptyToml, KM_ACCESS_TOKEN_TTL: '1.5' }, 'KM_ACCESS_TOKEN_TTL');
    assertRefused({ KM_CONFIG: emptyToml, KM_REFRESH_TOKEN_TTL: 'soon' }, 'KM_REFRESH_TOKEN_TTL');
    assertRefused({ KM_CONFIG: emptyToml, KM_CLOCK_SKEW: '-5' }, 'KM_CLOCK_SKEW');
  });

  it('a switch or choice outside its values', () => {
    assertRefused({ KM_CONFIG: emptyToml, KM_TLS: 'maybe' }, 'KM_TLS');
    assertRefused({ KM_CONFIG: emptyToml, KM_ENV: 'staging' }, 'KM_ENV');
    assertRefused({ KM_CONFIG: emptyToml, DATABASE_URL: 'mysql://db/km' }, 'DATABASE_URL');
  });

  it('a switch or choice outside its values: the message lists the values accepted', () => {
    const onOff = 'expected one of on, off, true, false, yes, no, 0, 1';
    const cases: [string, string, string][] = [
      ['KM_TLS', 'maybe', onOff],
      ['KM_TRUST_PROXY', 'perhaps', onOff],
      ['KM_MANAGEMENT_TOKEN_STORE_REMOVE_OLDEST_ON_OVERFLOW', '2', onOff],
      ['KM_ENV', 'staging', 'expected one of development, production'],
      ['KM_LOG_LEVEL', 'loud', 'expected one of trace, debug, info, warn, error, fatal, silent'],
      ['KM_MANAGEMENT_AUTH', 'digest', 'expected one of jwt, basic'],
      ['KM_SIGNING_ALGORITHM', 'HS256', 'expected one of RS256, PS256, ES256, EdDSA'],
    ];
    for (const [variable, value, expected] of cases) {
      assert.equal(assertRefused({ KM_CONFIG: emptyToml, [variable]: value }, variable), `config: ${variable}: ${expected} (got "${value}")`);
    }
    // The same from the file, where a switch may also be a TOML boolean.
    const path = tomlFile('switch.toml', 'tls = "maybe"\n');
    assert.equal(assertRefused({ KM_CONFIG: path }, 'tls'), `config: ${path}: tls: ${onOff} (got "maybe")`);
  });

  it('a management user\'s role: names the entry and the values, and never prints the entry (it may hold a password)', () => {
    const path = tomlFile('roles.toml', '[[management.users]]\nusername = "ops"\npassword = "hunter2hunter2"\nroles = ["root"]\n');
    const message = assertRefused({ KM_CONFIG: path }, 'management.users');
    assert.equal(message, `config: ${path}: management.users: [0].roles[0]: expected one of admin, auditor`);
  });

  it('a wrong value in the TOML file, naming the file and the key', () => {
    const path = tomlFile('bad-value.toml', 'port = "abc"\n');
    const message = assertRefused({ KM_CONFIG: path }, 'port');
    assert.ok(message.includes(path), message);
  });

  it('an unknown key in the TOML file', () => {
    const path = tomlFile('unknown.toml', 'port = 8443\ncolour = "blue"\n');
    const message = assertRefused({ KM_CONFIG: path }, 'colour');
    assert.ok(message.includes(path), message);
  });

  it('a TOML file that is not TOML', () => {
    const path = tomlFile('broken.toml', 'port = = 1\n[\n');
    assertRefused({ KM_CONFIG: path }, path);
  });

  it('a KM_CONFIG that cannot be read', () => {
    assertRefused({ KM_CONFIG: join(dir, 'does-not-exist.toml') }, 'KM_CONFIG');
    assertRefused({ KM_CONFIG: dir }, 'KM_CONFIG'); // a directory
  });
});

describe('relative paths resolve against the project root', () => {
  it('data_dir, keys_dir, the TLS and CA files, and password_file, from the file or the environment', () => {
    const path = tomlFile('paths.toml', [
      'data_dir = "var/data"', 'tls_cert = "tls/cert.pem"', 'tls_key = "/etc/km/key.pem"',
      '[[management.users]]', 'username = "ops"', 'password_file = "secrets/ops"', 'roles = ["admin"]',
    ].join('\n'));
    const config = loadConfig({ env: { KM_CONFIG: path, KM_KEYS_DIR: '../shared/keys', KM_CLIENT_CA: 'ca.pem' }, root: '/srv/km' });
    assert.equal(config.dataDir, '/srv/km/var/data');
    assert.equal(config.keysDir, '/srv/shared/keys');
    assert.equal(config.tlsCertFile, '/srv/km/tls/cert.pem');
    assert.equal(config.tlsKeyFile, '/etc/km/key.pem', 'an absolute path stays as it is');
    assert.equal(config.clientCaFile, '/srv/km/ca.pem');
    assert.equal(config.managementUsers[0]?.password_file, '/srv/km/secrets/ops');
  });

  it('KM_CONFIG too', () => {
    tomlFile('relative.toml', 'port = 8443\n');
    assert.equal(loadConfig({ env: { KM_CONFIG: 'relative.toml' }, root: dir }).port, 8443);
  });
});

describe('the issuer, when it is not set, follows the public listener', () => {
  const issuer = (env: NodeJS.ProcessEnv) => loadConfig({ env: { KM_CONFIG: emptyToml, ...env } }).issuer;

  it('KM_PORT, KM_TLS and KM_HOST', () => {
    assert.equal(issuer({ KM_PORT: '8443' }), 'https://localhost:8443');
    assert.equal(issuer({ KM_PORT: '8080', KM_TLS: 'off' }), 'http://localhost:8080');
    assert.equal(issuer({ KM_PORT: '443' }), 'https://localhost', 'the scheme\'s own port is left out');
    assert.equal(issuer({ KM_HOST: '127.0.0.1', KM_PORT: '9000' }), 'https://127.0.0.1:9000');
    assert.equal(issuer({ KM_HOST: '::1', KM_PORT: '9000' }), 'https://[::1]:9000');
    assert.equal(issuer({ KM_HOST: '::' }), 'https://localhost:9443', 'a wildcard address is reached as localhost');
  });

  it('from the file as well', () => {
    const path = tomlFile('port-only.toml', 'port = 7443\ntls = false\n');
    assert.equal(loadConfig({ env: { KM_CONFIG: path } }).issuer, 'http://localhost:7443');
  });

  it('a set issuer wins, whatever the port (a proxy in front)', () => {
    assert.equal(issuer({ KM_PORT: '8443', KM_ISSUER: 'https://auth.example.com' }), 'https://auth.example.com');
  });

  it('port 0 (any free port) needs the issuer set', () => {
    assert.equal(assertRefused({ KM_CONFIG: emptyToml, KM_PORT: '0' }, 'KM_ISSUER'),
      'config: KM_ISSUER: with port 0 (any free port) the issuer cannot follow the port; set KM_ISSUER');
  });
});

describe('production mode', () => {
  const production = { KM_ENV: 'production', DATABASE_URL: 'postgres://km@db.example/km', KM_ISSUER: 'https://auth.example.com' };

  it('accepts an https issuer with an external database', () => {
    const config = loadConfig({ env: { KM_CONFIG: emptyToml, ...production } });
    assert.equal(config.env, 'production');
    assert.equal(config.issuer, 'https://auth.example.com');
  });

  it('refuses an http issuer', () => {
    assertRefused({ KM_CONFIG: emptyToml, ...production, KM_ISSUER: 'http://auth.example.com' }, 'KM_ISSUER');
  });

  it('refuses to run without DATABASE_URL (the embedded PostgreSQL is for development)', () => {
    const { DATABASE_URL: _unset, ...withoutDatabase } = production;
    assertRefused({ KM_CONFIG: emptyToml, ...withoutDatabase }, 'DATABASE_URL');
  });

  it('the same settings are accepted in development', () => {
    const config = loadConfig({ env: { KM_CONFIG: emptyToml, KM_ISSUER: 'http://localhost:9443' } });
    assert.equal(config.env, 'development');
    assert.equal(config.databaseUrl, undefined);
  });
});

describe('the server refuses a wrong value at start', () => {
  it('exits with code 2 and one line on stderr naming KM_PORT', async () => {
    const child = spawn(process.execPath, ['src/main.ts'], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        KM_CONFIG: emptyToml,
        KM_PORT: 'abc',
        // Should the value be accepted after all, fail fast instead of starting a real server.
        DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
        KM_TLS: 'off',
        KM_MANAGEMENT_PORT: '0',
        KM_KEYS_DIR: join(dir, 'keys'),
        KM_LOG_LEVEL: 'silent',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8'); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
    const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));

    assert.equal(code, 2, `stderr: ${stderr}`);
    assert.equal(stdout, '');
    const lines = stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `expected one line, got: ${stderr}`);
    assert.match(lines[0] ?? '', /KM_PORT/);
    assert.ok(stderr.endsWith('\n'));
    assert.doesNotMatch(stderr, /\bat .+:\d+:\d+/, 'a stack trace');
  });
});
