// A TCP relay in front of PostgreSQL, so a test can take the database away from a running
// server (and give it back) without stopping the shared PostgreSQL.
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  port: number;
  /** Drops every relayed connection and refuses new ones: what a stopped PostgreSQL looks like. */
  cut(): Promise<void>;
  /**
   * PostgreSQL goes away without a word — its host crashed, or the network to it failed while
   * it restarted: its sessions end, but the server's side of each connection is neither closed
   * nor answered, and new connections are accepted and never answered.
   */
  silence(): void;
  /**
   * Relays again on the same port. Connections left open by silence() are reset, as a host that
   * restarted resets connections it does not know: at once those that sent anything meanwhile
   * (TCP sends it again), the others as soon as they send anything.
   */
  restore(): Promise<void>;
  close(): Promise<void>;
  /**
   * The next time a client sends bytes that `matches` (read as latin1 text), the server's
   * answer to them is lost: the connection breaks once PostgreSQL has done the work and before
   * its answer reaches the client, as when a network fails at that moment. Once.
   */
  loseReplyTo(matches: (sent: string) => boolean): void;
  /**
   * The next time a client sends bytes that `matches`, that connection stalls: those bytes and
   * all that follow, either way, are held back, and both sides stay open — the network between
   * them went quiet mid-transaction, and PostgreSQL sees a session idle in its transaction. Once.
   */
  stallOn(matches: (sent: string) => boolean): void;
}

/** Sees each relayed connection's bytes from client to server, as they pass. */
export type Tap = () => (chunk: Buffer) => void;

export async function startTcpProxy(targetHost: string, targetPort: number, tap?: Tap): Promise<TcpProxy> {
  /** Each relayed connection's client side and its upstream side. */
  const pairs = new Map<Socket, Socket>();
  /** Client sides of connections that silence() left open, and whether each sent anything since. */
  const silenced = new Map<Socket, { sent: boolean }>();
  let silent = false;
  let loseReplyTo: ((sent: string) => boolean) | undefined;
  let stallOn: ((sent: string) => boolean) | undefined;
  /** Client sides of stalled connections. */
  const stalled = new Set<Socket>();
  /** Client sides whose next answer from the server is to be lost. */
  const losing = new Set<Socket>();
  let server: Server | undefined;
  let port = 0;

  const keepSilent = (client: Socket) => {
    const state = { sent: false };
    silenced.set(client, state);
    const forget = () => silenced.delete(client);
    client.on('error', forget).on('close', forget);
    client.on('data', () => {
      if (silent) state.sent = true;
      else client.resetAndDestroy();
    });
    // unpipe() paused it; what it receives must still be seen.
    client.resume();
  };

  const relay = (client: Socket) => {
    if (silent) return keepSilent(client);
    const upstream = connect(targetPort, targetHost);
    pairs.set(client, upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(client);
      stalled.delete(client);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    const observe = tap?.();
    client.on('data', (chunk: Buffer) => {
      observe?.(chunk);
      if (!stalled.has(client) && stallOn?.(chunk.toString('latin1'))) {
        stallOn = undefined;
        stalled.add(client);
      }
      if (stalled.has(client)) return;
      if (loseReplyTo?.(chunk.toString('latin1'))) {
        loseReplyTo = undefined;
        losing.add(client);
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (stalled.has(client)) return;
      if (losing.delete(client)) drop();
      else client.write(chunk);
    });
  };

  const listen = () => new Promise<void>((resolve, reject) => {
    server = createServer(relay);
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      port = (server!.address() as { port: number }).port;
      resolve();
    });
  });
  const stop = () => new Promise<void>((resolve) => {
    for (const [client, upstream] of pairs) {
      client.destroy();
      upstream.destroy();
    }
    for (const client of silenced.keys()) client.destroy();
    pairs.clear();
    silenced.clear();
    if (!server?.listening) return resolve();
    server.close(() => resolve());
  });
  await listen();
  return {
    get port() {
      return port;
    },
    cut: stop,
    silence() {
      silent = true;
      for (const [client, upstream] of pairs) {
        // PostgreSQL's side ends; nothing of that reaches the client side, which stays open.
        upstream.unpipe(client);
        client.unpipe(upstream);
        for (const s of [client, upstream]) s.removeAllListeners('data').removeAllListeners('close').removeAllListeners('error').on('error', () => {});
        upstream.destroy();
        keepSilent(client);
      }
      pairs.clear();
    },
    async restore() {
      silent = false;
      for (const [client, { sent }] of silenced) if (sent) client.resetAndDestroy();
      if (!server?.listening) await listen();
    },
    close: stop,
    loseReplyTo(matches) {
      loseReplyTo = matches;
    },
    stallOn(matches) {
      stallOn = matches;
    },
  };
}

/** The database URL with its host and port replaced by the proxy's. */
export function viaProxy(databaseUrl: string, proxy: TcpProxy): string {
  const url = new URL(databaseUrl);
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  return url.href;
}
