-- A certificate's validity dates are the certificate's own: finite instants. timestamptz also
-- holds 'infinity' and '-infinity', which no X.509 certificate carries and which the pg driver
-- hands over as numbers, not dates: a row an admin script dated so made every certificate of
-- its client a 500 at /token and /introspect (the client cache computes when the set of usable
-- certificates next changes), and the certificate listing and the expiry metric fail on it too.
-- Refused here, as 0013 refuses clients the server cannot serve: keymgr and the management API
-- only store the dates of the certificate they were given, so their rows always pass.
-- Forward-only and frozen once landed. A row that breaks the rule stops this migration, naming
-- the constraint (db/README.md says how to find and mend such rows).
ALTER TABLE client_certificates
  ADD CONSTRAINT client_certificates_dates_finite CHECK (isfinite(not_before) AND isfinite(not_after));
