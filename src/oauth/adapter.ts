// The oidc-provider Adapter over PostgreSQL. "Client" reads the clients table; every other
// model is a row of `tokens`, keyed by the digest of its id (see src/store/tokens.ts). The
// id is stripped from the payload before it is stored and put back when it is read.
import { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import type { ClientDirectory } from './client-directory.ts';
import {
  findLiveModel, findLiveModelByUid, grantIdOfModel, revokeByGrantId, revokeModel, type StoredModel,
} from '../store/tokens.ts';
import type { TokenRow } from '../db/types.ts';
import { clientMetadataFromRow } from './client-metadata.ts';
import { guardStorage } from './errors.ts';
import { requestReceivedAt } from './request-time.ts';
import { rememberForRequest, takeFromRequest } from './request-memo.ts';
import { ACCOUNT_READ_AHEAD, ROLES_READ_AHEAD } from './accounts.ts';
import type { TokenRows } from './token-rows.ts';

/** Read ahead with a refresh token: its grant (null: none live). */
const GRANT_READ_AHEAD = 'Grant:';

/**
 * syncInstances: resolves once every instance has dropped what it cached of a change just
 * committed (src/db/notifications.ts). The engine revokes a grant on its own (a replayed code, a
 * reused refresh token) and then answers; like /revoke, it must not answer while an instance
 * could still report the grant's access tokens active from its cache.
 */
export function createAdapterClass(db: Db, clients: ClientDirectory, rows: TokenRows, syncInstances: () => Promise<unknown>) {
  return class PostgresAdapter implements Adapter {
    readonly model: string;

    constructor(model: string) {
      this.model = model;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      if (this.model === 'Client') throw new Error('clients are managed with keymgr, not by the protocol engine');
      const { jti: _value, ...rest } = payload;
      const model: StoredModel = {
        kind: this.model,
        clientId: payload.clientId ?? null,
        accountId: payload.accountId ?? null,
        grantId: payload.grantId ?? null,
        uid: payload.uid ?? null,
        scope: payload.scope ?? null,
        expiresAt: expiresIn ? new Date(Date.now() + expiresIn * 1000) : null,
        payload: rest,
        issuedAt: requestReceivedAt(),
      };
      // Group-committed, or folded into a refresh token's rotation (src/oauth/token-rows.ts).
      await rows.write(id, model);
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.model === 'Client') {
        // Cached while changes are announced: a certificate added or removed, a secret rotated
        // or a client disabled counts from the next request (src/oauth/client-directory.ts).
        const entry = await guard(() => clients.find(id));
        if (!entry || entry.row.disabled) return undefined;
        return clientMetadataFromRow(entry.row, entry.certificates);
      }
      if (this.model === 'RefreshToken') return this.findRefreshToken(id);
      if (this.model === 'Grant') {
        const readAhead = takeFromRequest<Pick<TokenRow, 'payload' | 'consumed_at'> | null>(GRANT_READ_AHEAD + id);
        if (readAhead !== undefined) return readAhead ? toPayload(readAhead, id) : undefined;
      }
      const row = await guard(() => findLiveModel(db, this.model, id));
      return row ? toPayload(row, id) : undefined;
    }

    /**
     * The refresh grant goes on to read the token's grant, its user and the user's roles: they
     * are read in the same statement and kept for those steps of this request (request-memo.ts).
     */
    private async findRefreshToken(id: string): Promise<AdapterPayload | undefined> {
      const found = await rows.findRefreshToken(id);
      if (!found) return undefined;
      const { token, grant, user, roles } = found;
      if (token.grant_id) rememberForRequest(GRANT_READ_AHEAD + token.grant_id, grant);
      if (token.account_id) {
        rememberForRequest(ACCOUNT_READ_AHEAD + token.account_id, user);
        rememberForRequest(ROLES_READ_AHEAD + token.account_id, roles);
      }
      return toPayload(token, id);
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const row = await guard(() => findLiveModelByUid(db, this.model, uid));
      // The id is not recoverable from its digest; callers of findByUid only read the session.
      return row ? toPayload(row, undefined) : undefined;
    }

    async findByUserCode(): Promise<AdapterPayload | undefined> {
      return undefined; // the device flow is not enabled
    }

    async consume(id: string): Promise<void> {
      try {
        await rows.consume(this.model, id);
      } catch (err) {
        if (this.model !== 'AuthorizationCode' || !(err instanceof errors.InvalidGrant)) throw err;
        // Two redemptions of one code at the same moment: both found it unused, and this one
        // lost the consume. It is a second use all the same (RFC 6749 §4.1.2): revoke what the
        // code gave, as the engine does when it finds the code used, and say so in its words
        // (logged as reuse). The winner's rows are written only under a live grant (token-rows).
        const grantId = await guard(() => grantIdOfModel(db, this.model, id));
        if (grantId) await this.revokeByGrantId(grantId);
        throw new errors.InvalidGrant('authorization code already consumed');
      }
    }

    async destroy(id: string): Promise<void> {
      await guard(() => revokeModel(db, this.model, id));
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await guard(() => revokeByGrantId(db, grantId));
      await syncInstances();
    }
  };
}

function toPayload(row: Pick<TokenRow, 'payload' | 'consumed_at'>, id: string | undefined): AdapterPayload {
  const payload = { ...row.payload, jti: id } as AdapterPayload;
  if (row.consumed_at) payload.consumed = Math.floor(row.consumed_at.getTime() / 1000);
  return payload;
}

const guard = guardStorage;
