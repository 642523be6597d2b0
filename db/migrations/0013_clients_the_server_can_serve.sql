-- A clients row that PostgreSQL accepts is one the server can serve: the rules that
-- registration (src/store/clients.ts validate) applies to `keymgr` and the management API are
-- now the schema's too, so an admin script writing SQL cannot store a client that fails at
-- /token instead. Already in place since 0001/0003: the enumerations of
-- token_endpoint_auth_method, access_token_format and application_type, the digest format of
-- secret_sha256 (64 lower-case hex digits), and a secret for the client_secret_* methods.
-- Forward-only and frozen once landed. A row that breaks a rule stops this migration, naming
-- the constraint (db/README.md says how to find and mend such rows).

-- Every element of a one-dimensional array is present, 1..max_length characters long and
-- matches the pattern. (A CHECK cannot hold a subquery; a function over its argument can.)
CREATE FUNCTION km_array_elements_ok(elements text[], pattern text, max_length integer)
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (array_ndims(elements) IS NULL OR array_ndims(elements) = 1)
     AND coalesce(bool_and(e IS NOT NULL AND length(e) BETWEEN 1 AND max_length AND e ~ pattern), true)
  FROM unnest(elements) AS e
$$;

ALTER TABLE clients
  -- RFC 6749 Appendix A.1 client-id: visible ASCII and space. The server makes 22 base64url characters.
  ADD CONSTRAINT clients_client_id_format
    CHECK (length(client_id) BETWEEN 1 AND 255 AND client_id ~ '^[\x20-\x7e]+$'),
  ADD CONSTRAINT clients_name_not_blank CHECK (name ~ '\S'),
  -- The grant types the server implements (src/store/clients.ts GRANT_TYPES), at least one.
  ADD CONSTRAINT clients_grant_types_known CHECK (
    cardinality(grant_types) >= 1 AND array_ndims(grant_types) = 1
    AND grant_types <@ ARRAY['client_credentials', 'authorization_code', 'refresh_token', 'password',
                             'urn:ietf:params:oauth:grant-type:saml2-bearer']::text[]),
  -- RFC 6749 §4.4 and §4.3: grants for clients that can keep a secret.
  ADD CONSTRAINT clients_public_client_grants CHECK (
    token_endpoint_auth_method <> 'none' OR NOT (grant_types && ARRAY['client_credentials', 'password']::text[])),
  ADD CONSTRAINT clients_redirect_uris_format CHECK (
    km_array_elements_ok(redirect_uris, '^[A-Za-z][A-Za-z0-9+.-]*:[^#\x01-\x20\x7f]*$', 2000)),
  ADD CONSTRAINT clients_authorization_code_needs_redirect_uri CHECK (
    NOT ('authorization_code' = ANY (grant_types)) OR cardinality(redirect_uris) >= 1),
  -- RFC 6749 §3.3 scope-tokens, separated by single spaces; '' allows none.
  ADD CONSTRAINT clients_scope_format CHECK (
    scope ~ '^([\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*)?$'),
  -- RFC 8705 §2.1.2: tls_client_auth names exactly one of the two; no other method uses them.
  ADD CONSTRAINT clients_tls_client_auth_subject CHECK (
    num_nonnulls(tls_client_auth_subject_dn, tls_client_auth_san_dns)
      = CASE WHEN token_endpoint_auth_method = 'tls_client_auth' THEN 1 ELSE 0 END),
  ADD CONSTRAINT clients_tls_client_auth_subject_dn_format CHECK (
    length(tls_client_auth_subject_dn) BETWEEN 1 AND 1000 AND tls_client_auth_subject_dn !~ '[\x01-\x1f\x7f]'),
  ADD CONSTRAINT clients_tls_client_auth_san_dns_format CHECK (
    length(tls_client_auth_san_dns) BETWEEN 1 AND 253 AND tls_client_auth_san_dns !~ '[\x01-\x20\x7f]'),
  ADD CONSTRAINT clients_introspect_audiences_format CHECK (
    introspect_audiences IS NULL
    OR (cardinality(introspect_audiences) <= 50 AND km_array_elements_ok(introspect_audiences, '^[^\x01-\x20\x7f]+$', 2000)));

-- Every scope a client may be granted is registered, as registration requires. `scope` is a
-- space-separated list, which a foreign key cannot reference: this trigger is its foreign key,
-- raising what one would (foreign_key_violation, constraint clients_scope_registered). Like
-- keymgr, it checks when the list is written; deleting a scope later leaves it in allow-lists,
-- where it is simply not granted (`keymgr scope delete`).
CREATE FUNCTION km_client_scopes_registered() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  missing text;
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.scope IS NOT DISTINCT FROM OLD.scope THEN
    RETURN NEW;
  END IF;
  SELECT string_agg(s, ' ') INTO missing
  FROM unnest(string_to_array(NEW.scope, ' ')) AS s
  WHERE s <> '' AND NOT EXISTS (SELECT 1 FROM scopes WHERE name = s);
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'scope not registered: %', missing
      USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'clients_scope_registered',
            TABLE = 'clients', COLUMN = 'scope',
            HINT = 'register it first: INSERT INTO scopes (name) VALUES (...), or keymgr scope create';
  END IF;
  RETURN NEW;
END;
$$;
CREATE TRIGGER clients_scope_registered BEFORE INSERT OR UPDATE OF scope ON clients
  FOR EACH ROW EXECUTE FUNCTION km_client_scopes_registered();
