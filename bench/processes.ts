// Child processes for the bench: the servers under test run apart from the load generator so
// that /proc/<pid>/stat charges each one only with its own CPU time.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface Child {
  name: string;
  pid: number;
  /** The last lines the process wrote to stdout/stderr, for error messages. */
  output(): string;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();

// If the runner dies (an exception, Ctrl-C), no server is left behind holding a port.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export function startChild(name: string, script: string, env: NodeJS.ProcessEnv, cwd: string, nodeArgs: string[] = []): Child {
  const child = spawn(process.execPath, [...nodeArgs, script], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`${name}: could not be started`);
  running.add(child);
  const lines: string[] = [];
  const keep = (chunk: Buffer) => {
    lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    lines.splice(0, Math.max(0, lines.length - 40));
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => {
    running.delete(child);
    resolve();
  }));
  return {
    name,
    pid: child.pid,
    output: () => lines.join('\n'),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Runs a script to completion and returns its stdout; its stderr goes into the error.
 * `input` (a password, say) goes to its standard input.
 */
export function runCommand(script: string, args: string[], env: NodeJS.ProcessEnv, cwd: string, input?: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [script, ...args], { env, cwd, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${script} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
    child.stdin?.end(input ?? '');
  });
}

/** A port free right now on 127.0.0.1 (the OS picks it; the race with other programs is tolerable here). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Polls `url` until it answers 200; fails with the child's output if it exits or takes too long. */
export async function waitForHttp(url: string, child: Child, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (!isAlive(child.pid)) break;
    await sleep(200);
  }
  throw new Error(`${child.name} did not answer ${url}:\n${child.output()}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// utime and stime are counted in clock ticks of sysconf(_SC_CLK_TCK), almost always 100.
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU time (user + system, all threads) a process has used so far, in microseconds, or
 * undefined when it is gone or not visible from here.
 */
export function processCpuMicros(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: count fields after its ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1e6) / CLOCK_TICKS;
}

function childPids(pid: number): number[] {
  try {
    return execFileSync('ps', ['--ppid', String(pid), '-o', 'pid='], { encoding: 'utf8' }).split('\n').map((l) => Number(l.trim())).filter(Boolean);
  } catch {
    return []; // no children
  }
}

/** A process's CPU time with its direct children's (the workers of a KM_WORKERS>1 server). */
export function processTreeCpuMicros(pid: number): number | undefined {
  const own = processCpuMicros(pid);
  if (own === undefined) return undefined;
  return childPids(pid).reduce((sum, child) => sum + (processCpuMicros(child) ?? 0), own);
}

/** Resident set size (VmRSS) in bytes, or undefined when the process is gone. */
export function processRssBytes(pid: number): number | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  return kb === undefined ? undefined : Number(kb) * 1024;
}

/**
 * RSS of a process and its direct children (a KM_WORKERS>1 supervisor and its workers).
 * Pages shared between them (the node binary, copy-on-write) count once per process, as the
 * kernel reports them: an upper bound on what the server holds.
 */
export function processTreeRssBytes(pid: number): number | undefined {
  const own = processRssBytes(pid);
  if (own === undefined) return undefined;
  return childPids(pid).reduce((sum, child) => sum + (processRssBytes(child) ?? 0), own);
}

export const clockTicksPerSecond = CLOCK_TICKS;
