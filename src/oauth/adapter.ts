// The oidc-provider Adapter over PostgreSQL. "Client" reads the clients table; every other
// model is a row of `tokens`, keyed by the digest of its id (see src/store/tokens.ts). The
// id is stripped from the payload before it is stored and put back when it is read.
import type { Adapter, AdapterPayload } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import type { ClientDirectory } from './client-directory.ts';
import {
  consumeModel, findLiveModel, findLiveModelByUid, revokeByGrantId, revokeModel, type TokenWriter,
} from '../store/tokens.ts';
import type { TokenRow } from '../db/types.ts';
import { clientMetadataFromRow } from './client-metadata.ts';
import { guardStorage } from './errors.ts';
import { requestReceivedAt } from './request-time.ts';

export function createAdapterClass(db: Db, clients: ClientDirectory, writer: TokenWriter) {
  return class PostgresAdapter implements Adapter {
    readonly model: string;

    constructor(model: string) {
      this.model = model;
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      if (this.model === 'Client') throw new Error('clients are managed with keymgr, not by the protocol engine');
      const { jti: _value, ...rest } = payload;
      // Group-committed with the other rows being written (src/store/tokens.ts, createTokenWriter).
      await guard(() => writer.upsert(id, {
        kind: this.model,
        clientId: payload.clientId ?? null,
        accountId: payload.accountId ?? null,
        grantId: payload.grantId ?? null,
        uid: payload.uid ?? null,
        scope: payload.scope ?? null,
        expiresAt: expiresIn ? new Date(Date.now() + expiresIn * 1000) : null,
        payload: rest,
        issuedAt: requestReceivedAt(),
      }));
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.model === 'Client') {
        // Cached while changes are announced: a certificate added or removed, a secret rotated
        // or a client disabled counts from the next request (src/oauth/client-directory.ts).
        const entry = await guard(() => clients.find(id));
        if (!entry || entry.row.disabled) return undefined;
        return clientMetadataFromRow(entry.row, entry.certificates);
      }
      const row = await guard(() => findLiveModel(db, this.model, id));
      return row ? toPayload(row, id) : undefined;
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
      const won = await guard(() => consumeModel(db, this.model, id));
      // Of two concurrent redemptions only one may proceed (RFC 9700 §4.14, code replay).
      if (!won) throw new errors.InvalidGrant('already consumed');
    }

    async destroy(id: string): Promise<void> {
      await guard(() => revokeModel(db, this.model, id));
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await guard(() => revokeByGrantId(db, grantId));
    }
  };
}

function toPayload(row: TokenRow, id: string | undefined): AdapterPayload {
  const payload = { ...row.payload, jti: id } as AdapterPayload;
  if (row.consumed_at) payload.consumed = Math.floor(row.consumed_at.getTime() / 1000);
  return payload;
}

const guard = guardStorage;
