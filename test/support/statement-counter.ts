// Counts the SQL statements a server sends to PostgreSQL, read off the wire: a relay in front
// of PostgreSQL that parses what clients send (the frontend side of the protocol, PostgreSQL
// docs "Message Formats") and counts each simple Query ('Q') and each Execute ('E') of the
// extended protocol — BEGIN and COMMIT included, since each is a round trip too. It knows
// nothing of the code under test. Connections that issue LISTEN (the notification listener,
// with its pings and acknowledgements) are not counted: they are not on any request's path.
import { startTcpProxy } from './tcp-proxy.ts';

export interface StatementCounter {
  port: number;
  /** Statements sent on counted connections since the last reset. */
  count(): number;
  /** The text of each Query and Parse message since the last reset, for a failure message. */
  texts(): string[];
  reset(): void;
  close(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;

export async function startStatementCounter(targetHost: string, targetPort: number): Promise<StatementCounter> {
  const connections = new Set<{ listens: boolean; statements: number; texts: string[] }>();

  const proxy = await startTcpProxy(targetHost, targetPort, () => {
    const state = { listens: false, statements: 0, texts: [] as string[] };
    connections.add(state);
    let started = false;
    let pending = Buffer.alloc(0);

    return (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (!started) {
          // Untyped: int32 length, int32 code. SSL and GSS requests come before the startup.
          if (pending.length < 8) return;
          const length = pending.readInt32BE(0);
          if (pending.length < length) return;
          const code = pending.readInt32BE(4);
          if (code !== SSL_REQUEST && code !== GSSENC_REQUEST) started = true;
          pending = pending.subarray(length);
          continue;
        }
        if (pending.length < 5) return;
        const type = String.fromCharCode(pending[0]!);
        const length = pending.readInt32BE(1);
        if (pending.length < 1 + length) return;
        const body = pending.subarray(5, 1 + length);
        if (type === 'Q') {
          const text = body.toString('utf8').replace(/\0$/, '');
          if (/^\s*listen\s/i.test(text)) state.listens = true;
          state.statements += 1;
          state.texts.push(text);
        } else if (type === 'P') {
          // Parse: statement name, NUL, query text, NUL, …
          const nameEnd = body.indexOf(0);
          const text = body.subarray(nameEnd + 1, body.indexOf(0, nameEnd + 1)).toString('utf8');
          if (/^\s*listen\s/i.test(text)) state.listens = true;
          state.texts.push(text);
        } else if (type === 'E') {
          state.statements += 1;
        }
        pending = pending.subarray(1 + length);
      }
    };
  });
  const counted = () => [...connections].filter((c) => !c.listens);
  return {
    port: proxy.port,
    count: () => counted().reduce((n, c) => n + c.statements, 0),
    texts: () => counted().flatMap((c) => c.texts),
    reset() {
      for (const c of connections) {
        c.statements = 0;
        c.texts = [];
      }
    },
    close: () => proxy.close(),
  };
}
