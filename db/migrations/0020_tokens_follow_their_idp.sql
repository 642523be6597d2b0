-- A token got with an identity provider's assertion is worth no more than that IdP, as 0005
-- makes tokens worth no more than their user and client: disabling an IdP, or removing it
-- (which is also how its certificates are replaced), revokes every live row of the grants its
-- assertions started — access and refresh tokens and their Grant rows, so that none refreshes
-- (found by an outside review: after `idp disable`, `idp remove` and re-adding the IdP with
-- another certificate, a refresh token from its assertion still refreshed, for as long as
-- refresh_token_ttl). A grant counts as the IdP's when its tokens name the SAML bearer grant
-- (`gty`, kept by refreshes) and belong to a user federated from that IdP; a linked local user's
-- tokens from their password are not touched. Enabling the IdP again brings nothing back.
-- Triggers do it, so that the CLI, the API and plain SQL all get the same rule.
-- Forward-only and frozen once landed.

CREATE FUNCTION km_revoke_tokens_of_idp() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  grant_ids text[];
BEGIN
  SELECT array_agg(DISTINCT t.grant_id) INTO grant_ids
    FROM tokens t JOIN users u ON t.account_id = u.id::text
   WHERE u.federated_idp = OLD.entity_id AND t.grant_id IS NOT NULL AND t.revoked_at IS NULL
     AND t.payload->>'gty' LIKE 'urn:ietf:params:oauth:grant-type:saml2-bearer%';
  IF grant_ids IS NULL THEN
    RETURN NULL;
  END IF;
  -- The Grant rows first, in digest order, like every statement that locks several (0015).
  PERFORM 1 FROM tokens
   WHERE kind = 'Grant' AND revoked_at IS NULL
     AND id_sha256 IN (SELECT encode(sha256(convert_to(g, 'UTF8')), 'hex') FROM unnest(grant_ids) AS g)
   ORDER BY id_sha256 FOR UPDATE;
  UPDATE tokens SET revoked_at = now()
   WHERE revoked_at IS NULL
     AND (grant_id = ANY (grant_ids)
          OR (kind = 'Grant' AND id_sha256 IN (SELECT encode(sha256(convert_to(g, 'UTF8')), 'hex') FROM unnest(grant_ids) AS g)));
  RETURN NULL;
END;
$$;

CREATE TRIGGER idps_disabled_revoke_tokens AFTER UPDATE OF enabled ON saml_identity_providers
  FOR EACH ROW WHEN (OLD.enabled AND NOT NEW.enabled) EXECUTE FUNCTION km_revoke_tokens_of_idp();
CREATE TRIGGER idps_deleted_revoke_tokens AFTER DELETE ON saml_identity_providers
  FOR EACH ROW EXECUTE FUNCTION km_revoke_tokens_of_idp();
