// Every walk-through of the README files, run as written: the ```sh blocks marked
// `<!-- walkthrough: NAME -->` (test/support/readme.ts) are run in order by one bash session —
// as a reader pastes them into one terminal — against a real server started here on a fresh
// database, from a fresh copy of the project directory (its own keys/ and .data/, the
// repository's package.json, src/ and node_modules), with `set -e -o pipefail`: a command
// that fails fails the walk-through.
//
// The one change made to the text: the server listens on free ports, not 9443 and 9164, so
// `localhost:9443` becomes `localhost:<port>` and `localhost:9164` / `127.0.0.1:9164`
// become the management port's, in the commands and in the outputs shown. DATABASE_URL names
// the test database, which `keymgr` and db/README.md's commands honour.
//
// A block followed by an output block (```json, or a plain ```) must print that output:
// JSON values are compared by structure — the same keys, the same values, except values
// that differ on every run (ids, secrets, tokens, times) and strings written with "…",
// which only need to be there; other lines must be equal, a "…" standing for any text.
//
// The browser step of the authorization code flow is done by Debian's chromium (as
// test/code-flow/browser.test.ts does): it opens the URL the walk-through prints, signs in as
// the README's user, allows access, and the code it is redirected with is typed into the
// block that reads it. A block marked `after-restart` runs after the server is restarted, as
// the README tells the reader to.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { createTestDatabase, type TestDatabase } from '../support/database.ts';
import { freePort, startTestServer, tempDir, type TestServer } from '../support/server.ts';
import { REPO_ROOT } from '../support/cli.ts';
import { fencedBlocks, walkthroughBlocks, type FencedBlock } from '../support/readme.ts';

const WALKTHROUGHS = [
  { file: 'README.md', name: 'main' },
  { file: 'README.md', name: 'management' },
  { file: 'db/README.md', name: 'sql-client' },
  { file: 'keys/README.md', name: 'keys-rotate' },
];

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'];
const BLOCK_DEADLINE_MS = 100_000;

/** Values that differ on every run: compared by type only. */
const VARYING_KEYS = new Set([
  'client_id', 'client_secret', 'access_token', 'refresh_token', 'id_token', 'AccessToken', 'kid', 'n', 'x', 'y',
  'jti', 'sub', 'exp', 'iat', 'nbf', 'id', 'created_at', 'updated_at', 'secret_created_at', 'sha256',
]);

// ---- comparing what a block printed with what the README shows ----

/** The top-level JSON values of a text, one after another (pretty-printed or one per line). */
function jsonValues(text: string): unknown[] {
  const values: unknown[] = [];
  let start = -1;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') {
      if (depth++ === 0) start = i;
    } else if (c === '}' || c === ']') {
      if (--depth === 0) values.push(JSON.parse(text.slice(start, i + 1)));
    } else if (depth === 0 && !/\s/.test(c)) {
      throw new Error(`not JSON at "${text.slice(i, i + 40)}"`);
    }
  }
  if (depth !== 0) throw new Error('unterminated JSON');
  return values;
}

function matchesShown(shown: unknown, actual: unknown, path: string, problems: string[]): void {
  const key = path.split('.').pop() ?? '';
  if (typeof shown === 'string' && shown.includes('…')) {
    if (typeof actual !== 'string' || !actual) problems.push(`${path}: expected a string, got ${JSON.stringify(actual)}`);
    return;
  }
  if (VARYING_KEYS.has(key) && (typeof shown === 'string' || typeof shown === 'number')) {
    if (typeof actual !== typeof shown) problems.push(`${path}: expected a ${typeof shown}, got ${JSON.stringify(actual)}`);
    return;
  }
  if (Array.isArray(shown)) {
    if (!Array.isArray(actual) || actual.length !== shown.length) {
      problems.push(`${path}: expected ${JSON.stringify(shown)}, got ${JSON.stringify(actual)}`);
      return;
    }
    shown.forEach((v, i) => matchesShown(v, actual[i], `${path}[${i}]`, problems));
    return;
  }
  if (shown && typeof shown === 'object') {
    if (!actual || typeof actual !== 'object' || Array.isArray(actual)) {
      problems.push(`${path}: expected an object, got ${JSON.stringify(actual)}`);
      return;
    }
    const want = Object.keys(shown).sort();
    const got = Object.keys(actual).sort();
    if (want.join() !== got.join()) problems.push(`${path}: keys ${JSON.stringify(got)}, the README shows ${JSON.stringify(want)}`);
    for (const k of want) if (k in actual) matchesShown((shown as Record<string, unknown>)[k], (actual as Record<string, unknown>)[k], `${path}.${k}`, problems);
    return;
  }
  if (shown !== actual) problems.push(`${path}: expected ${JSON.stringify(shown)}, got ${JSON.stringify(actual)}`);
}

/** Plain output as lines of text and JSON values (a value may span lines, pretty-printed). */
function outputItems(text: string): ({ line: string } | { json: unknown })[] {
  const lines = text.split('\n').filter((l) => l.trim());
  const items: ({ line: string } | { json: unknown })[] = [];
  for (let i = 0; i < lines.length; i++) {
    let parsed: { json: unknown; end: number } | undefined;
    if (/^\s*[[{]/.test(lines[i]!)) {
      for (let j = i; j < lines.length && !parsed; j++) {
        try {
          parsed = { json: JSON.parse(lines.slice(i, j + 1).join('\n')), end: j };
        } catch {
          // not complete yet
        }
      }
    }
    if (parsed) {
      items.push({ json: parsed.json });
      i = parsed.end;
    } else items.push({ line: lines[i]! });
  }
  return items;
}

function lineMatches(shown: string, actual: string): boolean {
  // Each "…" stands for any text: the pieces between must appear in order, the first at the start, the last at the end.
  const pieces = shown.split('…');
  if (pieces.length === 1) return shown === actual;
  let at = 0;
  for (const [i, piece] of pieces.entries()) {
    if (i === 0) {
      if (!actual.startsWith(piece)) return false;
      at = piece.length;
    } else if (i === pieces.length - 1) {
      return actual.length - piece.length >= at && actual.endsWith(piece);
    } else {
      const found = actual.indexOf(piece, at);
      if (found < 0) return false;
      at = found + piece.length;
    }
  }
  return true;
}

/** What differs between the output shown in the README and the block's stdout. */
function outputProblems(shown: FencedBlock, stdout: string, substitute: (t: string) => string): string[] {
  const expected = substitute(shown.text);
  const problems: string[] = [];
  if (shown.lang === 'json') {
    let want: unknown[];
    try {
      want = jsonValues(expected);
    } catch (err) {
      return [`the README's output block is not JSON (${(err as Error).message})`];
    }
    let got: unknown[];
    try {
      got = jsonValues(stdout);
    } catch (err) {
      return [`the output is not JSON (${(err as Error).message})`];
    }
    if (got.length !== want.length) return [`${got.length} JSON values printed, the README shows ${want.length}`];
    want.forEach((w, i) => matchesShown(w, got[i], `#${i + 1}`, problems));
    return problems;
  }
  const want = outputItems(expected);
  const got = outputItems(stdout);
  if (got.length !== want.length) return [`${got.length} lines or JSON values printed, the README shows ${want.length}`];
  want.forEach((w, i) => {
    const g = got[i]!;
    if ('json' in w && 'json' in g) matchesShown(w.json, g.json, `#${i + 1}`, problems);
    else if ('line' in w && 'line' in g) {
      if (!lineMatches(w.line, g.line)) problems.push(`#${i + 1}: "${g.line}", the README shows "${w.line}"`);
    } else problems.push(`#${i + 1}: ${JSON.stringify(g)}, the README shows ${JSON.stringify(w)}`);
  });
  return problems;
}

// ---- the terminal ----

/** One bash, reading commands from its stdin; each block runs from a file with its own stdin and output files. */
class Terminal {
  private readonly bash: ChildProcess;
  private transcript = '';
  private exited: Promise<number>;
  private count = 0;
  private readonly dir: string;

  constructor(dir: string, cwd: string, env: NodeJS.ProcessEnv) {
    this.dir = dir;
    this.bash = spawn('bash', ['--noprofile', '--norc'], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.bash.stdout!.setEncoding('utf8').on('data', (d: string) => (this.transcript += d));
    this.bash.stderr!.setEncoding('utf8').on('data', (d: string) => (this.transcript += d));
    this.exited = new Promise((resolve) => this.bash.on('exit', (code) => resolve(code ?? 1)));
    this.bash.stdin!.write('set -e -o pipefail\n');
  }

  async run(script: string, input = ''): Promise<{ stdout: string; stderr: string }> {
    const n = ++this.count;
    const file = (ext: string) => join(this.dir, `block-${n}.${ext}`);
    writeFileSync(file('sh'), script);
    writeFileSync(file('in'), input);
    const marker = `@@walkthrough block ${n} done@@`;
    this.bash.stdin!.write(`. '${file('sh')}' < '${file('in')}' > '${file('out')}' 2> '${file('err')}'; echo '${marker}'\n`);
    let onData: (() => void) | undefined;
    let deadline: NodeJS.Timeout | undefined;
    const outcome = await Promise.race([
      new Promise<'done'>((resolve) => {
        onData = () => this.transcript.includes(marker) && resolve('done');
        this.bash.stdout!.on('data', onData);
        onData();
      }),
      this.exited.then((code) => `bash exited with ${code}`),
      new Promise<string>((resolve) => (deadline = setTimeout(() => resolve(`no end after ${BLOCK_DEADLINE_MS} ms`), BLOCK_DEADLINE_MS))),
    ]);
    this.bash.stdout!.off('data', onData!);
    clearTimeout(deadline);
    const read = (ext: string) => (existsSync(file(ext)) ? readFileSync(file(ext), 'utf8') : '');
    const stdout = read('out');
    const stderr = read('err');
    assert.equal(outcome, 'done', `the block failed (${outcome})\n--- stdout\n${stdout}\n--- stderr\n${stderr}`);
    return { stdout, stderr };
  }

  close(): void {
    this.bash.stdin!.end();
    this.bash.kill();
  }
}

// ---- the browser step ----

/** Signs in at the authorization URL as the user, allows access, and returns the code the client was sent. */
async function signInWithChromium(url: string, username: string, password: string): Promise<string> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    context.setDefaultTimeout(30_000);
    const page = await context.newPage();
    await page.goto(url);
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill(password);
    await Promise.all([page.waitForURL((u) => u.pathname.startsWith('/interaction/')), page.getByRole('button', { name: 'Sign in' }).click()]);
    // The redirect URI of the walk-through: nothing need listen there; the address the browser
    // goes to is what the reader copies the code from.
    const [redirect] = await Promise.all([
      page.waitForRequest((r) => r.url().startsWith('http://127.0.0.1:8080/callback?')),
      page.getByRole('button', { name: 'Allow' }).click(),
    ]);
    const landed = new URL(redirect.url());
    assert.equal(landed.searchParams.get('state'), 'xyz');
    const code = landed.searchParams.get('code');
    assert.ok(code, `no code in ${landed.href}`);
    return code;
  } finally {
    await browser.close();
  }
}

// ---- the walk-throughs ----

it('every walk-through marker names a walk-through this file runs', () => {
  for (const file of ['README.md', 'db/README.md', 'keys/README.md', 'bench/README.md']) {
    for (const block of fencedBlocks(file).filter((b) => b.walkthrough)) {
      assert.ok(WALKTHROUGHS.some((w) => w.file === file && w.name === block.walkthrough), `${file}:${block.line}: walk-through "${block.walkthrough}" is not run`);
      assert.equal(block.lang, 'sh', `${file}:${block.line}: a walk-through block is sh`);
    }
  }
});

for (const { file, name } of WALKTHROUGHS) {
  describe(`${file}: walk-through "${name}", as written`, () => {
    const blocks = walkthroughBlocks(file, name);
    let database: TestDatabase;
    let server: TestServer | undefined;
    let terminal: Terminal;
    let project: string;
    let port: number;
    let managementPort: number;
    let failed: string | undefined;
    let pendingInput = '';

    const substitute = (text: string) => text
      .replaceAll('localhost:9443', `localhost:${port}`)
      .replaceAll('localhost:9164', `localhost:${managementPort}`)
      .replaceAll('127.0.0.1:9164', `127.0.0.1:${managementPort}`);

    async function startServer(): Promise<void> {
      server = await startTestServer(database.url, {
        tls: true, port, issuer: `https://localhost:${port}`, managementPort,
        keysDir: join(project, 'keys'), dataDir: join(project, '.data'),
      });
    }

    before(async () => {
      assert.ok(blocks.length > 0, `${file} has no blocks of walk-through "${name}"`);
      // A fresh clone, as far as the walk-through can tell: the project's files, no keys, no data.
      project = tempDir('km-walkthrough-');
      copyFileSync(join(REPO_ROOT, 'package.json'), join(project, 'package.json'));
      for (const linked of ['node_modules', 'src', 'db']) symlinkSync(join(REPO_ROOT, linked), join(project, linked));
      mkdirSync(join(project, 'keys'), { mode: 0o755 });
      database = await createTestDatabase();
      [port, managementPort] = [await freePort(), await freePort()];
      await startServer();
      const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KM_') && k !== 'DATABASE_URL'));
      terminal = new Terminal(tempDir('km-terminal-'), project, {
        ...env,
        PATH: `${join(REPO_ROOT, 'node_modules', '.bin')}:${process.env.PATH}`,
        DATABASE_URL: database.url,
      });
    });

    after(async () => {
      terminal?.close();
      await server?.stop();
      await database?.drop();
      rmSync(project, { recursive: true, force: true });
    });

    for (const [i, block] of blocks.entries()) {
      it(`${file}:${block.line} (${block.heading})`, async () => {
        assert.equal(failed, undefined, `an earlier block could not run: ${failed}`);
        if (block.afterRestart) {
          await server?.stop();
          server = undefined;
          await startServer();
        }
        let stdout: string;
        try {
          ({ stdout } = await terminal.run(substitute(block.text), pendingInput));
        } catch (err) {
          // The session is gone or stuck: what follows cannot run.
          failed = `${file}:${block.line}`;
          throw err;
        }
        pendingInput = '';
        const authorize = /^https:\/\/localhost:\d+\/authorize\?\S+$/m.exec(stdout)?.[0];
        if (authorize) {
          try {
            const user = /printf '([^']+)' \| npx keymgr user create --username (\w+)/.exec(blocks.map((b) => b.text).join('\n'));
            assert.ok(user, 'the walk-through creates the user who signs in');
            assert.ok(blocks[i + 1]?.text.includes('read -r'), 'the block after the browser step reads the code');
            pendingInput = `${await signInWithChromium(authorize, user[2]!, user[1]!)}\n`;
          } catch (err) {
            failed = `the browser step after ${file}:${block.line}`;
            throw err;
          }
        }
        // A wrong output is reported, and the walk-through goes on: its commands did run.
        if (block.output) {
          const problems = outputProblems(block.output, stdout, substitute);
          assert.deepEqual(problems, [], `output differs from ${file}:${block.output.line}\n--- printed\n${stdout}`);
        }
      });
    }
  });
}
