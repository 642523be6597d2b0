// Runs the real `keymgr` command line (src/cli/keymgr.ts) in a child process, the way an
// operator would, against the database and keys directory the caller names.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The repository root, where `keymgr` is run from. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface KeymgrResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is JSON. */
  json: any;
}

/**
 * `env` is laid over this process's environment. DATABASE_URL is required so that a test can
 * never fall back on the embedded PostgreSQL under the repository's .data directory.
 */
export async function runKeymgr(args: string[], env: Record<string, string>, input?: string): Promise<KeymgrResult> {
  if (!env.DATABASE_URL) throw new Error('runKeymgr: env.DATABASE_URL is required');
  return runScript('src/cli/keymgr.ts', args, env, { input });
}

/**
 * Runs a script of the repository (`src/main.ts`, …) to its end, as runKeymgr runs keymgr.
 * `stopAfterMs`: a server expected to end by itself is sent SIGTERM if it is still running
 * then, so that a test of a start that should fail cannot hang or leave it behind.
 */
export async function runScript(script: string, args: string[], env: Record<string, string>, { input, stopAfterMs }: { input?: string; stopAfterMs?: number } = {}): Promise<KeymgrResult> {
  const child = spawn(process.execPath, [script, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (input !== undefined) child.stdin!.end(input);
  const stop = stopAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGTERM'), stopAfterMs);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr!.on('data', (chunk: Buffer) => err.push(chunk));
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c, signal) => resolve(c ?? (signal ? 128 : 0)));
  });
  clearTimeout(stop);
  const stdout = Buffer.concat(out).toString('utf8');
  const stderr = Buffer.concat(err).toString('utf8');
  let json: unknown;
  try {
    json = stdout.trim() ? JSON.parse(stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { code, stdout, stderr, json };
}
