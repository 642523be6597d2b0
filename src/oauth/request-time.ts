// When the request being served arrived. Rows the engine writes for it are dated by it, so
// that a token whose owner was checked before a disable and written after the re-enable is
// still seen as older than the re-enable (src/store/tokens.ts, ownersStandBehind).
import Provider from 'oidc-provider';

const RECEIVED_AT = 'km:receivedAt';

export function stampRequestReceived(ctx: { state: Record<string, unknown> }): void {
  ctx.state[RECEIVED_AT] = new Date();
}

/** The arrival time of the request the protocol engine is serving, if it is serving one. */
export function requestReceivedAt(): Date | undefined {
  const received = (Provider.ctx as { state?: Record<string, unknown> } | undefined)?.state?.[RECEIVED_AT];
  return received instanceof Date ? received : undefined;
}
