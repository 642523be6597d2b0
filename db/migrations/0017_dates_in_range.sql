-- The dates the server reads back in JavaScript are instants a JavaScript Date can hold: finite,
-- and no later than 275760-09-13 00:00:00 UTC. timestamptz also holds 'infinity' and '-infinity',
-- which the pg driver hands over as the numbers Infinity and -Infinity, and instants up to the
-- year 294276, which it hands over as an invalid Date. Written by an admin script, such a value
-- made every listing of its table a 500 (management API and keymgr: clients, users, identity
-- providers, certificates, the audit trail), /introspect a 500 or an answer with a null iat,
-- the reuse of a refresh token so marked used a 500 or an invalid_grant that left its grant
-- alive (reuse detection skipped), made the revocation feed drop that revocation (no gateway heard of it) and
-- hold back the ones after it, and kept an expired certificate of a cached client
-- authenticating (its cache entry no longer ended).
-- The server only ever writes instants of a JavaScript Date or of PostgreSQL's clock, and NULL
-- where a column allows it, so its rows always pass. 4713 BC, the earliest instant PostgreSQL
-- holds, is within range. Columns compared only in SQL keep taking ±infinity (db/README.md says
-- what those values mean there).
-- Forward-only and frozen once landed. A row that breaks the rule stops this migration, naming
-- the constraint (db/README.md says how to find and mend such rows).
CREATE FUNCTION km_date_in_range(t timestamptz) RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT isfinite(t) AND t <= '275760-09-13 00:00:00+00'::timestamptz $$;

ALTER TABLE clients ADD CONSTRAINT clients_dates_in_range
  CHECK (km_date_in_range(secret_created_at) AND km_date_in_range(created_at) AND km_date_in_range(updated_at));
ALTER TABLE users ADD CONSTRAINT users_dates_in_range
  CHECK (km_date_in_range(created_at) AND km_date_in_range(updated_at));
ALTER TABLE saml_identity_providers ADD CONSTRAINT saml_identity_providers_dates_in_range
  CHECK (km_date_in_range(created_at) AND km_date_in_range(updated_at));
ALTER TABLE client_certificates ADD CONSTRAINT client_certificates_dates_in_range
  CHECK (km_date_in_range(not_before) AND km_date_in_range(not_after) AND km_date_in_range(created_at));
ALTER TABLE audit_events ADD CONSTRAINT audit_events_dates_in_range
  CHECK (km_date_in_range(occurred_at));
ALTER TABLE tokens ADD CONSTRAINT tokens_dates_in_range
  CHECK (km_date_in_range(issued_at) AND km_date_in_range(expires_at) AND km_date_in_range(consumed_at));
ALTER TABLE revocation_events ADD CONSTRAINT revocation_events_dates_in_range
  CHECK (km_date_in_range(expires_at));
