-- The audit trail: every change made through the management API or keymgr, and the security
-- events (lockouts, token reuse, revocations, failed management sign-ins). Never a secret:
-- changes are recorded as the names of the fields that changed, not their values.
CREATE TABLE audit_events (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  occurred_at     timestamptz NOT NULL DEFAULT now(),
  -- Who: 'management_user' (actor = the user's name), 'cli' (actor = the OS user),
  -- 'client' (a client_id), 'system' (the server itself).
  actor_type      text NOT NULL CHECK (actor_type IN ('management_user', 'cli', 'client', 'system')),
  actor           text NOT NULL,
  action          text NOT NULL,
  resource_type   text,
  resource_id     text,
  -- From where: the caller's address (API), the host (CLI), or null.
  source          text,
  outcome         text NOT NULL CHECK (outcome IN ('success', 'failure')),
  changed_fields  text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_recent_idx ON audit_events (id DESC);
CREATE INDEX audit_events_action_idx ON audit_events (action, id DESC);
