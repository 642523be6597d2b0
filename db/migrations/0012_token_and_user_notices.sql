-- What else can end a cached token early, besides a revocation (announced by 0010): its row
-- changed in a way that matters (expiry, use, scope, owner), deleted or truncated in bulk by
-- an admin script, or its user disabled or deleted (a token written while the disabling
-- transaction was open is not revoked by 0005's trigger; reads catch it, caches must too).
-- Announced as 'tokens' and 'users', which drop every instance's token cache.
-- Forward-only and frozen once landed.
CREATE FUNCTION km_notify_token_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('km_changes', 'tokens');
  RETURN NULL;
END;
$$;
CREATE TRIGGER tokens_access_token_changed AFTER UPDATE ON tokens
  FOR EACH ROW WHEN (OLD.kind IN ('AccessToken', 'ClientCredentials') AND (
    OLD.expires_at IS DISTINCT FROM NEW.expires_at OR OLD.consumed_at IS DISTINCT FROM NEW.consumed_at
    OR OLD.scope IS DISTINCT FROM NEW.scope OR OLD.client_id IS DISTINCT FROM NEW.client_id
    OR OLD.account_id IS DISTINCT FROM NEW.account_id OR OLD.payload IS DISTINCT FROM NEW.payload))
  EXECUTE FUNCTION km_notify_token_change();
CREATE TRIGGER tokens_truncated AFTER TRUNCATE ON tokens
  FOR EACH STATEMENT EXECUTE FUNCTION km_notify_change();
CREATE TRIGGER users_disabled_or_deleted AFTER UPDATE OF disabled OR DELETE OR TRUNCATE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION km_notify_change();
