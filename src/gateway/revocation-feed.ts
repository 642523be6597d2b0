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
import type { AuthenticatedGateway } from './caller.ts';

const BATCH = 500;
/** Beyond this many open streams per instance, new ones are refused (503) rather than starve the rest. */
const MAX_SUBSCRIBERS = 1000;
/** … and beyond this many for one client: one gateway cannot take every place. */
const MAX_SUBSCRIBERS_PER_CLIENT = 20;
/** A subscriber that has this much unread in its buffer has stopped reading: it is dropped (it resumes with Last-Event-ID). */
const MAX_UNREAD_BYTES = 1024 * 1024;
/** Live events held for a subscriber while its backlog is sent; more means it cannot keep up. */
const MAX_HELD_EVENTS = 10_000;
const POLL_WHILE_UNLISTENED_MS = 1000;
/** How long a backlog waits for the subscriber to read what was sent before sending more. */
const DRAIN_TIMEOUT_MS = 30_000;
/**
 * Changes that can take a gateway's rights away (its client row, certificates, the scope
 * registry, a token row, a user disabled; or notices missed): every stream's credentials are
 * checked again at once. The heartbeat's check covers the rest (expiry, a user's roles).
 */
const RIGHTS_TOPICS = new Set(['clients', 'client_certificates', 'scopes', 'scope_roles', 'tokens', 'users']);

interface Subscriber {
  caller: IntrospectionCaller;
  /** The id of the last event this subscriber has been given (or chose to skip). */
  position: bigint;
  /** Live events held back while the backlog is being sent. */
  held: RevocationEvent[] | null;
  stream: PassThrough;
  /** Asked every heartbeat and after every change in RIGHTS_TOPICS: the stream ends once the gateway's credentials no longer count. */
  stillAuthorized: () => Promise<boolean>;
  /** A bearer's own token: its revocation event ends the stream. */
  bearerSha256: string | undefined;
  end: (why?: string) => void;
}

export interface RevocationFeed {
  /** Turns the request into an event stream for an authenticated gateway. */
  subscribe(ctx: Context, gateway: AuthenticatedGateway): Promise<void>;
  close(): void;
}

/** 503: the instance has no room for another stream; not a database failure. */
export class FeedFullError extends Error {
  readonly expose = true;
  readonly status = 503;
  readonly overload = true;
  readonly error = 'temporarily_unavailable';
  readonly error_description: string;
  constructor(description: string) {
    super(description);
    this.error_description = description;
  }
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
  /** The client of each stream being opened (its place taken, not yet a subscriber). */
  const joining: string[] = [];
  /** The newest event handed to subscribers; unknown until the first one subscribes. */
  let seen: bigint | undefined;
  let pumping: Promise<void> | undefined;
  let again = false;

  /** Each event is serialised once, whoever it goes to. */
  const frames = new WeakMap<RevocationEvent, string>();
  const frameOf = (e: RevocationEvent) => {
    let f = frames.get(e);
    if (f === undefined) frames.set(e, (f = frame(e)));
    return f;
  };

  /** Never buffers without bound for a reader that does not read: such a one is dropped. */
  const send = (s: Subscriber, text: string) => {
    if (s.stream.writableLength > MAX_UNREAD_BYTES) s.end('it stopped reading');
    else s.stream.write(text);
  };

  const offer = (s: Subscriber, e: RevocationEvent) => {
    // Also before the stream's start: a bearer revoked while its stream was being opened.
    if (e.token_sha256 === s.bearerSha256) return s.end('its bearer token was revoked');
    const id = BigInt(e.id);
    if (id <= s.position) return;
    s.position = id;
    if (visibleTo(s.caller, e)) send(s, frameOf(e));
  };

  const deliver = (e: RevocationEvent) => {
    for (const s of subscribers) {
      if (!s.held) offer(s, e);
      else if (s.held.length < MAX_HELD_EVENTS) s.held.push(e);
      else s.end('it could not catch up');
    }
  };

  /** What a subscriber missed since its Last-Event-ID, sent as it reads, then the live events. */
  const catchUp = async (s: Subscriber) => {
    for (;;) {
      const batch = await revocationEventsAfter(db, s.position.toString(), BATCH);
      for (const e of batch) offer(s, e);
      if (!subscribers.has(s)) return;
      if (s.stream.writableNeedDrain) {
        const drained = await Promise.race([
          new Promise<boolean>((resolve) => s.stream.once('drain', () => resolve(true))),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), DRAIN_TIMEOUT_MS).unref()),
        ]);
        if (!drained) return s.end('it stopped reading');
      }
      if (batch.length < BATCH) break;
    }
    const held = s.held ?? [];
    s.held = null;
    for (const e of held) offer(s, e);
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
          // A burst (a large client disabled): let requests in between the batches.
          await new Promise((resolve) => setImmediate(resolve));
        }
      } while (again);
    })().catch((err: unknown) => {
      logger.warn({ error: err instanceof Error ? err.message : String(err) }, 'revocation feed could not read new events; retrying in a second');
      again = false;
      setTimeout(() => void pump(), POLL_WHILE_UNLISTENED_MS).unref();
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
  let checking: Promise<void> | undefined;
  let checkAgain = false;
  /** Every stream's credentials checked again; one run at a time, and one more if asked meanwhile. */
  const checkRights = () => {
    if (checking) {
      checkAgain = true;
      return;
    }
    // One subscriber after another (not a burst of queries). A check that cannot be made (the
    // database is down) ends the stream too: the gateway then stops caching until it is back.
    checking = (async () => {
      do {
        checkAgain = false;
        for (const s of [...subscribers]) {
          const allowed = await s.stillAuthorized().catch(() => false);
          if (!allowed) s.end('the gateway\'s credentials no longer count');
        }
      } while (checkAgain);
    })().finally(() => {
      checking = undefined;
    });
  };
  changes?.onNotice((topic) => {
    if (subscribers.size === 0 || (topic !== undefined && !RIGHTS_TOPICS.has(topic))) return;
    // After the other listeners of this notice (the client and scope caches) have dropped what
    // it changed, so that the check reads the change.
    setImmediate(checkRights);
  });
  const heartbeat = setInterval(() => {
    for (const s of [...subscribers]) if (!s.held) send(s, ': keepalive\n\n');
    checkRights();
  }, heartbeatSeconds * 1000);
  heartbeat.unref();

  return {
    async subscribe(ctx, { caller, stillAuthorized, bearerSha256 }) {
      // A connection closed before now (while the caller was authenticated, say) has already
      // said so; one closed later says it through the listener. Neither is ever kept.
      const socket = ctx.req.socket;
      let gone = socket.destroyed;
      let subscriber: Subscriber | undefined;
      ctx.res.once('close', () => {
        gone = true;
        subscriber?.end();
      });
      if (gone) return;
      // Counted with the streams still being opened (they take their place before the await
      // below): a burst would otherwise all pass the check before any was added.
      const clientId = caller.client.client_id;
      if (subscribers.size + joining.length >= MAX_SUBSCRIBERS) throw new FeedFullError('too many revocation feed subscribers on this instance; retry on another');
      const ofClient = (id: string) => joining.filter((c) => c === id).length + [...subscribers].filter((s) => s.caller.client.client_id === id).length;
      if (ofClient(clientId) >= MAX_SUBSCRIBERS_PER_CLIENT) {
        throw new FeedFullError(`too many revocation feed subscribers of this client on this instance (at most ${MAX_SUBSCRIBERS_PER_CLIENT})`);
      }
      joining.push(clientId);
      let latest: bigint;
      try {
        latest = BigInt(await latestRevocationEventId(db));
      } finally {
        joining.splice(joining.indexOf(clientId), 1);
      }
      if (gone || socket.destroyed) return;
      seen ??= latest;
      const resume = resumePoint(ctx.get('last-event-id'));
      const stream = new PassThrough();
      const s: Subscriber = {
        caller, position: resume !== undefined && resume < latest ? resume : latest, held: [], stream, stillAuthorized, bearerSha256,
        end(why) {
          if (!subscribers.delete(s)) return;
          if (why) logger.info({ client_id: clientId, why }, 'revocation feed stream ended');
          stream.end();
        },
      };
      subscriber = s;
      subscribers.add(s);
      // A change that came between the authentication and now: its notice either arrived
      // before (the caches have dropped what it changed, so this check sees it) or comes
      // after (and checks this stream with the others).
      void stillAuthorized().catch(() => false).then((allowed) => {
        if (!allowed) s.end('the gateway\'s credentials no longer count');
      });

      ctx.status = 200;
      ctx.type = 'text/event-stream';
      ctx.set('Cache-Control', 'no-store');
      // Proxies in front must pass events on at once, not buffer them.
      ctx.set('X-Accel-Buffering', 'no');
      ctx.body = stream;
      // Where this stream starts: a client that reconnects sends it back as Last-Event-ID.
      stream.write(`retry: 1000\nid: ${s.position}\n\n`);
      // The backlog goes out once the response is flowing (after this returns), at the pace
      // the subscriber reads it; live events wait in `held` meanwhile.
      void catchUp(s).catch((err: unknown) => {
        logger.warn({ error: err instanceof Error ? err.message : String(err) }, 'revocation feed could not send the backlog');
        s.end();
      });
      logger.info({ client_id: clientId, from: s.position.toString() }, 'revocation feed subscribed');
    },
    close() {
      clearInterval(poll);
      clearInterval(heartbeat);
      for (const s of subscribers) s.stream.end();
      subscribers.clear();
    },
  };
}
