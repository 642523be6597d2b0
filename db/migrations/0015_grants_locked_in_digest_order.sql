-- Revoking every row of a user or a client (the triggers of 0005) locks the rows it changes in
-- the order it finds them. A batch of refresh token rotations (src/store/tokens.ts) holds the
-- Grant rows of its tokens share-locked, taken in digest order, while it marks the refresh
-- tokens used. The two could each hold a row the other waits for — a revocation holding a
-- refresh token or a grant a rotation needs next, and waiting for a grant that rotation holds —
-- and PostgreSQL then aborts one of them. Now the triggers first lock the owner's Grant rows in
-- digest order, the rotations' order, before they change anything: whoever comes second waits.
-- Deleting a client deletes its rows through the foreign key, in no set order: its grants are
-- locked the same way first.

CREATE OR REPLACE FUNCTION km_revoke_tokens_of_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM tokens WHERE account_id = OLD.id::text AND kind = 'Grant' AND revoked_at IS NULL
    ORDER BY id_sha256 FOR UPDATE;
  UPDATE tokens SET revoked_at = now() WHERE account_id = OLD.id::text AND revoked_at IS NULL;
  RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION km_revoke_tokens_of_client() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM tokens WHERE client_id = OLD.client_id AND kind = 'Grant' AND revoked_at IS NULL
    ORDER BY id_sha256 FOR UPDATE;
  UPDATE tokens SET revoked_at = now() WHERE client_id = OLD.client_id AND revoked_at IS NULL;
  RETURN NULL;
END;
$$;

CREATE FUNCTION km_lock_grants_of_client() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM tokens WHERE client_id = OLD.client_id AND kind = 'Grant' ORDER BY id_sha256 FOR UPDATE;
  RETURN OLD;
END;
$$;
CREATE TRIGGER clients_deleted_lock_grants BEFORE DELETE ON clients
  FOR EACH ROW EXECUTE FUNCTION km_lock_grants_of_client();
