-- A deleted scope is forgotten by everything that named it: clients' allow-lists, users'
-- consents and the grants behind sessions and refresh tokens. Scopes are known by their name,
-- so one registered again later under the same name (perhaps meaning something else) is a new
-- scope: no client is allowed it, no user has agreed to it and no grant holds it until it is
-- given again. Until now deletion left the name in those places, where it was not granted while
-- the scope was missing, and all of it counted again once the name was registered again (found
-- by an outside review: a client got the new scope without being allowed it, and a signed-in
-- user's next code carried it without a consent page). Access tokens already issued keep
-- their scope until they expire.
-- Forward-only and frozen once landed.

-- A space-separated scope list without one name, in its order ('' when none is left).
CREATE FUNCTION km_scope_list_without(list text, name text) RETURNS text
  IMMUTABLE STRICT LANGUAGE sql AS $$
  SELECT coalesce(string_agg(s, ' ' ORDER BY o), '')
  FROM unnest(string_to_array(list, ' ')) WITH ORDINALITY AS t(s, o)
  WHERE s <> '' AND s <> name
$$;

CREATE FUNCTION km_forget_deleted_scope() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE clients SET scope = km_scope_list_without(scope, OLD.name), updated_at = now()
   WHERE OLD.name = ANY (string_to_array(scope, ' '));
  UPDATE consents SET scopes = array_remove(scopes, OLD.name), updated_at = now()
   WHERE OLD.name = ANY (scopes);
  -- A grant (oidc-provider's Grant) holds its scopes per resource server in `resources`. Locked
  -- in digest order, like every statement that locks several grants (0015), so that this one
  -- and a revocation cannot each wait for the other.
  UPDATE tokens g
     SET payload = jsonb_set(g.payload, '{resources}', (
           SELECT jsonb_object_agg(r.key, km_scope_list_without(r.value, OLD.name))
           FROM jsonb_each_text(g.payload -> 'resources') AS r))
   WHERE g.id_sha256 IN (
           SELECT t.id_sha256 FROM tokens t
            WHERE t.kind = 'Grant' AND jsonb_typeof(t.payload -> 'resources') = 'object'
              AND EXISTS (SELECT 1 FROM jsonb_each_text(t.payload -> 'resources') AS r
                           WHERE OLD.name = ANY (string_to_array(r.value, ' ')))
            ORDER BY t.id_sha256
              FOR UPDATE);
  RETURN NULL;
END;
$$;

CREATE TRIGGER scopes_deleted_forgotten AFTER DELETE ON scopes
  FOR EACH ROW EXECUTE FUNCTION km_forget_deleted_scope();

-- What earlier deletions left behind: names that are no longer registered, in allow-lists,
-- consents and grants (consents also hold the OIDC scopes the engine handles itself, which are
-- never registered: those stay).
CREATE FUNCTION km_registered_scopes_of(list text) RETURNS text STABLE STRICT LANGUAGE sql AS $$
  SELECT coalesce(string_agg(s, ' ' ORDER BY o), '')
  FROM unnest(string_to_array(list, ' ')) WITH ORDINALITY AS t(s, o)
  WHERE s <> '' AND EXISTS (SELECT 1 FROM scopes WHERE name = s)
$$;
UPDATE clients
   SET scope = km_registered_scopes_of(scope), updated_at = now()
 WHERE scope IS DISTINCT FROM km_registered_scopes_of(scope);
UPDATE consents c
   SET scopes = ARRAY(SELECT s FROM unnest(c.scopes) WITH ORDINALITY AS t(s, o)
                       WHERE s IN ('openid', 'offline_access') OR EXISTS (SELECT 1 FROM scopes WHERE name = s)
                       ORDER BY o)
 WHERE EXISTS (SELECT 1 FROM unnest(c.scopes) AS s
                WHERE s NOT IN ('openid', 'offline_access') AND NOT EXISTS (SELECT 1 FROM scopes WHERE name = s));
UPDATE tokens g
   SET payload = jsonb_set(g.payload, '{resources}', (
         SELECT jsonb_object_agg(r.key, km_registered_scopes_of(r.value))
         FROM jsonb_each_text(g.payload -> 'resources') AS r))
 WHERE g.kind = 'Grant' AND jsonb_typeof(g.payload -> 'resources') = 'object'
   AND EXISTS (SELECT 1 FROM jsonb_each_text(g.payload -> 'resources') AS r
                WHERE r.value IS DISTINCT FROM km_registered_scopes_of(r.value));
DROP FUNCTION km_registered_scopes_of(text);
