// How many management sign-ins check a password at once. They are counted per account only, never
// per address (src/management/auth.ts), so nothing else bounds the argon2 work a caller who
// reaches the management port can ask for with names no operator has; and each check takes a
// thread of the pool the public password grant hashes on too. A few run at a time, a bounded
// number wait for their turn, and more are refused at once (503), before any work.
import type { Gauge, Counter } from 'prom-client';
import { ManagementError } from './errors.ts';

export interface SignInLimiter {
  /** Runs `check` when a place is free; refuses with 503 when too many already wait. */
  run<T>(check: () => Promise<T>): Promise<T>;
}

/** 503 with Retry-After: this instance is at capacity, not a database failure (src/http/errors.ts). */
class SignInsAtCapacity extends ManagementError {
  readonly overload = true;
  constructor() {
    super(503, 'temporarily_unavailable', 'too many management sign-ins are under way: try again shortly');
  }
}

export interface SignInLimits {
  /** Checks at once: half of libuv's default pool of 4 threads, leaving the rest to the public side. */
  atOnce: number;
  /** Checks waiting their turn before more are refused. */
  maxWaiting: number;
}

export const DEFAULT_SIGN_IN_LIMITS: SignInLimits = { atOnce: 2, maxWaiting: 32 };

export function createSignInLimiter(
  { atOnce, maxWaiting }: SignInLimits,
  metrics: { managementSignIns: Gauge<'state'>; managementSignInsRefused: Counter },
): SignInLimiter {
  let running = 0;
  const waiting: (() => void)[] = [];
  const show = () => {
    metrics.managementSignIns.set({ state: 'running' }, running);
    metrics.managementSignIns.set({ state: 'waiting' }, waiting.length);
  };
  return {
    async run(check) {
      if (running < atOnce) running++;
      else if (waiting.length < maxWaiting) {
        // Its place is handed over by the check that finishes (below): running stays as it is.
        const turn = new Promise<void>((resolve) => waiting.push(resolve));
        show();
        await turn;
      } else {
        metrics.managementSignInsRefused.inc();
        throw new SignInsAtCapacity();
      }
      show();
      try {
        return await check();
      } finally {
        const next = waiting.shift();
        if (next) next();
        else running--;
        show();
      }
    },
  };
}
