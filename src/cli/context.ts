// What every keymgr command shares: the configuration, the database (the same one the server
// uses, embedded or not), and output that is either for people or, with --json, for scripts.
import { ConfigError, loadConfig, type Config } from '../config/index.ts';
import { findProjectRoot } from '../config/project-root.ts';
import { StartupError } from '../config/startup-errors.ts';
import { connectDatabase } from '../db/connect.ts';
import type { Db } from '../db/database.ts';
import { migrate } from '../db/migrator.ts';
import { hostname, userInfo } from 'node:os';
import { recordAuditEvent } from '../store/audit.ts';
import { listenForChanges } from '../db/notifications.ts';

export class CliError extends Error {}

export interface CommandContext {
  config: Config;
  db: Db;
}

export interface OutputOptions {
  json?: boolean;
}

/** The command being run, as the audit trail records it (set by keymgr before each action). */
export interface RunningCommand {
  /** `client create`, `user disable`, … */
  name: string;
  /** What it acts on: its first argument, unless that is a secret (a token value). */
  resourceId: string | null;
  /** The options given (names only, never values). */
  options: string[];
}

let runningCommand: RunningCommand | undefined;

export function noteRunningCommand(command: RunningCommand): void {
  runningCommand = command;
}

const READ_ONLY = /(^| )(list|show)$/;

/** Opens the database, brings the schema up to date, runs the command and closes it again. */
export async function withDatabase<T>(run: (ctx: CommandContext) => Promise<T>): Promise<T> {
  const config = loadProjectConfig();
  const handle = await connectDatabase(config, { applicationName: 'keymgr', createEmbedded: false });
  try {
    await migrate(handle.db);
    const command = runningCommand;
    const audited = command && !READ_ONLY.test(command.name);
    const audit = (outcome: 'success' | 'failure') => audited && recordAuditEvent(handle.db, {
      actorType: 'cli', actor: operatingSystemUser(), source: hostname(), outcome,
      action: `keymgr ${command.name}`, resourceType: command.name.split(' ')[0] ?? null, resourceId: command.resourceId,
      changedFields: command.options,
    }).catch(() => process.stderr.write('keymgr: warning: the audit event could not be recorded\n'));
    try {
      const result = await run({ config, db: handle.db });
      await audit('success');
      if (audited) await syncRunningInstances(handle.url);
      return result;
    } catch (err) {
      if (err instanceof CliError) await audit('failure');
      throw err;
    }
  } finally {
    await handle.close();
  }
}

/**
 * A change is done when every running server has dropped what it cached of the old state
 * (a revoked token, a rotated secret, a disabled client): the command returns only then, or
 * after a short wait when some server does not confirm (it is then not trusting its caches).
 */
async function syncRunningInstances(url: string): Promise<void> {
  const listener = listenForChanges(url, () => {});
  try {
    const deadline = Date.now() + 3000;
    while (!listener.listening && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await listener.sync(2000);
  } finally {
    await listener.close();
  }
}

function operatingSystemUser(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? 'unknown'}`;
  }
}

/** `anywhere`: for a command that reads neither the database nor the keys (hash-password). */
export function withConfig<T>(run: (config: Config) => Promise<T>, { anywhere = false } = {}): Promise<T> {
  return run(loadProjectConfig(anywhere));
}

/**
 * The configuration of the project keymgr is run in, from whichever of its directories.
 * Outside any project it would be a guess at the database: refused, unless DATABASE_URL says.
 */
function loadProjectConfig(anywhere = false): Config {
  const root = findProjectRoot(process.cwd());
  const config = loadConfig({ root: root ?? process.cwd() });
  if (!root && !config.databaseUrl && !anywhere) {
    throw new StartupError(`${process.cwd()} is not inside a keymanager project (no keymanager.toml or keymanager package.json here or above); run keymgr in the project directory, or set DATABASE_URL`);
  }
  return config;
}

/** Runs `run`; an input error of the store (one of `kinds`) becomes a CLI error: exit 1, clear message. */
export async function asCliErrors<T>(kinds: (new (...args: never[]) => Error)[], run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (kinds.some((k) => err instanceof k)) throw new CliError((err as Error).message);
    throw err;
  }
}

/** Prints `value` as JSON, or `human(value)` as text. */
export function output<T>(opts: OutputOptions, value: T, human: (v: T) => string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(value, null, 2)}\n` : `${human(value)}\n`);
}

export function reportError(err: unknown, json: boolean): number {
  const message = err instanceof CliError || err instanceof ConfigError || err instanceof StartupError ? err.message
    : err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  if (json) process.stderr.write(`${JSON.stringify({ error: message })}\n`);
  else process.stderr.write(`keymgr: ${message}\n`);
  return err instanceof CliError ? 1 : 2;
}
