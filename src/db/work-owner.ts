// Whose database work a statement is. Each HTTP request runs as one owner (src/http/
// listener-drain.ts); a stop that cuts requests off marks theirs abandoned, and the pool ends
// only connections at work for an abandoned owner (src/db/pool.ts): background work, and what a
// finished request left running (an audit write), is let finish.
import { AsyncLocalStorage } from 'node:async_hooks';

export interface WorkOwner {
  readonly abandoned: boolean;
}

export const workOwners = new AsyncLocalStorage<WorkOwner>();

/** An owner for work done for several at once (a batched statement): abandoned when any of them is. */
export function ownerOfAll(owners: readonly (WorkOwner | undefined)[]): WorkOwner {
  return { get abandoned() { return owners.some((o) => o?.abandoned === true); } };
}
