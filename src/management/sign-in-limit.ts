// How many management sign-ins check a password at once. They are counted per account only, never
// per address (src/management/auth.ts), so nothing else bounds the argon2 work a caller who
// reaches the management port can ask for with names no operator has; and each check takes a
// thread of the pool the public password grant hashes on too. A few run at a time, a bounded
// number wait for their turn, and more are refused at once (503), before any work.
//
// Names of configured operators go through a limiter of their own (createSignInLimiters): a
// flood of made-up names must not keep an operator out. Theirs is bounded anyway: each account
// is checked one sign-in at a time and locks after lockout_max_failures.
import type { Gauge, Counter } from 'prom-client';
import { ManagementError } from './errors.ts';

export interface SignInLimiter {
  /**
   * Runs `check` when a place is free; refuses with 503 when too many already wait. One whose
   * caller is `gone` by its turn gives the place on without running.
   */
  run<T>(check: () => Promise<T>, gone: () => boolean): Promise<T>;
}

/** The limiters of one instance: for names of configured operators, and for any other name. */
export interface SignInLimiters {
  operators: SignInLimiter;
  unknownNames: SignInLimiter;
}

/** 503 with Retry-After: this instance is at capacity, not a database failure (src/http/errors.ts). */
class SignInsAtCapacity extends ManagementError {
  readonly overload = true;
  constructor() {
    super(503, 'temporarily_unavailable', 'too many management sign-ins are under way: try again shortly');
  }
}

/** The caller went away while waiting: nobody will read the answer (a refusal, not a failure of ours). */
const abandoned = () => new ManagementError(400, 'invalid_request', 'the caller went away while its sign-in waited');

export interface SignInLimits {
  /** Checks at once: half of libuv's default pool of 4 threads, leaving the rest to the public side. */
  atOnce: number;
  /** Checks waiting their turn before more are refused. */
  maxWaiting: number;
}

export const DEFAULT_SIGN_IN_LIMITS: SignInLimits = { atOnce: 2, maxWaiting: 32 };

type Names = 'operators' | 'unknown';

export interface SignInMetrics {
  managementSignIns: Gauge<'state' | 'names'>;
  managementSignInsRefused: Counter<'names'>;
}

function createSignInLimiter({ atOnce, maxWaiting }: SignInLimits, names: Names, metrics: SignInMetrics): SignInLimiter {
  let running = 0;
  const waiting: (() => void)[] = [];
  const show = () => {
    metrics.managementSignIns.set({ state: 'running', names }, running);
    metrics.managementSignIns.set({ state: 'waiting', names }, waiting.length);
  };
  /** The place of a check that finished (or gave up its turn) goes to the next waiting, or is freed. */
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else running--;
    show();
  };
  return {
    async run(check, gone) {
      if (running < atOnce) running++;
      else if (waiting.length < maxWaiting) {
        // Its place is handed over by release(): running stays as it is.
        const turn = new Promise<void>((resolve) => waiting.push(resolve));
        show();
        await turn;
        if (gone()) {
          release();
          throw abandoned();
        }
      } else {
        metrics.managementSignInsRefused.inc({ names });
        throw new SignInsAtCapacity();
      }
      show();
      try {
        return await check();
      } finally {
        release();
      }
    },
  };
}

export function createSignInLimiters(limits: SignInLimits, metrics: SignInMetrics): SignInLimiters {
  return { operators: createSignInLimiter(limits, 'operators', metrics), unknownNames: createSignInLimiter(limits, 'unknown', metrics) };
}
