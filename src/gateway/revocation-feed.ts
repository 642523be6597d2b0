// GET /revocations: Server-Sent Events, one per access token that stopped being valid before
// its expiry, for gateways that cache introspection answers. Events come from the outbox
// table (revocation_events, filled by triggers on every instance and by admin SQL alike); this
// instance reads it when the change listener says it grew, and every second while the
// listener is down, and hands each event to its subscribers in id order. A subscriber that
// reconnects with Last-Event-ID first gets what it missed (kept until the tokens expire).
import { PassThrough } from 'node:stream';
import type { Context } from 'koa';
import type { Logger } from 'pino';
import type { Db } from '../db/database.ts';
import type { ChangeListener } from '../db/notifications.ts';
import { latestRevocationEventId, revocationEventsAfter, type RevocationEvent } from '../store/revocation-events.ts';
import type { IntrospectionCaller } from './introspection.ts';

const BATCH = 500;
/** Beyond this many open streams per instance, new ones are refused (503) rather than starve the rest. */
const MAX_SUBSCRIBERS = 1000;
const POLL_WHILE_UNLISTENED_MS = 1000;

interface Subscriber {
  caller: IntrospectionCaller;
  /** The id of the last event this subscriber has been given (or chose to skip). */
  position: bigint;
  /** Live events held back while the backlog is being sent. */
  held: RevocationEvent[] | null;
  stream: PassThrough;
  /** Asked every heartbeat: the stream ends once the gateway's credentials no longer count. */
  stillAuthorized: () => Promise<boolean>;
  end: () => void;
}

export interface RevocationFeed {
  /** Turns the request into an event stream for an authenticated gateway. */
  subscribe(ctx: Context, caller: IntrospectionCaller, stillAuthorized: () => Promise<boolean>): Promise<void>;
  close(): void;
}

export class FeedFullError extends Error {
  readonly expose = true;
  readonly status = 503;
  readonly error = 'temporarily_unavailable';
  readonly error_description = 'too many revocation feed subscribers on this instance; retry on another';
}

/** An event's wire form: hex SHA-256 of the token (never the token), jti for JWTs, client, expiry. */
function frame(e: RevocationEvent): string {
  const data = {
    sha256: e.token_sha256,
    ...(e.jti ? { jti: e.jti } : {}),
    client_id: e.client_id,
    exp: Math.floor(e.expires_at.getTime() / 1000),
    reason: e.reason,
  };
  return `id: ${e.id}\nevent: revocation\ndata: ${JSON.stringify(data)}\n\n`;
}

function visibleTo(caller: IntrospectionCaller, e: RevocationEvent): boolean {
  const limit = caller.audiences;
  return !limit || (e.audience !== null && limit.includes(e.audience));
}

/** Last-Event-ID: the id of an event of this feed (digits); anything else starts afresh. */
function resumePoint(header: string): bigint | undefined {
  return /^\d{1,19}$/.test(header.trim()) ? BigInt(header.trim()) : undefined;
}

export function createRevocationFeed({ db, changes, logger, heartbeatSeconds }: {
  db: Db; changes: ChangeListener | undefined; logger: Logger; heartbeatSeconds: number;
}): RevocationFeed {
  const subscribers = new Set<Subscriber>();
  /** The newest event handed to subscribers; unknown until the first one subscribes. */
  let seen: bigint | undefined;
  let pumping: Promise<void> | undefined;
  let again = false;

  const offer = (s: Subscriber, e: RevocationEvent) => {
    const id = BigInt(e.id);
    if (id <= s.position) return;
    s.position = id;
    if (visibleTo(s.caller, e)) s.stream.write(frame(e));
  };

  const deliver = (e: RevocationEvent) => {
    for (const s of subscribers) {
      if (s.held) s.held.push(e);
      else offer(s, e);
    }
  };

  /** Reads the outbox past `seen`, in order, until it is exhausted; one run at a time. */
  const pump = (): Promise<void> => {
    if (pumping) {
      again = true;
      return pumping;
    }
    pumping = (async () => {
      do {
        again = false;
        if (subscribers.size === 0 || seen === undefined) continue;
        for (;;) {
          const batch = await revocationEventsAfter(db, seen.toString(), BATCH);
          for (const e of batch) deliver(e);
          if (batch.length) seen = BigInt(batch.at(-1)!.id);
          if (batch.length < BATCH) break;
        }
      } while (again);
    })().catch((err: unknown) => {
      logger.warn({ error: err instanceof Error ? err.message : String(err) }, 'revocation feed could not read new events; retrying');
      again = false;
    }).finally(() => {
      pumping = undefined;
    });
    return pumping;
  };

  changes?.onNotice((topic) => {
    if (topic === 'revocation_events' || topic === undefined) void pump();
  });
  // A notice sent while the listener is down is lost: read on a timer until it is back.
  const poll = setInterval(() => {
    if (!changes?.listening && subscribers.size > 0) void pump();
  }, POLL_WHILE_UNLISTENED_MS);
  poll.unref();
  let checking = false;
  const heartbeat = setInterval(() => {
    for (const s of subscribers) if (!s.held) s.stream.write(': keepalive\n\n');
    if (checking) return;
    checking = true;
    // One subscriber after another (not a burst of queries). A check that cannot be made (the
    // database is down) ends the stream too: the gateway then stops caching until it is back.
    void (async () => {
      for (const s of [...subscribers]) {
        const allowed = await s.stillAuthorized().catch(() => false);
        if (!allowed) {
          logger.info({ client_id: s.caller.client.client_id }, 'revocation feed closed: the gateway\'s credentials no longer count');
          s.end();
        }
      }
    })().finally(() => {
      checking = false;
    });
  }, heartbeatSeconds * 1000);
  heartbeat.unref();

  return {
    async subscribe(ctx, caller, stillAuthorized) {
      if (subscribers.size >= MAX_SUBSCRIBERS) throw new FeedFullError();
      const latest = BigInt(await latestRevocationEventId(db));
      seen ??= latest;
      const resume = resumePoint(ctx.get('last-event-id'));
      const stream = new PassThrough();
      const drop = () => {
        subscribers.delete(subscriber);
        stream.end();
      };
      const subscriber: Subscriber = {
        caller, position: resume !== undefined && resume < latest ? resume : latest, held: [], stream, stillAuthorized, end: drop,
      };
      subscribers.add(subscriber);
      ctx.req.once('close', drop);

      ctx.status = 200;
      ctx.type = 'text/event-stream';
      ctx.set('Cache-Control', 'no-store');
      // Proxies in front must pass events on at once, not buffer them.
      ctx.set('X-Accel-Buffering', 'no');
      ctx.body = stream;
      // Where this stream starts: a client that reconnects sends it back as Last-Event-ID.
      stream.write(`retry: 1000\nid: ${subscriber.position}\n\n`);
      try {
        // What was missed since Last-Event-ID, while live events wait in `held`.
        for (;;) {
          const batch = await revocationEventsAfter(db, subscriber.position.toString(), BATCH);
          for (const e of batch) offer(subscriber, e);
          if (batch.length < BATCH) break;
        }
      } catch (err) {
        drop();
        throw err;
      }
      const held = subscriber.held ?? [];
      subscriber.held = null;
      for (const e of held) offer(subscriber, e);
      logger.info({ client_id: caller.client.client_id, from: subscriber.position.toString() }, 'revocation feed subscribed');
    },
    close() {
      clearInterval(poll);
      clearInterval(heartbeat);
      for (const s of subscribers) s.stream.end();
      subscribers.clear();
    },
  };
}
