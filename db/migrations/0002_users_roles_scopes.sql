-- Resource owners, their roles, the scope registry with role bindings, and failed sign-ins
-- for brute-force protection. Forward-only and frozen once landed.

CREATE TABLE users (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  username       text NOT NULL CHECK (length(username) BETWEEN 1 AND 255),
  -- argon2id PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash)
  password_hash  text NOT NULL CHECK (password_hash LIKE '$argon2%'),
  disabled       boolean NOT NULL DEFAULT false,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
-- Usernames are unique regardless of case: "Alice" and "alice" are one user.
CREATE UNIQUE INDEX users_username_lower_uq ON users (lower(username));

CREATE TABLE roles (
  name         text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
  description  text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_roles (
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role_name   text NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
  granted_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, role_name)
);
CREATE INDEX user_roles_role_idx ON user_roles (role_name);

CREATE TABLE scopes (
  -- RFC 6749 §3.3 scope-token
  name         text PRIMARY KEY CHECK (name ~ '^[\x21\x23-\x5b\x5d-\x7e]{1,200}$'),
  description  text NOT NULL DEFAULT '',
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- A scope with rows here is granted only to users holding one of these roles. A role that
-- restricts a scope cannot be deleted (RESTRICT): losing the binding would open the scope.
CREATE TABLE scope_roles (
  scope_name  text NOT NULL REFERENCES scopes (name) ON DELETE CASCADE,
  role_name   text NOT NULL REFERENCES roles (name) ON DELETE RESTRICT,
  PRIMARY KEY (scope_name, role_name)
);
CREATE INDEX scope_roles_role_idx ON scope_roles (role_name);

-- One row per failed password check, by lower-cased username and by source address; rows
-- older than the lockout window no longer count and are purged.
CREATE TABLE login_failures (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  username_lower  text NOT NULL,
  source_address  text NOT NULL,
  failed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_username_idx ON login_failures (username_lower, failed_at);
CREATE INDEX login_failures_source_idx ON login_failures (source_address, failed_at);

-- Instances cache the scope registry and drop the cache when it changes. Triggers (rather
-- than the application) send the notice, so admin scripts writing SQL directly are seen too.
CREATE FUNCTION km_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('km_changes', TG_TABLE_NAME);
  RETURN NULL;
END;
$$;
CREATE TRIGGER scopes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON scopes
  FOR EACH STATEMENT EXECUTE FUNCTION km_notify_change();
CREATE TRIGGER scope_roles_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON scope_roles
  FOR EACH STATEMENT EXECUTE FUNCTION km_notify_change();
