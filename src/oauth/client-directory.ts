// Client rows, with the certificates a self_signed_tls_client_auth client may present, as the
// token, introspection and revocation endpoints read them: held in a bounded LRU while this
// instance listens for changes, so that a request costs no statement for its client. Any
// change to clients or client_certificates (a secret rotated, a client disabled or deleted, a
// certificate added or removed) is announced by a trigger (0011) and drops the whole cache at
// once; while the listener is down the cache is not used at all. An entry lives at most a
// minute, never past the expiry of a certificate it holds, and never past the not_before of one
// it leaves out for not being valid yet.
import type { Db } from '../db/database.ts';
import { noticeDroppedCache, type ChangeListener } from '../db/notifications.ts';
import type { ClientRow } from '../db/types.ts';
import { unexpiredCertificatesOfClient, type CertificateRow } from '../store/certificates.ts';
import { findClientById } from '../store/clients.ts';

export interface DirectoryEntry {
  row: ClientRow;
  /** Usable (valid now, not removed) certificates; read only for self_signed_tls_client_auth. */
  certificates: CertificateRow[];
  /** When `certificates` stops being the usable set (epoch ms): an expiry or a not_before. */
  changesAt: number;
}

export interface ClientDirectory {
  find(clientId: string): Promise<DirectoryEntry | undefined>;
}

const MAX_ENTRIES = 10_000;
const MAX_AGE_MS = 60_000;
const TOPICS = new Set(['clients', 'client_certificates']);

export function createClientDirectory(db: Db, changes: ChangeListener | undefined): ClientDirectory {
  const find = noticeDroppedCache<DirectoryEntry>(changes, {
    topics: TOPICS,
    max: MAX_ENTRIES,
    async read(clientId) {
      const row = await findClientById(db, clientId);
      if (!row) return undefined;
      if (row.token_endpoint_auth_method !== 'self_signed_tls_client_auth') return { row, certificates: [], changesAt: Infinity };
      const unexpired = await unexpiredCertificatesOfClient(db, row.client_id);
      return {
        row,
        certificates: unexpired.filter((c) => c.valid_now).map(({ valid_now: _, ...c }) => c),
        // The set of usable ones changes when one expires or one not valid yet becomes valid.
        changesAt: Math.min(...unexpired.map((c) => (c.valid_now ? c.not_after : c.not_before).getTime())),
      };
    },
    // Unknown ids are never kept (read gives undefined): anyone can make them up.
    keepFor: (entry) => Math.min(MAX_AGE_MS, entry.changesAt - Date.now()),
  });
  return { find: (clientId) => find(clientId) };
}
