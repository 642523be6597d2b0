// Client rows, with the certificates a self_signed_tls_client_auth client may present, as the
// token, introspection and revocation endpoints read them: held in a bounded LRU while this
// instance listens for changes, so that a request costs no statement for its client. Any
// change to clients or client_certificates (a secret rotated, a client disabled or deleted, a
// certificate added or removed) is announced by a trigger (0011) and drops the whole cache at
// once; while the listener is down the cache is not used at all. An entry lives at most a
// minute, and never past the expiry of a certificate it holds.
import type { Db } from '../db/database.ts';
import { noticeDroppedCache, type ChangeListener } from '../db/notifications.ts';
import type { ClientRow } from '../db/types.ts';
import { usableCertificatesOfClient, type CertificateRow } from '../store/certificates.ts';
import { findClientById } from '../store/clients.ts';

export interface DirectoryEntry {
  row: ClientRow;
  /** Usable (valid now, not removed) certificates; read only for self_signed_tls_client_auth. */
  certificates: CertificateRow[];
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
      const certificates = row.token_endpoint_auth_method === 'self_signed_tls_client_auth'
        ? await usableCertificatesOfClient(db, row.client_id)
        : [];
      return { row, certificates };
    },
    // Unknown ids are never kept (read gives undefined): anyone can make them up.
    keepFor: (entry) => Math.min(MAX_AGE_MS, ...entry.certificates.map((c) => c.not_after.getTime() - Date.now())),
  });
  return { find: (clientId) => find(clientId) };
}
