-- Instances cache client rows (with their certificates) and recently read tokens. Every change
-- to a client or its certificates is announced, as the scope registry's are (0002), so that
-- each instance drops what it holds; token revocations are announced by revocation_events'
-- trigger (0010). Triggers, not the application, so admin scripts writing SQL are seen too.
-- Forward-only and frozen once landed.
CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON clients
  FOR EACH STATEMENT EXECUTE FUNCTION km_notify_change();
CREATE TRIGGER client_certificates_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON client_certificates
  FOR EACH STATEMENT EXECUTE FUNCTION km_notify_change();
