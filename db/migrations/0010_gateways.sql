-- What API gateways use: the `introspect` scope (a bearer token carrying it may call
-- /introspect and follow /revocations), per-gateway audience limits, and the revocation feed's
-- outbox. Forward-only and frozen once landed.

-- The scope is registered like any other, so that clients are allowed it (their scope
-- allow-list) and roles are bound to it as usual. Bound to the role `introspector`: a user
-- token carries it only for users holding that role, never for every user.
INSERT INTO roles (name, description)
VALUES ('introspector', 'may introspect any token and follow the revocation feed with a user token carrying the introspect scope')
ON CONFLICT (name) DO NOTHING;
INSERT INTO scopes (name, description)
VALUES ('introspect', 'call /introspect and /revocations as an API gateway (RFC 7662 §2.1)')
ON CONFLICT (name) DO NOTHING;
INSERT INTO scope_roles (scope_name, role_name)
VALUES ('introspect', 'introspector')
ON CONFLICT DO NOTHING;

-- A gateway limited to tokens of these audiences sees {"active": false} for others, and no
-- feed events of others. NULL: every audience.
ALTER TABLE clients ADD COLUMN introspect_audiences text[];

-- One row per access token that stopped being valid before its expiry: revoked (by /revoke,
-- the management API, keymgr, a grant revoked on refresh-token or code reuse, its user or
-- client disabled or deleted) or deleted while live (its client deleted). Written by the
-- triggers below, so every path — admin SQL included — feeds it. Kept until the token would
-- have expired, so that a gateway that reconnects with Last-Event-ID misses nothing.
CREATE TABLE revocation_events (
  -- In commit order (see km_record_revocation): a reader that has seen id N has seen every
  -- committed event below N.
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at    timestamptz NOT NULL DEFAULT now(),
  -- hex SHA-256 of the token value (= tokens.id_sha256): what gateways key their caches by
  token_sha256   text NOT NULL CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
  jti            text,
  client_id      text,
  audience       text,
  expires_at     timestamptz NOT NULL,
  reason         text NOT NULL CHECK (reason IN ('revoked', 'deleted'))
);
CREATE INDEX revocation_events_expires_idx ON revocation_events (expires_at);

CREATE FUNCTION km_record_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  t tokens;
BEGIN
  IF TG_OP = 'DELETE' THEN t := OLD; ELSE t := NEW; END IF;
  -- One writer at a time until commit: ids are then handed out in commit order, so no event
  -- can appear below an id a subscriber has already passed.
  PERFORM pg_advisory_xact_lock(hashtextextended('km.revocation_events', 0));
  INSERT INTO revocation_events (token_sha256, jti, client_id, audience, expires_at, reason)
  VALUES (
    t.id_sha256,
    CASE WHEN t.format = 'jwt' THEN t.payload ->> 'jti' END,
    t.client_id,
    CASE jsonb_typeof(t.payload -> 'aud') WHEN 'string' THEN t.payload ->> 'aud' WHEN 'array' THEN t.payload -> 'aud' ->> 0 END,
    t.expires_at,
    CASE WHEN TG_OP = 'DELETE' THEN 'deleted' ELSE 'revoked' END
  );
  RETURN NULL;
END;
$$;

CREATE TRIGGER tokens_revoked_feed AFTER UPDATE OF revoked_at ON tokens
  FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
                     AND NEW.kind IN ('AccessToken', 'ClientCredentials')
                     AND NEW.consumed_at IS NULL AND NEW.expires_at > now())
  EXECUTE FUNCTION km_record_revocation();
CREATE TRIGGER tokens_deleted_feed AFTER DELETE ON tokens
  FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND OLD.kind IN ('AccessToken', 'ClientCredentials')
                     AND OLD.expires_at > now())
  EXECUTE FUNCTION km_record_revocation();

-- Every instance's feed wakes on this notice (the listener every cache uses).
CREATE TRIGGER revocation_events_changed AFTER INSERT ON revocation_events
  FOR EACH STATEMENT EXECUTE FUNCTION km_notify_change();
