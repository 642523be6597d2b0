-- Redirect URIs the protocol engine serves for the client's application type, as registration
-- checks them (src/store/clients.ts, checkRedirectUriFor): a web application's are http(s); a
-- native application's are http on a loopback address, https on any other host, or a scheme of
-- its own that no browser runs or reads locally. None carries a user name or password. A row
-- outside these rules would be refused by the engine on every request the client made.
ALTER TABLE clients
  ADD CONSTRAINT clients_redirect_uris_servable CHECK (
    km_array_elements_ok(redirect_uris, CASE application_type
      WHEN 'native' THEN '(?i)^(http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?([/?][^#]*)?|https://(?!(localhost|127\.0\.0\.1|\[::1\])([:/?]|$))[^/?#@]+([/?][^#]*)?|(?!(https?|javascript|vbscript|data|blob|file|about):)[a-z][a-z0-9+.-]*:[^#]*)$'
      ELSE '(?i)^https?://[^/?#@]+([/?][^#]*)?$'
    END, 2000));
