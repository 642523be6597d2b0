-- A token is worth no more than the user and the client it was issued for (RFC 7662 §2.2):
-- deleting or disabling a user revokes every row issued for them (access and refresh tokens,
-- codes, grants, browser sessions); disabling a client revokes every row issued to it
-- (deleting a client already deletes its rows: tokens.client_id cascades). Triggers do it, so
-- that the CLI, the API and admin scripts writing SQL directly all get the same rule, and
-- every instance sees it on its next read. Re-enabling brings nothing back.
--
-- Revoking the rows that exist is not enough on its own: a request that checked the user or
-- client just before the change may write its token just after. So reads also ask the owner
-- (src/store/tokens.ts): a row counts only while its user and client exist, are enabled, and
-- were not re-enabled after the row was written (`tokens_valid_after`, set by the triggers
-- below on every change of `disabled`).

CREATE INDEX tokens_account_id_idx ON tokens (account_id) WHERE account_id IS NOT NULL;

ALTER TABLE users ADD COLUMN tokens_valid_after timestamptz;
ALTER TABLE clients ADD COLUMN tokens_valid_after timestamptz;

CREATE FUNCTION km_mark_tokens_valid_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.tokens_valid_after := clock_timestamp();
  RETURN NEW;
END;
$$;
CREATE TRIGGER users_disabled_changed BEFORE UPDATE OF disabled ON users
  FOR EACH ROW WHEN (NEW.disabled IS DISTINCT FROM OLD.disabled) EXECUTE FUNCTION km_mark_tokens_valid_after();
CREATE TRIGGER clients_disabled_changed BEFORE UPDATE OF disabled ON clients
  FOR EACH ROW WHEN (NEW.disabled IS DISTINCT FROM OLD.disabled) EXECUTE FUNCTION km_mark_tokens_valid_after();

CREATE FUNCTION km_revoke_tokens_of_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tokens SET revoked_at = now() WHERE account_id = OLD.id::text AND revoked_at IS NULL;
  RETURN NULL;
END;
$$;
CREATE TRIGGER users_deleted_revoke_tokens AFTER DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION km_revoke_tokens_of_user();
CREATE TRIGGER users_disabled_revoke_tokens AFTER UPDATE OF disabled ON users
  FOR EACH ROW WHEN (NEW.disabled AND NOT OLD.disabled) EXECUTE FUNCTION km_revoke_tokens_of_user();

CREATE FUNCTION km_revoke_tokens_of_client() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tokens SET revoked_at = now() WHERE client_id = OLD.client_id AND revoked_at IS NULL;
  RETURN NULL;
END;
$$;
CREATE TRIGGER clients_disabled_revoke_tokens AFTER UPDATE OF disabled ON clients
  FOR EACH ROW WHEN (NEW.disabled AND NOT OLD.disabled) EXECUTE FUNCTION km_revoke_tokens_of_client();
