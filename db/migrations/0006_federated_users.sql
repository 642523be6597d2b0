-- Identity has an owner: a user belongs to the source that vouches for them. A SAML assertion
-- maps only to the user federated from the same identity provider under the same NameID
-- (exact, case-sensitive), never to a local password user or another IdP's user by name.
-- Forward-only and frozen once landed.
--
-- Two columns on users rather than a separate federation table: a user has exactly one
-- source (local, or one IdP), which a pair of columns says by construction, and JIT
-- provisioning creates the user and its link in one row, so there is never a user
-- half-linked. Both NULL: a local user (password only). Both set: federated from that IdP; a
-- linked local user keeps their password, a JIT user has a random one nobody knows.
--
-- No foreign key to saml_identity_providers, on purpose: `keymgr idp remove` stops trusting an
-- IdP, it does not erase who its users are. Its users stay, with their roles and links, and
-- cannot sign in through it while it is not registered; registering the same entity id again
-- (the only way to replace an IdP's certificates) gives them back. To cut them off for good,
-- delete or disable them. (ON DELETE CASCADE would delete people; SET NULL would turn them
-- into local users and make a re-registered IdP's JIT collide with its own users; RESTRICT
-- would make certificate replacement impossible without deleting every user.)

ALTER TABLE users
  ADD COLUMN federated_idp      text CHECK (length(federated_idp) BETWEEN 1 AND 1024),
  ADD COLUMN federated_name_id  text CHECK (length(federated_name_id) BETWEEN 1 AND 256),
  ADD CONSTRAINT users_federation_both_or_neither CHECK ((federated_idp IS NULL) = (federated_name_id IS NULL));

-- One user per (IdP, NameID); local users (NULLs) are not indexed.
CREATE UNIQUE INDEX users_federation_uq ON users (federated_idp, federated_name_id) WHERE federated_idp IS NOT NULL;

-- Transient NameIDs (urn:oasis:names:tc:SAML:2.0:nameid-format:transient) identify nobody
-- across sessions: refused unless the operator says this IdP's are usable.
ALTER TABLE saml_identity_providers
  ADD COLUMN allow_transient boolean NOT NULL DEFAULT false;
