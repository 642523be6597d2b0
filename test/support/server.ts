// Starts real keymanager instances in this process (plain HTTP on free ports, TLS tested
// separately), each with its own keys directory unless one is shared on purpose.
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { loadConfig, type Config } from '../../src/config/index.ts';
import { startServer, type RunningServer } from '../../src/main.ts';

export interface TestServer extends RunningServer {
  url: string;
  keysDir: string;
  /** Every log line this instance wrote. */
  logs: string[];
  /** A place in the log, to be given to `logsSince` after an action. */
  logMark(): number;
  /** The lines written after `mark`, parsed: what one action logged, and nothing from before it. */
  logsSince(mark: number): LogEntry[];
}

/** One JSON log line, with its text kept for messages and searches. */
export type LogEntry = Record<string, unknown> & { msg?: string; event?: string; line: string };

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix = 'km-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startTestServer(
  databaseUrl: string,
  overrides: Partial<Record<keyof Config, unknown>> = {},
): Promise<TestServer> {
  const port = await freePort();
  const keysDir = (overrides.keysDir as string | undefined) ?? tempDir('km-keys-');
  const config = loadConfig({
    env: {},
    overrides: {
      tls: false,
      host: '127.0.0.1',
      port,
      issuer: `http://127.0.0.1:${port}`,
      managementPort: 0,
      keysDir,
      // Its own data directory: the development management admin's password file goes there.
      dataDir: tempDir('km-data-'),
      databaseUrl,
      databasePoolSize: 4,
      logLevel: 'debug',
      ...overrides,
    },
  });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      logs.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const server = await startServer(config, pino({ level: 'debug' }, sink));
  return {
    ...server, url: server.publicUrl, keysDir, logs,
    logMark: () => logs.length,
    logsSince: (mark) => logs.slice(mark).map((line) => ({ ...(JSON.parse(line) as Record<string, unknown>), line })),
  };
}
