// The one path every token row the protocol engine makes takes to the database (the adapter's
// upsert and the JWT access-token record alike), and where refresh-token rotation is folded
// into as few statements as it can be (DESIGN.md §5).
//
// The refresh grant consumes the presented refresh token, saves its successor, then saves the
// access token. Each would be a round trip; here the consumption waits for the successor, the
// successor waits for the access token, and one statement consumes the presented token and
// writes both new rows — only if nobody consumed it first. Nothing is handed out before that
// statement commits: the engine builds its response after the access token is saved. If the
// request fails before (a refused scope, say), nothing was written and the presented token is
// still usable.
import { errors } from 'oidc-provider';
import type { Db } from '../db/database.ts';
import { consumeModel, insertUnderLiveGrant, type RefreshTokenContext, type RefreshTokenReader, type StoredModel, type TokenWriter } from '../store/tokens.ts';
import { guardStorage } from './errors.ts';
import { isRememberedForRequest, rememberForRequest, takeFromRequest } from './request-memo.ts';

/** A refresh token the engine consumed, to be consumed by the statement that writes its successor. */
const PENDING_CONSUME = 'rotation:consume';
/** That successor, to be written with the access token that follows it. */
const PENDING_SUCCESSOR = 'rotation:successor';
/** This request redeemed a code: what it issues is written only under a live grant. */
const CODE_REDEEMED = 'code:redeemed';

interface PendingSuccessor {
  presentedId: string;
  id: string;
  model: StoredModel;
}

export interface TokenRows {
  /**
   * A live refresh token with its grant, user and roles: the first step of a rotation, batched
   * with the other refreshes' lookups under way (src/store/tokens.ts, createRefreshTokenReader).
   */
  findRefreshToken(id: string): Promise<RefreshTokenContext | undefined>;
  /** Marks a code or refresh token used; refuses (invalid_grant) when it was used already. */
  consume(kind: string, id: string): Promise<void>;
  /** Writes a token row; resolves once it is committed. */
  write(id: string, model: StoredModel): Promise<void>;
}

export function createTokenRows(db: Db, writer: TokenWriter, readRefreshToken: RefreshTokenReader): TokenRows {
  async function consumeNow(kind: string, id: string): Promise<void> {
    const won = await guardStorage(() => consumeModel(db, kind, id));
    // Of two concurrent redemptions only one may proceed (RFC 9700 §4.14, code replay).
    if (!won) throw new errors.InvalidGrant('already consumed');
  }

  /**
   * A redeemed code's tokens. A second redemption of the code at the same moment loses its
   * consume and revokes the grant (adapter.consume) while this request may still be writing:
   * each row is written only while the grant is live, so that either the revocation catches
   * it or it is not written and nothing is handed out.
   */
  async function writeUnderLiveGrant(grantId: string, id: string, model: StoredModel): Promise<void> {
    const written = await guardStorage(() => insertUnderLiveGrant(db, grantId, id, model));
    if (!written) throw new errors.InvalidGrant('grant revoked');
  }

  function writeOwnOrWithSuccessor(id: string, model: StoredModel): Promise<void> {
    const successor = takeFromRequest<PendingSuccessor>(PENDING_SUCCESSOR);
    // Group-committed with the other rows being written (src/store/tokens.ts, createTokenWriter).
    if (!successor) return guardStorage(() => writer.upsert(id, model));
    return writeWithSuccessor(successor, id, model);
  }

  async function writeWithSuccessor(successor: PendingSuccessor, id: string, model: StoredModel): Promise<void> {
    // Group-committed with the other rotations under way (src/store/tokens.ts, createTokenWriter).
    const won = await guardStorage(() => writer.rotate(successor.presentedId, successor.model.grantId ?? '', [
      { id: successor.id, model: successor.model },
      { id, model },
    ]));
    if (!won) throw new errors.InvalidGrant('already consumed');
  }

  return {
    findRefreshToken: (id) => guardStorage(() => readRefreshToken(id)),

    async consume(kind, id) {
      // Outside a request (nothing to fold it into), at once.
      if (kind === 'RefreshToken' && rememberForRequest(PENDING_CONSUME, id)) return;
      await consumeNow(kind, id);
      if (kind === 'AuthorizationCode') rememberForRequest(CODE_REDEEMED, true);
    },

    // Not async: the usual row, a token of its own, goes to the writer without a frame of its own.
    write(id, model) {
      const presentedId = takeFromRequest<string>(PENDING_CONSUME);
      if (presentedId === undefined) {
        if (model.grantId && isRememberedForRequest(CODE_REDEEMED)) return writeUnderLiveGrant(model.grantId, id, model);
        return writeOwnOrWithSuccessor(id, model);
      }
      if (model.kind === 'RefreshToken') {
        rememberForRequest(PENDING_SUCCESSOR, { presentedId, id, model } satisfies PendingSuccessor);
        return Promise.resolve();
      }
      // Not the sequence above: consume first, as the engine asked, then go on.
      return consumeNow('RefreshToken', presentedId).then(() => writeOwnOrWithSuccessor(id, model));
    },
  };
}
