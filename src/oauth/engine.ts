// The protocol engine this instance serves with. oidc-provider takes its signing keys once,
// when it is built (its author's advice for rotation is a new instance), so a key rotation —
// on any instance, through the management API or keymgr — builds a new provider on the new key
// set and swaps it in. Requests already running finish on the provider they started on;
// everything they share (grants, sessions, interactions) lives in PostgreSQL, not in it.
// The provider signs with the algorithm of the key that signs (src/oauth/provider.ts), so a
// rotation to a key of another algorithm switches the algorithm too, on every instance, whatever
// each one's own signing_algorithm says; that setting is applied when an instance starts
// (prepareSigningKeys, src/store/signing-key-changes.ts) and by rotations that name none.
import type Koa from 'koa';
import mount from 'koa-mount';
import type Provider from 'oidc-provider';
import type { JWK } from 'jose';
import type { Logger } from 'pino';
import type { ChangeListener } from '../db/notifications.ts';
import { readSigningKeys, signingAlgorithmOf } from '../keys/signing-keys.ts';
import { SIGNING_KEYS_TOPIC } from '../store/signing-key-changes.ts';

export interface Engine {
  /** The provider new requests go to. */
  readonly provider: Provider;
  /** The private JWK that signs now (the first of the published set). */
  readonly signingKey: JWK;
  /** Hands each request to the provider current when it arrives. */
  readonly middleware: Koa.Middleware;
  /** Re-reads the key file; builds and swaps in a new provider if the published set changed. */
  reload(): Promise<void>;
  close(): void;
}

export interface EngineDeps {
  keysDir: string;
  initialKeys: JWK[];
  build: (signingKeys: JWK[]) => Provider;
  changes: ChangeListener | undefined;
  logger: Logger;
  /**
   * How often the key file is read anyway: a notice lost while the listener was down, or a
   * retiring key's time running out, is picked up within this many seconds.
   */
  recheckSeconds?: number;
}

/** What decides whether a rebuild is needed: which keys, in which order (the first signs). */
const setOf = (keys: JWK[]) => keys.map((k) => k.kid).join(' ');

export function createEngine({ keysDir, initialKeys, build, changes, logger, recheckSeconds = 30 }: EngineDeps): Engine {
  let provider = build(initialKeys);
  let mounted = mount(provider as unknown as Koa);
  let current = setOf(initialKeys);
  let signingKey = initialKeys[0]!;
  let pending: Promise<void> = Promise.resolve();

  const swapIfChanged = () => {
    const { keys } = readSigningKeys(keysDir);
    const next = setOf(keys);
    if (next === current) return;
    const built = build(keys);
    provider = built;
    mounted = mount(built as unknown as Koa);
    current = next;
    signingKey = keys[0]!;
    logger.info({ signing_kid: keys[0]?.kid, signing_alg: signingAlgorithmOf(keys[0]!), published: keys.length }, 'signing keys reloaded');
  };

  // One reload at a time, in order; a failed one (a half-edited file) keeps the running set.
  const reload = () => {
    pending = pending.then(swapIfChanged).catch((err: unknown) => {
      logger.error({ error: err instanceof Error ? err.message : String(err), keys_dir: keysDir }, 'signing keys not reloaded; still signing with the previous set');
    });
    return pending;
  };

  changes?.onNotice((topic) => {
    if (topic === SIGNING_KEYS_TOPIC || topic === undefined) void reload();
  });
  const recheck = setInterval(() => void reload(), recheckSeconds * 1000);
  recheck.unref();

  return {
    get provider() {
      return provider;
    },
    get signingKey() {
      return signingKey;
    },
    middleware: (ctx, next) => mounted(ctx, next),
    reload,
    close() {
      clearInterval(recheck);
    },
  };
}
