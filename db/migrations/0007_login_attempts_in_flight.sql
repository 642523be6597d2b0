-- A password check takes its place in the lockout window before it runs (src/store/login-failures.ts).
-- Until it is decided, its row is `in_flight`: it counts against the limit, so that no more
-- checks run at once than the window has room for, but it is not yet a failure. A right
-- password deletes it; a wrong one turns it into a failure. Another attempt that finds the
-- room taken only by checks in flight waits for them rather than being refused, so that
-- concurrent sign-ins of one account (a service account used by many instances) are not
-- locked out by each other. A row left in flight by a process that died counts as a failure
-- once it is a minute old.
ALTER TABLE login_failures ADD COLUMN in_flight boolean NOT NULL DEFAULT false;
